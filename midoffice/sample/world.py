"""The simulated firm the sample feeds describe, and `generate`, the entry point.

Writes ``<out>/<YYYY-MM-DD>/<feed file>`` for the feeds of contracts/feeds.yaml plus a
``_manifest.json`` per business date, and with ``faults=True`` a ground-truth
``<out>/_faults.json`` of every injected defect.

Design notes
- Deterministic: every random draw comes from ``numpy.random.default_rng([seed, day + 1, stream])``
  (``day = -1`` for the set-up); no wall clock reaches a file (``seconds`` in the returned summary
  is the only measured time).
- Vectorised: per-row state (trades and their settlement life cycle, client file, holdings) lives
  in numpy arrays; files are rendered with pyarrow compute string kernels (no per-row Python).
- CSV values of the event feeds never contain a separator or quote by construction; values of
  the reference feeds are quoted only when needed. Numbers use the shortest round-trip form.
- Settlement life cycle per trade is a plan of up to three (day, status) events, re-planned on
  amendments (re-booking, possibly delayed: a version break), cancellations (CANCELLED) and
  break repairs (QTY/AMOUNT breaks re-booked correctly after some days, or never).
- The ``line`` of a Parquet fault (prices) is the 1-based row number in the file.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from midoffice.contracts import load_contracts
from midoffice.sample.back_office import BackOfficeMixin
from midoffice.sample.calendars import FIRM, all_holidays, calendar_years, calendars_lines, holiday_array
from midoffice.sample.common import CURRENCIES, HISTORY_DAYS, S_FAULTS, S_PRICES, S_SETUP, _rng
from midoffice.sample.faults import FaultsMixin
from midoffice.sample.files import FilesMixin
from midoffice.sample.front_office import FrontOfficeMixin
from midoffice.sample.market import MarketMixin
from midoffice.sample.product_control import ProductControlMixin
from midoffice.sample.reference import ReferenceMixin
from midoffice.sample.risk_data import RiskDataMixin
from midoffice.sample.teams import teams_columns


def _roll_forward(axis: np.ndarray, holidays: np.ndarray) -> np.ndarray:
    """For each index of the axis, the first index at or after it that is a business day of the
    calendar (settlement rolls past a currency holiday); the last index when none is left."""
    ok = np.is_busday(axis, holidays=holidays)
    nxt = np.full(len(axis), len(axis) - 1, np.int64)
    following = len(axis) - 1
    for i in range(len(axis) - 1, -1, -1):
        if ok[i]:
            following = i
        nxt[i] = following
    return nxt


class _World(RiskDataMixin, ReferenceMixin, MarketMixin, FrontOfficeMixin, BackOfficeMixin, ProductControlMixin,
             FaultsMixin, FilesMixin):
    """The firm's state from the set-up through every delivered date (one mixin per feed family)."""

    def __init__(self, out: Path, start: date, days: int, T: int, seed: int, faults: bool,
                 progress: Callable[[str], None] | None):
        self.out, self.days, self.T, self.seed, self.faults = out, days, T, seed, faults
        self.progress = progress or (lambda m: None)
        self.contracts = load_contracts()
        H = HISTORY_DAYS
        self.H, self.g0 = H, H
        # The day axis (history, delivered dates, settlement horizon) is FIRM business dates:
        # nothing is delivered, priced or booked on a FIRM holiday.
        self.calendars = all_holidays(calendar_years(start, H, days + 90))
        firm = holiday_array(self.calendars[FIRM])
        s0 = np.busday_offset(np.datetime64(start, "D"), 0, roll="forward", holidays=firm)
        self.axis = np.busday_offset(s0, np.arange(-H, days + 90), roll="forward", holidays=firm)
        self.settle_roll = np.stack([_roll_forward(self.axis, holiday_array(self.calendars[c])) for c in CURRENCIES])
        self.axis_epoch = self.axis.astype(np.int64)
        self.dstr = pa.array(np.datetime_as_string(self.axis, unit="D"))
        self.fault_log: list[dict] = []
        self.rows_total: dict[str, int] = {}
        r = _rng(seed, -1, S_SETUP)
        self._setup_instruments(r)
        self._setup_prices(r)
        self._setup_pre_history()  # DOMAIN §11: older, stressed history (own stream)
        self._setup_books(r)
        self._setup_clients(r)
        self.tid_next = 1
        self.sid_next = 1
        self.orph_next = 9_000_000_001
        self.act_next = 1
        self.gl_next = 1
        self.ts: dict[str, np.ndarray] | None = None
        self.Q = None  # book holdings (n_books x N)
        self.limits_tbl = None
        self._pc_setup()

    # ---- per-date pipeline --------------------------------------------------------------------
    def run(self) -> dict:
        for d in range(self.days):
            self._day(d)
        if self.faults:
            self.fault_log.sort(key=lambda f: (f["business_date"], f["feed"], f["line"] or 0))
            (self.out / "_faults.json").write_text(json.dumps(self.fault_log, indent=1) + "\n")
        return {}

    def _day(self, d: int):
        g = self.g0 + d
        bdate = str(self.axis[g])
        ddir = self.out / bdate
        ddir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, tuple[str, int, str]] = {}
        faulted = self.faults and (d % 3 == 1 or self.days == 1)
        self.fr = _rng(self.seed, d, S_FAULTS)
        rp = _rng(self.seed, d, S_PRICES)
        shock = -rp.uniform(3.0, 5.0) if (d >= 2 and rp.random() < 0.06) else None
        self._advance(rp, g, 1, shock)
        self._pc_after_advance(g)
        self.cur_g = g
        self._clients_update(d, g)
        trades_lines, trades_ctx = self._trades(d, g)
        settle_lines, settle_ctx = self._settlements(d, g)
        self.Q_prev = None if self.Q is None else self.Q.copy()
        self._pc_position_break(d, g)
        pos_lines, pos_ctx = self._positions(d, g)
        if d == 0:
            self._calibrate(g)
            self._set_volumes(self.Q.sum(axis=0))
            self._risk_limits(g)
        act_lines, act_ctx = self._activity(d, g)
        gl_lines, gl_ctx = self._gl(d, g)
        # writes (clients last among the client-referencing data: safe fault rows need the refs)
        self._write_csv(ddir, "books", self._books_cols())
        self._write_csv(ddir, "instruments", self._instruments_cols())
        self._write_csv(ddir, "limits", self._limits_cols(d))
        self._write_csv(ddir, "targets", self.targets_cols)
        self._write_lines(ddir, "calendars", calendars_lines(self.calendars), None, False)
        self._write_csv(ddir, "control_parameters", self._control_parameters_cols())
        self._write_csv(ddir, "stress_scenarios", self._stress_scenarios_cols())
        self.bad_price_rows_prev, self.bad_price_rows = self.bad_price_rows, set()
        self._write_csv(ddir, "teams", teams_columns())
        self._write_prices(ddir, d, g, faulted)
        self._write_desk_pnl(ddir, d, g)
        self._write_ipv(ddir, d, g)
        self._write_fx(ddir, d, g, faulted)
        self._write_clients(ddir, d, g, faulted)
        self._write_lines(ddir, "trades", trades_lines, trades_ctx, faulted)
        self._write_lines(ddir, "settlements", settle_lines, settle_ctx, faulted)
        self._write_lines(ddir, "positions", pos_lines, pos_ctx, faulted)
        self._write_lines(ddir, "client_activity", act_lines, act_ctx, faulted)
        self._write_lines(ddir, "gl_entries", gl_lines, gl_ctx, faulted)
        self._manifest(ddir, d, g, bdate)
        self.progress(f"{bdate}: {sum(v[1] for v in self.files.values()):,} records in {len(self.files)} feeds"
                      + (" (faults injected)" if faulted else ""))



def generate(out: Path, start: date, days: int, trades_per_day: int = 2000, seed: int = 42,
             faults: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Write `days` business days of sample feeds under `out`; return a summary.

    `start` is a business date (a weekend or FIRM holiday moves to the next business date). Deterministic for the same
    arguments: byte-identical files.
    """
    if days < 1:
        raise ValueError("days must be >= 1")
    if trades_per_day < 1:
        raise ValueError("trades_per_day must be >= 1")
    if isinstance(start, str):
        start = date.fromisoformat(start)
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Says what the folder is. It unlocks nothing: the development key is the operator's --development-key.
    (out / "_SAMPLE_DATA").write_text(
        "Generated by `midoffice generate`: synthetic sample feeds, no real clients.\n"
    )
    w = _World(out, start, days, int(trades_per_day), int(seed), bool(faults), progress)
    w.run()
    dates = [str(w.axis[w.g0 + d]) for d in range(days)]
    return {
        "out": str(out),
        "dates": dates,
        "start": dates[0],
        "end": dates[-1],
        "trades_per_day": int(trades_per_day),
        "seed": int(seed),
        "rows": dict(w.rows_total),
        "faults": len(w.fault_log) if faults else 0,
        "seconds": round(time.perf_counter() - t0, 3),
    }
