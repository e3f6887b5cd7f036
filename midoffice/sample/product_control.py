"""Product control's inputs (DOMAIN §7.3, §8): the desks' flash P&L (`desk_pnl`), independent
prices (`ipv_prices`), client custody moved by what settles, and the four product-control
defects of ``--faults``.

Calibration: a plausible firm (issue 24; tests/test_sample_plausibility.py measures a month)
- The firm is a client-flow broker with a small facilitation inventory. On the first date its
  books' inventory (the random standing positions of back_office.py, about 80 % long) is scaled
  so that the firm's 99 % one-day VaR (historical, 250 scenarios) equals VAR_REVENUE_DAYS (1) day
  of its commissions and fees; after that a desk keeps of its client flow the share its inventory
  was scaled by (FLOW_KEPT) and closes INVENTORY_REVERSION (25 %) a day of the gap to its standing
  inventory, so that its inventory, and its use of its limits, stays within about 10 % of day one. VaR is then
  1-2 % of gross exposure, the daily market P&L is within ±VaR on all but a day or two a month
  (the stress days of market.py), and a month's trading P&L is a small part of its revenue.
  (1,200 trades a day: about $2bn of client flow, $0.4m of commissions and fees, $15-60m of
  inventory, $0.2-0.4m of VaR.)
- GL expenses are reference.py's per-desk cost/income ratios times EXPENSE_SCALE (0.68), so that
  the firm's cost-to-income over a month (commissions + fees + trading P&L, DOMAIN §12) is
  about 70-85 % (seeds 1, 7, 42: 72 %, 84 %, 70 %).
- Client wealth is lognormal with a Pareto tail per segment (front_office.py); client custody
  moves by what settles (below): the largest client holds about 11 % of client assets.

What a product controller sees
- desk_pnl: each desk reports what product control computes from the same feeds (§8.1-8.2: the
  BOOK holdings of the previous business date revalued at today's closes and fx, the bond coupon
  accrued, the commission of the trades booked today, the REVENUE_FEES posted today), plus a
  rounding and timing difference of at most 30 % of the P&L tolerance (max(10,000 USD, 1 % of the
  report)), so that a desk matches within tolerance. A close the price feed loses (quarantined)
  is missing for the desk too: both carry the previous close. On the first delivered date the
  inventory is taken on at that day's marks, so the desk reports commissions and fees only.
- ipv_prices: a second source for about 85 % of the instruments the books hold (vendors for
  listed and OTC instruments, a broker quote for some), within 40 % of the asset class's
  IPV_TOLERANCE_PCT of the close, so that no price breaches by chance.
- client custody: a client's position at its custodian moves exactly by what settles there: the
  change of settled_quantity of each settlement instruction of the client's trades (BUY adds,
  SELL subtracts); the instructions of a client's trades settle at the client's custodian. New
  clients' first holdings appear with nothing settled into them (NO_PRIOR), and a closed client's
  custody stays until it is transferred away (it is not, in the sample).
- --faults (on the first faulted date, the second delivered date): one desk's report off by 3 to
  8 times its tolerance (`desk_pnl_mismatch`), one independent price off by 3 to 6 times the
  tolerance (`ipv_breach`), one held instrument whose close does not move for the 5 business
  dates up to that date (`stale_price`, STALE_PRICE_DAYS), and one client position moved by the
  custodian without a settlement (`position_break`). Each is in `_faults.json` with line null
  (the records are valid: the marts find them, not the quarantine).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from midoffice.sample.common import ASSET_CLASSES, _rng
from midoffice.sample.files import _lab, _num

# random streams of this module (per date: default_rng([seed, day + 1, stream]))
S_PC, S_PC_FAULTS = 31, 32

# DOMAIN §7.2 defaults the sample delivers (control_parameters): tolerance by asset class
IPV_TOLERANCE = {"EQUITY": 0.005, "FUND": 0.005, "BOND": 0.0025, "COMMODITY": 0.01, "FX": 0.001}
PNL_TOLERANCE_USD, PNL_TOLERANCE_PCT = 10_000.0, 0.01
STALE_DAYS = 5
IPV_COVERAGE = 0.85
IPV_SOURCES = ["BVAL", "REFINITIV", "MARKIT", "BROKER_QUOTE"]
# the firm's size (see the module docstring)
VAR_REVENUE_DAYS = 1.0  # the firm's 99 % one-day VaR on the first date: this many days of commissions and fees
FEE_SHARE_GUESS = 0.2  # fees as a share of commissions (reference.py draws 10-30 % per book)
INVENTORY_REVERSION = 0.25  # share of the gap to its standing inventory a desk closes each day
FLOW_KEPT = 1.0  # of its client flow a desk keeps the share its inventory was scaled by, times this (the rest is hedged or crossed)
EXPENSE_SCALE = 0.68  # the GL expense of reference.py's cost/income ratios, scaled to a 50-90 % firm


class ProductControlMixin:
    """desk_pnl and ipv_prices, client custody moved by settlements, and their defects."""

    # ---- set-up -------------------------------------------------------------------------------
    def _pc_setup(self) -> None:
        """Chooses the faults' date and the stale instrument; freezes its history if need be."""
        self.pc_fault_day = min(1, self.days - 1) if self.faults else None
        self.sid_settled = np.zeros(1024)
        self.bad_price_rows: set[int] = set()
        self.bad_price_rows_prev: set[int] = set()
        self.Q_prev = None
        self.prev_client_keys = np.zeros(0, np.int64)
        r = _rng(self.seed, -1, S_PC)
        self.ipv_source = r.choice(len(IPV_SOURCES), self.N, p=[0.4, 0.3, 0.2, 0.1])
        self.ipv_covered = r.random(self.N) < IPV_COVERAGE
        self.stale_inst = None
        if self.pc_fault_day is not None:
            rf = _rng(self.seed, -1, S_PC_FAULTS)
            # a BOOK-held, non-FX instrument covered by IPV (its independent price is close to it)
            held = np.flatnonzero(self.held.any(axis=0) & (self.ac != 4) & self.ipv_covered)
            self.stale_inst = int(rf.choice(held))
            g_s = self.g0 + self.pc_fault_day
            for g in range(g_s - STALE_DAYS + 1, min(g_s + 1, self.g0)):  # history already simulated
                self.P_raw[g, self.stale_inst] = self.P_raw[g - 1, self.stale_inst]

    def _pc_after_advance(self, g: int) -> None:
        """The stale instrument's close does not move in the days up to the faults' date."""
        if self.stale_inst is None:
            return
        g_s = self.g0 + self.pc_fault_day
        if g_s - STALE_DAYS < g <= g_s:
            self.P_raw[g, self.stale_inst] = self.P_raw[g - 1, self.stale_inst]
            if g == g_s:
                self._log(g, "prices", None, "stale_price",
                          f"{self.inst_ids[self.stale_inst].as_py()}: close unchanged for {STALE_DAYS} business dates")

    # ---- client custody ---------------------------------------------------------------------------
    def _pc_settled(self, ti: np.ndarray, sid: np.ndarray, settled: np.ndarray) -> None:
        """Moves client custody by the change of settled_quantity of today's instructions."""
        if len(sid) and sid.max() >= len(self.sid_settled):
            grown = np.zeros(max(2 * len(self.sid_settled), int(sid.max()) + 1))
            grown[:len(self.sid_settled)] = self.sid_settled
            self.sid_settled = grown
        # an instruction appears at most once a day (records are ordered by settlement id)
        delta = settled - self.sid_settled[sid]
        self.sid_settled[sid] = settled
        ts = self.ts
        move = ts["fo"][ti] & (delta != 0)
        if not move.any():
            return
        client, inst = ts["client"][ti][move], ts["inst"][ti][move]
        signed = np.where(ts["side"][ti][move] == 0, 1.0, -1.0) * delta[move]
        key = client.astype(np.int64) * self.N + inst
        uk, inv = np.unique(key, return_inverse=True)
        amount = np.bincount(inv, weights=signed)
        held_key = self.h_client.astype(np.int64) * self.N + self.h_inst
        pos = {int(k): i for i, k in enumerate(held_key)}
        new_c, new_i, new_q = [], [], []
        for k, a in zip(uk, amount):
            i = pos.get(int(k))
            if i is None:
                new_c.append(int(k) // self.N)
                new_i.append(int(k) % self.N)
                new_q.append(a)
            else:
                self.h_qty[i] += a
        if new_c:
            self.h_client = np.concatenate([self.h_client, np.array(new_c, self.h_client.dtype)])
            self.h_inst = np.concatenate([self.h_inst, np.array(new_i, self.h_inst.dtype)])
            self.h_qty = np.concatenate([self.h_qty, np.array(new_q, float)])
        # a position sold out leaves custody (recon: expected 0, nothing reported)
        keep = self.h_qty != 0
        self.h_client, self.h_inst, self.h_qty = self.h_client[keep], self.h_inst[keep], self.h_qty[keep]

    def _pc_position_break(self, d: int, g: int) -> None:
        """--faults: the custodian moves one client position that had nothing settling today."""
        key = self.h_client.astype(np.int64) * self.N + self.h_inst
        if d == self.pc_fault_day and d > 0:
            rf = _rng(self.seed, d, S_PC_FAULTS)
            cand = np.flatnonzero(np.isin(key, self.prev_client_keys) & (self.h_qty > 10))
            if len(cand):
                i = int(rf.choice(cand))
                k = float(max(1.0, np.round(self.h_qty[i] * rf.uniform(0.05, 0.2))))
                self.h_qty[i] += k
                self._log(g, "positions", None, "position_break",
                          f"client C{int(self.h_client[i]) + 1:07d} {self.inst_ids[int(self.h_inst[i])].as_py()}: "
                          f"custody {k:+.0f} units without a settlement")
        self.prev_client_keys = key

    # ---- the books' inventory ----------------------------------------------------------------------
    def _pc_size_inventory(self, g: int) -> None:
        """Scales the first date's book inventory so that the firm's 99 % one-day VaR (historical,
        250 scenarios, as risk_var computes it) is VAR_REVENUE_DAYS days of its commissions and fees."""
        usd = np.stack([self.P(x) * self.FX(x)[self.cur] for x in range(g - 250, g + 1)])
        pnl = (usd[1:] / usd[:-1] - 1) @ (self.Q.sum(axis=0) * usd[-1])
        var = -np.sort(pnl)[2]
        dn = self.day_new
        revenue = float(dn["comm_usd"][dn["t"] == g].sum()) * (1 + FEE_SHARE_GUESS)
        scale = VAR_REVENUE_DAYS * revenue / var if var > 0 else 1.0
        self.Q = np.round(self.Q * scale) * self.held
        self.Q_standing = self.Q.copy()
        self.flow_kept = FLOW_KEPT * scale

    def _pc_inventory_step(self, flow: np.ndarray) -> np.ndarray:
        """The day's book inventory: a desk keeps a share of its client flow (the inventory's scale
        times FLOW_KEPT) and works its inventory back toward its standing position by
        INVENTORY_REVERSION a day, so that it stays within about 10 % of it (and of its limits)."""
        gap = self.Q - self.Q_standing
        return np.round(self.Q_standing + (1 - INVENTORY_REVERSION) * gap + self.flow_kept * flow) * self.held

    # ---- desk P&L ----------------------------------------------------------------------------------
    def _pc_desk_pnl(self, d: int, g: int) -> np.ndarray:
        """Each book's P&L of the day as product control computes it from the delivered feeds."""
        fx_d, fx_p = self.FX(g), self.FX(g - 1)
        p_d = self.P(g).copy()
        if self.bad_price_rows:  # a lost close: the previous one is carried (for both of us)
            lost = np.array(sorted(self.bad_price_rows))
            p_d[lost] = self.P(g - 1)[lost]
        p_p = self.P(g - 1).copy()
        if self.bad_price_rows_prev:
            lost = np.array(sorted(self.bad_price_rows_prev))
            p_p[lost] = self.P(g - 2)[lost]
        pnl = np.zeros(self.nb)
        if d > 0 and self.Q_prev is not None:
            usd_d = p_d * fx_d[self.cur]
            usd_p = p_p * fx_p[self.cur]
            pnl += (self.Q_prev * (usd_d - usd_p)).sum(axis=1)
            days = int(self.axis_epoch[g] - self.axis_epoch[g - 1])
            coupon = np.nan_to_num(self.bond_terms["coupon_rate"])
            pnl += (self.Q_prev * (100.0 * coupon * days / 365.0 * fx_d[self.cur])).sum(axis=1)
        dn = self.day_new
        today = dn["t"] == g
        pnl += np.bincount(dn["book"][today], weights=dn["comm_usd"][today], minlength=self.nb)
        gl = self.gl_day
        fees = (gl["cat"] == 0) & (gl["back"] == 0) & (gl["cc"] < self.nb)
        pnl += np.bincount(gl["cc"][fees], weights=(gl["amt"] * fx_d[gl["ccy"]])[fees], minlength=self.nb)
        return pnl

    def _write_desk_pnl(self, ddir, d: int, g: int) -> None:
        r = _rng(self.seed, d, S_PC)
        pnl = self._pc_desk_pnl(d, g)
        tol = np.maximum(PNL_TOLERANCE_USD, PNL_TOLERANCE_PCT * np.abs(pnl))
        reported = pnl + r.uniform(-0.3, 0.3, self.nb) * tol
        if d == self.pc_fault_day:
            rf = _rng(self.seed, d, S_PC_FAULTS + 100)
            b = int(rf.integers(0, self.nb))
            off = float(rf.choice([-1, 1]) * rf.uniform(3.0, 8.0) * tol[b])
            reported[b] = pnl[b] + off
            self._log(g, "desk_pnl", None, "desk_pnl_mismatch",
                      f"{self.book_codes[b]}: reported {off:+,.0f} USD away from the P&L of the feeds")
        cols = [pa.array([str(self.axis[g])] * self.nb), pa.array(self.book_codes), _num(reported, 2)]
        self._write_csv(ddir, "desk_pnl", cols)

    # ---- independent prices -------------------------------------------------------------------------
    def _write_ipv(self, ddir, d: int, g: int) -> None:
        r = _rng(self.seed, d, S_PC + 100)
        p = self.P(g)
        tol = np.array([IPV_TOLERANCE[a] for a in ASSET_CLASSES])[self.ac]
        ipv = p * (1.0 + r.uniform(-0.4, 0.4, self.N) * tol)
        covered = self.ipv_covered.copy()
        if d == self.pc_fault_day:
            rf = _rng(self.seed, d, S_PC_FAULTS + 200)
            cand = np.flatnonzero(self.held.any(axis=0) & covered & (np.arange(self.N) != (self.stale_inst or -1))
                                  & ~np.isin(np.arange(self.N), list(self.bad_price_rows)))
            i = int(rf.choice(cand))
            ipv[i] = p[i] / (1.0 + rf.choice([-1, 1]) * rf.uniform(3.0, 6.0) * tol[i])
            self._log(g, "ipv_prices", None, "ipv_breach",
                      f"{self.inst_ids[i].as_py()}: independent price {ipv[i]:.6g} against a close of {p[i]:.6g}")
        idx = np.flatnonzero(covered)
        cols = [pa.array([str(self.axis[g])] * len(idx)), self.inst_ids.take(pa.array(idx)),
                _lab(IPV_SOURCES, self.ipv_source[idx]), _num(ipv[idx], 8)]
        self._write_csv(ddir, "ipv_prices", cols)

