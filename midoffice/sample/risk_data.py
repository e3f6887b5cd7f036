"""Risk data of the sample beyond VaR (DOMAIN §11): a stressed stretch of price history before the
Part 1 history, the `stress_scenarios` feed, SVAR_WINDOW_START, and limits on the new measures.

The stressed stretch is PRE_HISTORY_DAYS business days *before* the first day of the Part 1
history, drawn from its own random stream and built backward from that first day's prices and
rates: every price and rate of the Part 1 history (and so every Part 1 figure of a seed) is
unchanged; the first delivery only carries these older rows as well (after the others, so the
line numbers of the Part 1 rows do not move). It holds a long crisis (a 2008-style fall, then a
partial recovery) and a short crash (2020-style), which the HISTORICAL scenarios replay and the
stressed VaR window (SVAR_WINDOW_START, from the crisis's first day, 250 business dates) covers.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from midoffice.sample.calendars import FIRM, holiday_array
from midoffice.sample.common import ASSET_CLASSES, CURRENCIES, _rng
from midoffice.sample.files import _quote_needed
from midoffice.sample.market import FX_VOL

S_STRESS = 40  # the random stream of the stressed pre-history (clear of Part 1's streams)
PRE_HISTORY_DAYS = 220
# (first, last) pre-history day of each regime; a day's move lands on that day
CRISIS_2008 = (20, 89)
RECOVERY = (90, 149)
CRASH_2020 = (150, 165)
REBOUND = (166, 199)
SVAR_FIRST_DAY = CRISIS_2008[0]
PARTICIPATION = 0.2  # DOMAIN §7.2 default of LIQUIDITY_PARTICIPATION
USD_UP_10 = 1 / 1.1 - 1  # what USD +10 % does to the USD value of any other currency


class RiskDataMixin:
    """Stressed pre-history, stress scenarios, the stressed VaR window and the §11 limits."""

    # ---- the stressed pre-history -------------------------------------------------------------------
    def _setup_pre_history(self) -> None:
        """Prices and rates of the PRE_HISTORY_DAYS business dates before the first history day,
        walked backward from it with the price model's instrument parameters (vol, rho) under a
        regime of volatility and a drift of the common factor."""
        n = PRE_HISTORY_DAYS
        firm = holiday_array(self.calendars[FIRM])
        self.pre_axis = np.busday_offset(self.axis[0], np.arange(-n, 0), roll="forward", holidays=firm)
        r = _rng(self.seed, -1, S_STRESS)
        scale, drift = np.ones(n + 1), np.zeros(n + 1)  # index k: the move onto pre-history day k (n: history day 0)
        for (a, b), s, m in [(CRISIS_2008, 2.2, -0.45), (RECOVERY, 1.4, 0.30), (CRASH_2020, 3.5, -1.2),
                             (REBOUND, 1.5, 0.35)]:
            scale[a:b + 1], drift[a:b + 1] = s, m
        N, ac = self.N, self.ac
        glob = r.standard_t(4, n + 1) / math.sqrt(2) + drift
        own = r.standard_t(4, (n + 1, 5)) / math.sqrt(2)
        f = 0.6 * glob[:, None] + 0.8 * own
        e = r.standard_t(4, (n + 1, N)) / math.sqrt(2)
        z = self.rho * f[:, ac] + np.sqrt(1 - self.rho ** 2) * e
        ret = scale[:, None] * self.vol * z - 0.5 * (self.vol * scale[:, None]) ** 2
        fxz = r.standard_t(5, (n + 1, len(CURRENCIES))) / math.sqrt(5 / 3)
        fxz[:, 1:] += 0.3 * glob[:, None] * np.array([1, 1, -1, -1, 1, 1])
        fx_ret = scale[:, None] * FX_VOL * fxz
        # backward: value on day k = value on day k + 1 / exp(move onto day k + 1)
        log_p = np.log(self.P_raw[0]) - np.cumsum(ret[:0:-1], axis=0)[::-1]
        log_fx = np.log(self.fx_raw[0]) - np.cumsum(fx_ret[:0:-1], axis=0)[::-1]
        self.pre_P_raw = np.exp(log_p)  # n x N: pre-history days 0 .. n − 1
        self.pre_fx_raw = np.exp(log_fx)
        self.pre_fx_raw[:, 0] = 1.0

    def _pre_prices(self) -> np.ndarray:
        p = self.pre_P_raw
        return np.maximum(np.where(self.cur == 3, np.round(p, 2), np.round(p, 4)), 0.0001)

    def _pre_fx(self) -> np.ndarray:
        f = np.round(self.pre_fx_raw, 8)
        f[:, 0] = 1.0
        return f

    def _pre_history_price_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(epoch day, instrument index, close) of every pre-history close, day by day."""
        n, N = PRE_HISTORY_DAYS, self.N
        days = np.repeat(self.pre_axis.astype(np.int64), N).astype(np.int32)
        return days, np.tile(np.arange(N), n), self._pre_prices().ravel()

    def _pre_history_fx_rows(self) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """(date text, currency index, rate) of every pre-history rate, day by day."""
        n, C = PRE_HISTORY_DAYS, len(CURRENCIES)
        dates = pa.array(np.repeat(np.datetime_as_string(self.pre_axis, unit="D"), C))
        return dates, np.tile(np.arange(C), n), self._pre_fx().ravel()

    # ---- stress scenarios ---------------------------------------------------------------------------
    def _usd_values(self) -> np.ndarray:
        """USD value of one unit of each instrument on every pre-history day and history day 0."""
        px = np.vstack([self._pre_prices(), self.P(0)[None, :]])
        fx = np.vstack([self._pre_fx(), self.FX(0)[None, :]])
        return px * fx[:, self.cur]

    def _worst_window(self, first: int, last: int) -> tuple[int, int]:
        """Peak and trough of an equal-weighted index of the non-FX instruments' USD values between
        two pre-history days: the window the HISTORICAL scenario replays (drawn from the history)."""
        v = self._usd_values()[:, self.ac != 4]
        index = np.exp(np.log(v / v[0]).mean(axis=1))
        peak = first - 5 + int(np.argmax(index[first - 5:first + 5]))
        trough = peak + 1 + int(np.argmin(index[peak + 1:last + 1]))
        return peak, trough

    def _stress_rows(self) -> list[tuple]:
        """(scenario_id, name, kind, start, end, shock_type, shock_scope, shock_value) rows."""
        day = lambda k: str(self.pre_axis[k])  # noqa: E731
        p08, t08 = self._worst_window(CRISIS_2008[0], RECOVERY[0] + 5)
        p20, t20 = self._worst_window(CRASH_2020[0], REBOUND[0] + 5)
        rows = [
            ("HIST_2008", "2008-style credit crisis: the sample's long fall, peak to trough", "HISTORICAL",
             day(p08), day(t08), None, None, None),
            ("HIST_2020", "2020-style crash: the sample's sharp fall, peak to trough", "HISTORICAL",
             day(p20), day(t20), None, None, None),
            ("RATES_UP_200", "Rates +200 bp: a parallel rise of every bond yield", "SHOCK", None, None,
             "YIELD_BP", "ALL", 200.0),
            ("EQUITIES_DOWN_20", "Equities -20 %: equities and funds fall by a fifth", "SHOCK", None, None,
             "PRICE_PCT", "EQUITY", -0.20),
            ("EQUITIES_DOWN_20", "Equities -20 %: equities and funds fall by a fifth", "SHOCK", None, None,
             "PRICE_PCT", "FUND", -0.20),
            ("USD_UP_10", "USD +10 % against every currency", "SHOCK", None, None, "FX_PCT", "ALL", USD_UP_10),
            # the FX-class instruments are quoted in USD per unit of their base currency
            ("USD_UP_10", "USD +10 % against every currency", "SHOCK", None, None, "PRICE_PCT", "FX", USD_UP_10),
        ]
        return rows

    def _stress_scenarios_cols(self) -> list[pa.Array]:
        rows = self._stress_rows()

        def col(k: int) -> pa.Array:
            return pa.array([None if r[k] is None else str(r[k]) if not isinstance(r[k], float)
                             else f"{r[k]:.6f}".rstrip("0").rstrip(".") for r in rows], pa.string())

        return [col(0), _quote_needed(col(1))] + [col(k) for k in range(2, 8)]

    # ---- liquidity --------------------------------------------------------------------------------
    def _set_volumes(self, holdings_units: np.ndarray) -> None:
        """Average daily volumes from the books' gross holdings (their net understated what a
        liquidation must sell: offsetting books made a few thin instruments take months), and FX
        trades far deeper than securities."""
        super()._set_volumes(np.abs(self.Q).sum(axis=0))
        self.adv = np.where(self.ac == 4, self.adv * 50.0, self.adv)

    # ---- the stressed VaR window --------------------------------------------------------------------
    def _control_parameters_cols(self):
        """The documented defaults, and SVAR_WINDOW_START at the first day of the crisis."""
        cols = super()._control_parameters_cols()
        extra = [pa.array(["SVAR_WINDOW_START"]), pa.array(["ALL"]), pa.array([None], pa.string()),
                 pa.array([str(self.pre_axis[SVAR_FIRST_DAY])])]
        return [pa.concat_arrays([c.cast(pa.string()), x]) for c, x in zip(cols, extra)]

    # ---- limits on the §11 measures (calibrated on the first day) ---------------------------------------
    def _risk_limits(self, g: int) -> None:
        """DV01, FX_NOP, STRESS_LOSS and LIQUIDITY_DAYS_SHARE limits, appended after Part 1's (whose
        ids stay), set from rough first-day figures: the marts compute the exact ones."""
        px_usd = self.P(g) * self.FX(g)[self.cur]
        MV = self.Q * px_usd  # books x instruments
        t = self.bond_terms
        years = np.maximum((t["maturity_date"] - self.axis[g]).astype(np.float64) / 365.25, 0.05)
        y = np.where(t["is_bond"], np.nan_to_num(t["coupon_rate"]), 0.0) + 0.01
        mod_duration = np.where(t["is_bond"], (1 - (1 + y) ** -years) / y, 0.0)
        dv01 = MV * mod_duration * 1e-4  # books x instruments
        non_usd = self.cur != 0
        net_ccy = np.bincount(self.cur[non_usd], weights=MV[:, non_usd].sum(0), minlength=len(CURRENCIES))
        nop = max(net_ccy[net_ccy > 0].sum(), -net_ccy[net_ccy < 0].sum())
        shocks = self._scenario_pnl(MV, dv01)
        days = np.abs(self.Q) / (PARTICIPATION * self.adv[None, :])
        beyond5 = np.where(days > 5, np.abs(MV), 0.0)
        L = self.limits

        def usd(x: float) -> float:
            return float(max(1000.0, round(x / 1000.0) * 1000.0))

        L.append(("FIRM", "ALL", "DV01", usd(abs(dv01.sum()) * 1.3), 0.8))
        for b in range(self.nb):
            if abs(dv01[b].sum()) > 1000:
                L.append(("BOOK", self.book_codes[b], "DV01", usd(abs(dv01[b].sum()) * (1.05 if b == 3 else 1.4)), 0.8))
        L.append(("FIRM", "ALL", "FX_NOP", usd(nop * 1.25), 0.8))
        L.append(("FIRM", "ALL", "STRESS_LOSS", usd(max(-shocks.sum(0).min(), 1.0) * 1.5), 0.8))
        for b in range(self.nb):
            L.append(("BOOK", self.book_codes[b], "STRESS_LOSS", usd(max(-shocks[b].min(), 1.0) * 1.6), 0.8))
        share = beyond5.sum() / max(np.abs(MV).sum(), 1.0)
        L.append(("FIRM", "ALL", "LIQUIDITY_DAYS_SHARE", round(min(1.0, max(share * 1.3, 0.01)), 4), 0.85))
        for b in range(self.nb):
            share_b = beyond5[b].sum() / max(np.abs(MV[b]).sum(), 1.0)
            L.append(("BOOK", self.book_codes[b], "LIQUIDITY_DAYS_SHARE",
                      round(min(1.0, max(share_b * (1.1 if b == 6 else 1.5), 0.05)), 4), 0.8))

    def _scenario_pnl(self, MV: np.ndarray, dv01: np.ndarray) -> np.ndarray:
        """books x scenarios: the first day's P&L of each scenario, roughly (bonds by duration),
        for the STRESS_LOSS limits."""
        ac_names = np.array(ASSET_CLASSES)[self.ac]
        values, pre_day = self._usd_values(), {str(d): k for k, d in enumerate(self.pre_axis)}
        out = []
        for _, _, kind, start, end, *_ in self._stress_rows():
            if kind == "HISTORICAL":
                move = values[pre_day[end]] / values[pre_day[start]] - 1
                out.append((MV * move).sum(1))
        for sid in dict.fromkeys(r[0] for r in self._stress_rows() if r[2] == "SHOCK"):
            pnl = np.zeros_like(MV)
            for _, _, _, _, _, kind, scope, value in (r for r in self._stress_rows() if r[0] == sid):
                if kind == "PRICE_PCT":
                    pnl += np.where((ac_names == scope) & (self.ac != 1), MV * value, 0.0)
                elif kind == "FX_PCT":
                    pnl += np.where(self.cur != 0, MV * value, 0.0)
                else:
                    pnl -= dv01 * value
            out.append(pnl.sum(1))
        return np.stack(out, axis=1)
