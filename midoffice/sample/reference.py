"""Reference data: instruments, books (and their traders), limits and targets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from midoffice.contracts import control_parameters
from midoffice.sample.common import ASSET_CLASSES, CURRENCIES, S_FAULTS, S_TERMS, _rng
from midoffice.sample.files import _cat, _epoch_dates, _ids, _int, _lab, _num, _quote_needed

ISSUER_COUNTRIES = [("US", 0, 0.40), ("GB", 2, 0.12), ("DE", 1, 0.09), ("FR", 1, 0.08), ("NL", 1, 0.03),
                    ("IT", 1, 0.03), ("ES", 1, 0.02), ("JP", 3, 0.08), ("CH", 4, 0.06), ("CA", 5, 0.05),
                    ("AU", 6, 0.04)]
SECTORS = ["Technology", "Financials", "Healthcare", "Industrials", "Energy", "Consumer Staples",
           "Consumer Discretionary", "Utilities", "Telecommunications", "Materials", "Real Estate"]
AC_WEIGHTS = [0.50, 0.25, 0.10, 0.07, 0.08]
AC_PREFIX = ["EQ", "BD", "FD", "CM", "FX"]
COMMODITIES = [("Brent Crude", "Energy"), ("WTI Crude", "Energy"), ("Natural Gas", "Energy"),
               ("Gold", "Precious Metals"), ("Silver", "Precious Metals"), ("Copper", "Base Metals"),
               ("Aluminium", "Base Metals"), ("Nickel", "Base Metals"), ("Wheat", "Agriculture"),
               ("Corn", "Agriculture"), ("Soybeans", "Agriculture"), ("Coffee", "Agriculture")]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
SYL1 = ["Bar", "Cal", "Dun", "Eld", "Fair", "Glen", "Har", "Ives", "Kel", "Lind", "Mar", "Nor",
        "Ock", "Pem", "Ral", "Stan", "Thorn", "Up", "Vale", "Wex", "Ash", "Brook", "Craw", "Dal"]
SYL2 = ["ford", "well", "ton", "by", "wick", "more", "ley", "ridge", "stone", "field", "worth",
        "combe", "hurst", "dale", "bury", "mont", "court", "wood", "holm", "gate"]
CUSTODIANS = ["BNY_MELLON", "STATE_STREET", "EUROCLEAR", "CLEARSTREAM", "JPM_CUSTODY", "HSBC_SECURITIES",
              "UBS_CUSTODY"]
CCY_CUSTODIAN = [[0, 1, 4], [2, 3], [5, 2], [4, 5], [6, 3], [0, 1], [5, 4]]  # per currency
VENUES = ["XNYS", "XNAS", "XETR", "XPAR", "XLON", "XTKS", "XSWX", "XTSE", "XASX", "OTC", "XAMS"]
CCY_VENUES = [[0, 1], [2, 3, 10], [4], [5], [6], [7], [8]]

# books: code, desk, business line, legal entity, entity currency, asset classes, flow weight, cost/income
RISK = ["CONSERVATIVE", "BALANCED", "GROWTH", "AGGRESSIVE"]  # client risk profiles

BOOKS = [
    ("EQ_CASH_LDN", "Equity Cash London", "Equities", "MO Bank UK Ltd", 2, [0], 0.20, 0.45),
    ("EQ_CASH_NY", "Equity Cash New York", "Equities", "MO Securities US Inc", 0, [0], 0.20, 0.62),
    ("EQ_FUNDS", "Funds and ETFs", "Equities", "MO Bank Europe SA", 1, [2, 0], 0.10, 1.25),
    ("RATES_G10", "G10 Rates", "Fixed Income", "MO Bank UK Ltd", 2, [1], 0.12, 0.72),
    ("CREDIT_IG", "Investment Grade Credit", "Fixed Income", "MO Securities US Inc", 0, [1], 0.10, 0.88),
    ("FX_SPOT_FWD", "FX Spot and Forwards", "FX and Commodities", "MO Bank UK Ltd", 2, [4], 0.10, 0.52),
    ("COMMODITIES", "Commodities", "FX and Commodities", "MO Bank Europe SA", 1, [3], 0.06, 1.55),
    ("MULTI_ASSET", "Multi-Asset Solutions", "Wealth Management", "MO Bank Europe SA", 1, [0, 1, 2], 0.12, 0.95),
]


class ReferenceMixin:
    """The instrument universe, the books and their traders, limits and targets."""

    def _setup_instruments(self, r):
        """The instruments (about one per 200 trades a day), their issuers, custodians and venues."""
        T = self.T
        N = int(min(3000, max(150, T // 200)))
        self.N = N
        ac = r.choice(5, N, p=AC_WEIGHTS)
        ac[:5] = np.arange(5)  # every asset class present
        ac = np.sort(ac, kind="stable")
        self.ac = ac
        n_iss = max(40, N // 4)
        ic = r.choice(len(ISSUER_COUNTRIES), n_iss, p=[c[2] for c in ISSUER_COUNTRIES])
        isec = r.integers(0, len(SECTORS), n_iss)
        iname_a, iname_b = r.integers(0, len(SYL1), n_iss), r.integers(0, len(SYL2), n_iss)
        izipf = 1.0 / (np.arange(n_iss) + 3.0)
        izipf /= izipf.sum()
        iss = r.choice(n_iss, N, p=izipf)
        cur = np.array([ISSUER_COUNTRIES[c][1] for c in ic])[iss]
        usd_issue = (r.random(N) < np.where(ac == 1, 0.25, 0.08))
        cur = np.where(usd_issue, 0, cur)
        country_lab = np.array([c[0] for c in ISSUER_COUNTRIES])[ic][iss]
        sector = np.array(SECTORS)[isec][iss]
        issuer_ids = np.array([f"ISS{k:05d}" for k in range(n_iss)])[iss]
        iss_names = np.char.add(np.array(SYL1)[iname_a], np.array(SYL2)[iname_b])
        base_name = iss_names[iss]
        idx = np.arange(N)
        name = np.char.add(base_name, " Ord")
        bmask = ac == 1
        coupon = np.round(r.uniform(0.5, 6.5, N) * 8) / 8
        year = r.integers(2027, 2056, N)
        bname = np.char.add(np.char.add(np.char.add(base_name, " "), np.char.mod("%.3f", coupon)),
                            np.char.add("% ", year.astype(str)))
        name = np.where(bmask, bname, name)
        fmask = ac == 2
        fstyle = np.array(["Global Equity Fund", "Income Fund", "Balanced Fund", "Index ETF", "Bond Fund"])
        fsel = r.integers(0, 5, N)
        name = np.where(fmask, np.char.add(np.char.add(base_name, " "), fstyle[fsel]), name)
        sector = np.where(fmask, np.array(["Equity Fund", "Income Fund", "Multi-Asset Fund", "Equity Fund",
                                           "Bond Fund"])[fsel], sector)
        cmask = ac == 3
        ck = idx % len(COMMODITIES)
        cm = r.integers(0, 12, N)
        cname = np.char.add(np.char.add(np.array([c[0] for c in COMMODITIES])[ck], " "),
                            np.char.add(np.array(MONTHS)[cm], (27 + idx % 3).astype(str)))
        name = np.where(cmask, cname, name)
        sector = np.where(cmask, np.array([c[1] for c in COMMODITIES])[ck], sector)
        exch = np.where(ck % 2 == 0, "ISS-CME", np.where(ck % 3 == 0, "ISS-LME", "ISS-ICE"))
        issuer_ids = np.where(cmask, exch, issuer_ids)
        country_lab = np.where(cmask, np.where(exch == "ISS-CME", "US", "GB"), country_lab)
        cur = np.where(cmask, 0, cur)
        xmask = ac == 4
        base_ccy = 1 + idx % (len(CURRENCIES) - 1)
        tenor = np.array(["SPOT", "FWD 1M", "FWD 3M", "FWD 6M"])[(idx // 6) % 4]
        xname = np.char.add(np.char.add(np.char.add(np.array(CURRENCIES)[base_ccy], "USD "), tenor), "")
        name = np.where(xmask, xname, name)
        sector = np.where(xmask, "Currency", sector)
        issuer_ids = np.where(xmask, np.char.add("ISS-FX-", np.array(CURRENCIES)[base_ccy]), issuer_ids)
        ccy_country = {1: "DE", 2: "GB", 3: "JP", 4: "CH", 5: "CA", 6: "AU"}
        country_lab = np.where(xmask, np.array([ccy_country.get(int(b), "US") for b in range(7)])[base_ccy],
                               country_lab)
        cur = np.where(xmask, 0, cur)
        self.cur = cur.astype(np.int64)
        prefix = np.array(AC_PREFIX)[ac]
        self.inst_ids = _cat(pa.array(prefix), pc.utf8_lpad(_int(idx + 1), 6, "0"))
        self.issuer = issuer_ids
        self.country = country_lab
        self.sector = sector
        self.inst_table = [self.inst_ids, pa.array(name), _lab(ASSET_CLASSES, ac), pa.array(sector),
                           pa.array(issuer_ids), pa.array(country_lab), _lab(CURRENCIES, cur)]
        self.bond_terms = self._bond_terms(coupon, year, bmask)
        # custodian per instrument (positions and settlements)
        self.inst_cust = np.array([CCY_CUSTODIAN[c][k % len(CCY_CUSTODIAN[c])] for k, c in enumerate(cur)])
        vsel = r.integers(0, 6, N)
        self.inst_venue = np.array([CCY_VENUES[c][v % len(CCY_VENUES[c])] for c, v in zip(cur, vsel)])
        self.inst_venue = np.where((ac == 1) | (ac == 4), 9, self.inst_venue)  # bonds, FX: OTC
        self.base_ccy = base_ccy

    def _bond_terms(self, coupon, year, bmask) -> dict[str, np.ndarray]:
        """Coupon, issue, maturity and frequency of each BOND (DOMAIN §7.3), matching its name
        ("Name 4.125% 2034"): maturity on a day of that year, issued 5 to 30 years before it
        and before the history starts, paying 1, 2 or 4 coupons a year (semi-annual mostly)."""
        r = _rng(self.seed, -1, S_TERMS)
        N = len(coupon)
        month, day = r.integers(1, 13, N), r.integers(1, 29, N)
        maturity = np.array([f"{y:04d}-{m:02d}-{d:02d}" for y, m, d in zip(year, month, day)], dtype="datetime64[D]")
        first_history = self.axis[0]
        tenor_years = r.integers(5, 31, N)
        issue = np.minimum(maturity - (tenor_years * 365.25).astype(np.int64), first_history - 30)
        return {"coupon_rate": np.where(bmask, coupon / 100.0, np.nan), "maturity_date": maturity,
                "issue_date": issue, "coupon_frequency": r.choice([1, 2, 4], N, p=[0.3, 0.6, 0.1]),
                "is_bond": bmask}

    def _set_volumes(self, holdings_units: np.ndarray) -> None:
        """Average daily volume (units) of each instrument: about twice the firm's gross holding
        (a median position liquidates in ~2.5 days at 20 % participation), spread so that a few
        need more than 20 days; an instrument the firm does not hold trades like the median."""
        r = _rng(self.seed, 0, S_TERMS)
        held = np.abs(holdings_units)
        typical = np.median(held[held > 0]) if (held > 0).any() else 1000.0
        base = np.where(held > 0, held, typical)
        self.adv = np.maximum(np.round(base * 2.0 * r.lognormal(0.0, 1.1, len(base))), 1.0)

    def _instruments_cols(self) -> list[pa.Array]:
        t, b = self.bond_terms, self.bond_terms["is_bond"]

        def date_text(days: np.ndarray) -> pa.Array:
            return pc.if_else(pa.array(b), pa.array(np.datetime_as_string(days, unit="D")), pa.scalar(None, pa.string()))

        return [_quote_needed(c) for c in self.inst_table] + [
            pc.if_else(pa.array(b), _num(np.nan_to_num(t["coupon_rate"]), 6), pa.scalar(None, pa.string())),
            date_text(t["issue_date"]),
            date_text(t["maturity_date"]),
            pc.if_else(pa.array(b), _int(t["coupon_frequency"]), pa.scalar(None, pa.string())),
            _num(self.adv, 0),
        ]

    # ---- books, traders ---------------------------------------------------------------------
    def _setup_books(self, r):
        nb = len(BOOKS)
        self.nb = nb
        self.book_codes = [b[0] for b in BOOKS]
        self.n_traders = r.integers(3, 9, nb)
        self.trader_off = np.concatenate([[0], np.cumsum(self.n_traders)[:-1]])
        self.trader_labels = [f"TRD-{b + 1:02d}{k + 1:02d}" for b, n in enumerate(self.n_traders) for k in range(n)]
        # instrument universe per book
        cums, univ = [], []
        for b, book in enumerate(BOOKS):
            cand = np.flatnonzero(np.isin(self.ac, book[5]))
            size = int(min(len(cand), r.integers(40, 320)))
            u = np.sort(r.choice(cand, size, replace=False))
            w = 1.0 / (r.permutation(size) + 4.0)
            c = np.cumsum(w) / w.sum()
            c[-1] = 1.0
            univ.append(u)
            cums.append(c + b)
        self.book_univ = univ
        self.book_univ_flat = np.concatenate(univ)
        self.book_cum = np.concatenate(cums)
        self.book_w = np.array([b[6] for b in BOOKS])
        self.book_w /= self.book_w.sum()
        self.held = np.zeros((nb, self.N), bool)
        for b, u in enumerate(univ):
            self.held[b, u] = True


    # ---- limits, targets (calibrated on the first day) ------------------------------------------------
    def _calibrate(self, g):
        r = _rng(self.seed, -1, S_FAULTS + 20)
        P, FX = self.P(g), self.FX(g)
        px_usd = P * FX[self.cur]
        MV = self.Q * px_usd  # books x instruments
        gross_b, net_b = np.abs(MV).sum(1), MV.sum(1)
        gross, net = gross_b.sum(), net_b.sum()
        # historical VaR from the price history: 250 scenarios, 99 % (k = 3)
        s = np.arange(g - 249, g + 1)
        usd = np.stack([self.P(x) * self.FX(x)[self.cur] for x in range(g - 250, g + 1)])
        R = usd[1:] / usd[:-1] - 1
        pnl = R @ MV.T  # scenarios x books
        var_b = -np.sort(pnl, axis=0)[2]
        var_f = -np.sort(pnl.sum(1))[2]
        del s
        L = []

        def add(st, sid, metric, value, warn=0.8):
            L.append((st, sid, metric, float(value), warn))

        def usd_round(x):
            return float(max(1000.0, round(x / 1000.0) * 1000.0))

        add("FIRM", "ALL", "GROSS_EXPOSURE", usd_round(gross * 1.6))
        add("FIRM", "ALL", "NET_EXPOSURE", usd_round(abs(net) * 2.5), None)
        add("FIRM", "ALL", "VAR_99", usd_round(var_f * 1.12))
        gross_f = [1.0, 0.93, 1.12, 0.985, 1.6, 1.8, 2.2, 1.5]
        var_f_b = [1.7, 1.8, 1.6, 2.0, 0.92, 1.08, 1.9, 2.5]
        share_b = gross_b / gross
        for b in range(self.nb):
            code = self.book_codes[b]
            add("BOOK", code, "GROSS_EXPOSURE", usd_round(gross_b[b] * gross_f[b]), 0.9 if b == 6 else 0.8)
            add("BOOK", code, "NET_EXPOSURE", usd_round(abs(net_b[b]) * (1.05 if b == 5 else 2.0)),
                None if b % 3 == 0 else 0.8)
            add("BOOK", code, "VAR_99", usd_round(var_b[b] * var_f_b[b]))
            if b < 3:
                add("BOOK", code, "CONCENTRATION_SHARE",
                    max(0.0001, round(min(1.0, share_b[b] * (1.02 if b == 0 else 1.4)), 4)))
        # client limits on the largest client portfolios
        cmv = np.bincount(self.h_client, weights=np.abs(self.h_qty * px_usd[self.h_inst]), minlength=len(self.cl["seg"]))
        top = np.argsort(-cmv, kind="stable")[:12]
        cf = [0.95, 1.15, 1.3, 1.6, 2.0, 2.5, 1.4, 1.8, 3.0, 1.2, 1.7, 2.2]
        for j, c in enumerate(top):
            add("CLIENT", f"C{c + 1:07d}", "GROSS_EXPOSURE", usd_round(cmv[c] * cf[j]), 0.9 if j == 6 else 0.8)
        # issuer, country, asset class (over BOOK holdings)
        absmv = np.abs(MV).sum(0)
        for dim, keys, nmax in [("ISSUER", self.issuer, 10), ("COUNTRY", self.country, 99),
                                ("ASSET_CLASS", np.array(ASSET_CLASSES)[self.ac], 99)]:
            uk, inv = np.unique(keys, return_inverse=True)
            gsum = np.bincount(inv, weights=absmv)
            order = np.argsort(-gsum, kind="stable")[:nmax]
            for j, u in enumerate(order):
                if gsum[u] <= 0:
                    continue
                add(dim, str(uk[u]), "GROSS_EXPOSURE", usd_round(gsum[u] * (1.5 + 0.1 * j if j != 1 else 1.1)))
                if j < 3:
                    f = 1.05 if j == 0 else 1.5
                    add(dim, str(uk[u]), "CONCENTRATION_SHARE", max(0.0001, round(min(1.0, gsum[u] / gross * f), 4)),
                        0.9 if j == 0 else 0.8)
        self.limits = L
        self.limit_change_day = self.days // 2 if self.days >= 4 else None
        # revenue per book (for the GL) from the first day's commissions
        dn = self.day_new
        rev = np.bincount(dn["book"], weights=dn["comm_usd"], minlength=self.nb)
        self.book_rev = np.maximum(rev, 1000.0)
        self.fee_share = r.uniform(0.1, 0.3, self.nb)
        # targets
        act = int((self.cl["status"] == 0).sum())
        tg = [("CLIENT_HHI_MAX", p, v) for p, v in zip(RISK, [0.30, 0.40, 0.55, 0.75])]
        tg += [("SEGMENT_SHARE_MIN", "RETAIL", 0.50), ("SEGMENT_SHARE_MIN", "PRIVATE", 0.25),
               ("SEGMENT_SHARE_MIN", "INSTITUTIONAL", 0.05), ("SEGMENT_SHARE_MAX", "RETAIL", 0.75),
               ("SEGMENT_SHARE_MAX", "PRIVATE", 0.35), ("SEGMENT_SHARE_MAX", "INSTITUTIONAL", 0.08)]
        tg += [("COST_TO_INCOME_MAX", c, v) for c, v in zip(self.book_codes, [0.7, 0.7, 0.8, 0.8, 0.8, 0.6, 0.9, 0.9])]
        tg += [("COST_TO_INCOME_MAX", "ALL", 0.75), ("SETTLEMENT_EFFICIENCY_MIN", "ALL", 0.92),
               ("RECON_MATCH_RATE_MIN", "ALL", 0.95), ("ACTIVE_CLIENTS_MIN", "ALL", float(round(act * 0.97)))]
        self.targets_cols = self._targets_with_glide_paths(tg, act)

    def _targets_with_glide_paths(self, tg: list[tuple], active: int) -> list[pa.Array]:
        """One row per target, in force from the start, and two targets as glide paths (DOMAIN
        §7.3): earlier milestones dated on the run's business dates, each target's final value
        unchanged. Nothing random is drawn, so no other figure of the seed moves."""
        def on(k: int) -> int:
            return int(self.axis_epoch[min(self.g0 + k, len(self.axis_epoch) - 1)])

        glide = {("COST_TO_INCOME_MAX", "ALL"): [(None, 0.95), (on(2), 0.85), (on(5), 0.75)],
                 ("ACTIVE_CLIENTS_MIN", "ALL"): [(None, float(round(active * 0.93))), (on(4), float(round(active * 0.97)))]}
        rows = []
        for i, (metric, scope, value) in enumerate(tg, start=1):
            for day, milestone in glide.get((metric, scope), [(None, value)]):
                rows.append((i, metric, scope, milestone, day))
        dates = _epoch_dates([r[4] if r[4] is not None else 0 for r in rows])
        return [_ids("TGT-", [r[0] for r in rows], 3), pa.array([r[1] for r in rows]), pa.array([r[2] for r in rows]),
                _num([r[3] for r in rows]), pc.if_else(pa.array([r[4] is not None for r in rows]), dates, pa.scalar(None, pa.string()))]

    def _control_parameters_cols(self):
        """The sample firm delivers every documented default (DOMAIN §7.2) as its parameters."""
        rows = [row for p in control_parameters().values() for row in p.default_rows()]
        return [pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows]),
                pa.array([None if r[2] is None else f"{r[2]:.6f}".rstrip("0").rstrip(".") for r in rows], pa.string()),
                _quote_needed(pa.array([r[3] for r in rows], pa.string()))]

    def _limits_cols(self, d):
        L = list(self.limits)
        if self.limit_change_day is not None and d >= self.limit_change_day:
            # the middle office raises the breached BOOK gross limit of the second book mid-period
            j = next(i for i, x in enumerate(L) if x[0] == "BOOK" and x[1] == self.book_codes[1]
                     and x[2] == "GROSS_EXPOSURE")
            st, sid, m, v, w = L[j]
            L[j] = (st, sid, m, float(round(v * 1.15 / 1000) * 1000), w)
        n = len(L)
        warn = np.array([np.nan if x[4] is None else x[4] for x in L])
        return [_ids("LIM-", np.arange(1, n + 1), 4), pa.array([x[0] for x in L]), pa.array([x[1] for x in L]),
                pa.array([x[2] for x in L]), _num([x[3] for x in L]),
                pc.cast(pa.array(warn, mask=np.isnan(warn)), pa.string())]

    def _books_cols(self):
        heads = [self.trader_labels[o] for o in self.trader_off]
        return [_quote_needed(pa.array(c)) for c in ([b[0] for b in BOOKS], [b[1] for b in BOOKS],
                                                     [b[2] for b in BOOKS], [b[3] for b in BOOKS], heads)]

