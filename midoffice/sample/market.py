"""Market data: the price and FX model, and the `prices` and `fx_rates` feeds."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from midoffice.sample.common import CURRENCIES
from midoffice.sample.files import _csv_lines, _lab, _num

FX0 = np.array([1.0, 1.085, 1.268, 0.00672, 1.118, 0.738, 0.662])
FX_VOL = np.array([0.0, 0.0045, 0.0050, 0.0060, 0.0045, 0.0040, 0.0060])
AC_VOL = [(0.012, 0.030), (0.002, 0.006), (0.007, 0.014), (0.012, 0.025), (0.004, 0.007)]
AC_RHO = [(0.40, 0.70), (0.50, 0.70), (0.70, 0.90), (0.40, 0.60), (0.50, 0.70)]


class MarketMixin:
    """The price and FX paths (one row a day of the axis) and their two feeds."""

    def _setup_prices(self, r):
        """Price and FX history up to the day before the first delivered date."""
        H, N, ac, cur, base_ccy = self.H, self.N, self.ac, self.cur, self.base_ccy
        n_g = H + self.days
        self.fx_raw = np.zeros((n_g, len(CURRENCIES)))
        self.fx_raw[0] = FX0
        self.vs = 0.0  # volatility regime state
        # price model parameters
        lo = np.array([v[0] for v in AC_VOL])[ac]
        hi = np.array([v[1] for v in AC_VOL])[ac]
        self.vol = r.uniform(lo, hi)
        self.rho = r.uniform(np.array([v[0] for v in AC_RHO])[ac], np.array([v[1] for v in AC_RHO])[ac])
        p_usd = np.select([ac == 0, ac == 1, ac == 2, ac == 3, ac == 4],
                          [r.lognormal(math.log(60), 0.8, N), r.normal(100, 7, N), r.lognormal(math.log(40), 0.5, N),
                           r.lognormal(math.log(80), 1.0, N), FX0[base_ccy] * r.uniform(0.98, 1.02, N)])
        p0 = np.where(ac == 1, p_usd, p_usd / FX0[cur])
        self.P_raw = np.zeros((n_g, N))
        self.P_raw[0] = np.maximum(p0, 0.5)
        self._advance(r, 1, H - 1)
        self.popularity = r.permutation(N)  # rank of an instrument in client demand

    def _advance(self, r, g_from: int, n: int, shock: float | None = None):
        N = self.N
        v = np.empty(n)
        for k in range(n):
            self.vs = 0.97 * self.vs + math.sqrt(1 - 0.97 ** 2) * r.standard_normal()
            v[k] = math.exp(0.30 * self.vs - 0.045)
        glob = r.standard_t(4, n) / math.sqrt(2)
        if shock is not None:
            glob[:] = shock
        own = r.standard_t(4, (n, 5)) / math.sqrt(2)
        f = 0.6 * glob[:, None] + 0.8 * own
        e = r.standard_t(4, (n, N)) / math.sqrt(2)
        jumps = (r.random((n, N)) < 0.0015) * r.normal(0, 4.0, (n, N)) * (self.ac != 1)
        z = self.rho * f[:, self.ac] + np.sqrt(1 - self.rho ** 2) * e + jumps
        ret = v[:, None] * self.vol * z
        fxz = r.standard_t(5, (n, len(CURRENCIES))) / math.sqrt(5 / 3)
        fxz[:, 1:] += 0.3 * glob[:, None] * np.array([1, 1, -1, -1, 1, 1])  # some co-movement
        for k in range(n):
            g = g_from + k
            self.P_raw[g] = self.P_raw[g - 1] * np.exp(ret[k] - 0.5 * (self.vol * v[k]) ** 2)
            self.fx_raw[g] = self.fx_raw[g - 1] * np.exp(FX_VOL * v[k] * fxz[k])
        self.fx_raw[:, 0] = 1.0

    def P(self, g):
        p = self.P_raw[g]
        return np.maximum(np.where(self.cur == 3, np.round(p, 2), np.round(p, 4)), 0.0001)

    def FX(self, g):
        f = np.round(self.fx_raw[g], 8)
        f[..., 0] = 1.0
        return f

    def _write_prices(self, ddir, d, g, faulted):
        gs = np.arange(0, g + 1) if d == 0 else np.array([g])
        N = self.N
        gg = np.repeat(gs, N)
        ii = np.tile(np.arange(N), len(gs))
        px = np.stack([self.P(x) for x in gs]).ravel()
        days = self.axis_epoch[gg].astype(np.int32)
        inst = self.inst_ids.take(pa.array(ii))
        if faulted and d > 0:
            px, days, inst = self._fault_prices(g, px, days, inst)
        if d == 0:  # the stressed pre-history (risk_data.py), after the Part 1 rows
            pre_days, pre_ii, pre_px = self._pre_history_price_rows()
            days = np.concatenate([days, pre_days])
            inst = pa.concat_arrays([inst, self.inst_ids.take(pa.array(pre_ii))])
            px = np.concatenate([px, pre_px])
        tbl = pa.table({"price_date": pa.array(days, pa.int32()).cast(pa.date32()), "instrument_id": inst,
                        "close_price": pa.array(px, pa.float64())})
        buf = io.BytesIO()
        pq.write_table(tbl, buf, compression="snappy")
        self._record(ddir, "prices", buf.getvalue(), tbl.num_rows)

    def _write_fx(self, ddir, d, g, faulted):
        gs = np.arange(0, g + 1) if d == 0 else np.array([g])
        C = len(CURRENCIES)
        gg = np.repeat(gs, C)
        cc = np.tile(np.arange(C), len(gs))
        rate = np.stack([self.FX(x) for x in gs]).ravel()
        dates = self.dstr.take(pa.array(gg))
        ctx = None
        if d == 0 and self.faults:
            hist = gg < g
            ctx = {"usd": hist & (cc == 0), "other": hist & (cc != 0)}
        if d == 0:  # the stressed pre-history (risk_data.py), after the Part 1 rows, never faulted
            pre_dates, pre_cc, pre_rate = self._pre_history_fx_rows()
            dates, cc, rate = pa.concat_arrays([dates, pre_dates]), np.concatenate([cc, pre_cc]), np.concatenate([rate, pre_rate])
            if ctx is not None:
                ctx = {k: np.concatenate([v, np.zeros(len(pre_cc), bool)]) for k, v in ctx.items()}
        cols = [dates, _lab(CURRENCIES, cc), _num(rate, 8)]
        self._write_lines(ddir, "fx_rates", _csv_lines(cols), ctx, ctx is not None)
