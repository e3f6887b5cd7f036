"""Deterministic sample-feed generator (DOMAIN.md §3 feeds, §6 `midoffice generate`).

Writes ``<out>/<YYYY-MM-DD>/<feed file>`` for the 12 feeds of contracts/feeds.yaml plus a
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

import hashlib
import io
import json
import math
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from midoffice.contracts import load_contracts

HISTORY_DAYS = 300  # business days of price / fx history in the first delivery
SENT = np.int32(1 << 30)  # "no event" day

# random streams (per date: default_rng([seed, day + 1, stream]))
S_SETUP, S_CLIENTS, S_TRADES, S_SETTLE, S_POS, S_PRICES, S_ACT, S_GL, S_FAULTS, S_DELIV = range(10)

CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD"]
FX0 = np.array([1.0, 1.085, 1.268, 0.00672, 1.118, 0.738, 0.662])
FX_VOL = np.array([0.0, 0.0045, 0.0050, 0.0060, 0.0045, 0.0040, 0.0060])

# issuer country -> currency, weight
ISSUER_COUNTRIES = [("US", 0, 0.40), ("GB", 2, 0.12), ("DE", 1, 0.09), ("FR", 1, 0.08), ("NL", 1, 0.03),
                    ("IT", 1, 0.03), ("ES", 1, 0.02), ("JP", 3, 0.08), ("CH", 4, 0.06), ("CA", 5, 0.05),
                    ("AU", 6, 0.04)]
SECTORS = ["Technology", "Financials", "Healthcare", "Industrials", "Energy", "Consumer Staples",
           "Consumer Discretionary", "Utilities", "Telecommunications", "Materials", "Real Estate"]
ASSET_CLASSES = ["EQUITY", "BOND", "FUND", "COMMODITY", "FX"]
AC_WEIGHTS = [0.50, 0.25, 0.10, 0.07, 0.08]
AC_PREFIX = ["EQ", "BD", "FD", "CM", "FX"]
AC_VOL = [(0.012, 0.030), (0.002, 0.006), (0.007, 0.014), (0.012, 0.025), (0.004, 0.007)]
AC_RHO = [(0.40, 0.70), (0.50, 0.70), (0.70, 0.90), (0.40, 0.60), (0.50, 0.70)]
COMMODITIES = [("Brent Crude", "Energy"), ("WTI Crude", "Energy"), ("Natural Gas", "Energy"),
               ("Gold", "Precious Metals"), ("Silver", "Precious Metals"), ("Copper", "Base Metals"),
               ("Aluminium", "Base Metals"), ("Nickel", "Base Metals"), ("Wheat", "Agriculture"),
               ("Corn", "Agriculture"), ("Soybeans", "Agriculture"), ("Coffee", "Agriculture")]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
SYL1 = ["Bar", "Cal", "Dun", "Eld", "Fair", "Glen", "Har", "Ives", "Kel", "Lind", "Mar", "Nor",
        "Ock", "Pem", "Ral", "Stan", "Thorn", "Up", "Vale", "Wex", "Ash", "Brook", "Craw", "Dal"]
SYL2 = ["ford", "well", "ton", "by", "wick", "more", "ley", "ridge", "stone", "field", "worth",
        "combe", "hurst", "dale", "bury", "mont", "court", "wood", "holm", "gate"]
FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Iris", "James",
         "Karin", "Lukas", "Maria", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Samuel", "Tara",
         "Umar", "Vera", "William", "Xenia", "Yusuf", "Zoe", "Marco", "Sofia", "Kenji", "Amelie",
         "Pierre", "Hannah", "Luca", "Ingrid", "Mateo", "Priya"]
CORP_SUFFIX = ["Holdings Ltd", "Capital LLC", "Industries AG", "Partners LLP", "Group SA", "Trading GmbH"]
FUND_SUFFIX = ["Pension Fund", "Endowment", "Capital Fund LP", "Asset Management", "Insurance Fund"]
MAIL_DOMAINS = ["example.com", "mail.example.org", "inbox.example.net", "post.example.co.uk"]
CLIENT_COUNTRIES = ["GB", "US", "DE", "FR", "CH", "IT", "ES", "NL", "LU", "IE", "SE", "JP", "SG",
                    "HK", "AE", "CA", "AU", "BR"]
CLIENT_COUNTRY_W = [.22, .16, .09, .08, .08, .05, .04, .04, .03, .03, .02, .04, .03, .03, .02, .02, .01, .01]
CLIENT_TYPES = ["INDIVIDUAL", "CORPORATE", "FUND"]
SEGMENTS = ["RETAIL", "PRIVATE", "INSTITUTIONAL"]
KYC = ["PENDING", "APPROVED", "EXPIRED", "REJECTED"]
RISK = ["CONSERVATIVE", "BALANCED", "GROWTH", "AGGRESSIVE"]
STATUS = ["ACTIVE", "DORMANT", "CLOSED"]
CUSTODIANS = ["BNY_MELLON", "STATE_STREET", "EUROCLEAR", "CLEARSTREAM", "JPM_CUSTODY", "HSBC_SECURITIES",
              "UBS_CUSTODY"]
CCY_CUSTODIAN = [[0, 1, 4], [2, 3], [5, 2], [4, 5], [6, 3], [0, 1], [5, 4]]  # per currency
VENUES = ["XNYS", "XNAS", "XETR", "XPAR", "XLON", "XTKS", "XSWX", "XTSE", "XASX", "OTC", "XAMS"]
CCY_VENUES = [[0, 1], [2, 3, 10], [4], [5], [6], [7], [8]]
SIDES = ["BUY", "SELL"]
EVENTS = ["NEW", "AMEND", "CANCEL"]
ST_PENDING, ST_SETTLED, ST_PARTIAL, ST_FAILED, ST_CANCELLED = range(5)
SETTLE_STATUS = ["PENDING", "SETTLED", "PARTIAL", "FAILED", "CANCELLED"]
FAIL_REASONS = ["SSI_MISSING", "INSUFFICIENT_SECURITIES", "INSUFFICIENT_CASH", "COUNTERPARTY_UNMATCHED",
                "QUANTITY_MISMATCH", "AMOUNT_MISMATCH"]
# settlement plan kinds
K_NORMAL, K_LATE, K_PART_SETTLE, K_PART_STAY, K_NEVER, K_QTY, K_AMT, K_ORPHAN = range(8)
KIND_P = [0.898, 0.04, 0.01, 0.01, 0.015, 0.015, 0.012]

# books: code, desk, business line, legal entity, entity currency, asset classes, flow weight, cost/income
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
SUPPORT = ["OPERATIONS", "TECHNOLOGY", "COMPLIANCE", "SALES"]
SUPPORT_SHARE = [0.08, 0.10, 0.04, 0.03]
GL_CATS = ["REVENUE_FEES", "STAFF", "TECHNOLOGY", "MARKET_DATA", "PREMISES", "MARKETING", "OTHER_EXPENSE"]
GL_ACCOUNTS = ["4100", "6100", "6200", "6300", "6400", "6500", "6900"]
BOOK_COST_SPLIT = {1: 0.55, 2: 0.14, 3: 0.10, 4: 0.10, 5: 0.02, 6: 0.09}
SUPPORT_COST_SPLIT = {1: 0.60, 2: 0.18, 4: 0.12, 5: 0.04, 6: 0.06}
CHANNELS = ["CALL", "MEETING", "EMAIL", "EVENT", "SOCIAL"]
CHANNEL_P = [0.35, 0.15, 0.30, 0.05, 0.15]
CHANNEL_COST = [(4.0, 20.0), (60.0, 350.0), (0.05, 0.8), (90.0, 600.0), (0.3, 6.0)]
CAMPAIGNS = ["CMP-WEALTH-SPRING", "CMP-ESG-FOCUS", "CMP-RETIRE-READY", "CMP-INST-ONBOARD", "CMP-FX-HEDGE"]
OUTCOMES = ["NONE", "LEAD", "DEAL"]


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _rng(seed: int, day: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(day) + 1, int(stream)])


def _cat(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _ids(prefix: str, nums, width: int) -> pa.Array:
    s = pc.cast(pa.array(np.asarray(nums, dtype=np.int64)), pa.string())
    return _cat(prefix, pc.utf8_lpad(s, width, "0"))


def _lab(labels, idx) -> pa.Array:
    return pa.array(list(labels), pa.string()).take(pa.array(np.asarray(idx, dtype=np.int64)))


def _num(x, nd: int = 4) -> pa.Array:
    """Plain decimal text (never an exponent), at most `nd` decimals, trailing zeros dropped."""
    x = np.asarray(x, dtype=np.float64)
    scale = 10 ** nd
    v = np.round(x * scale).astype(np.int64)
    a = np.abs(v)
    ip = _int(a // scale)
    if nd == 0:
        txt = ip
    else:
        fp = pc.utf8_rtrim(pc.utf8_lpad(_int(a % scale), nd, "0"), "0")
        txt = pc.if_else(pc.equal(fp, ""), ip, _cat(ip, ".", fp))
    return pc.if_else(pa.array(v < 0), _cat("-", txt), txt)


def _int(x) -> pa.Array:
    return pc.cast(pa.array(np.asarray(x, dtype=np.int64)), pa.string())


def _ts(seconds) -> pa.Array:
    return pc.strftime(pa.array(np.asarray(seconds, dtype=np.int64), pa.timestamp("s")),
                       format="%Y-%m-%dT%H:%M:%SZ")


def _epoch_dates(days) -> pa.Array:
    return pc.cast(pa.array(np.asarray(days, dtype=np.int32), pa.int32()).cast(pa.date32()), pa.string())


def _quote_needed(a: pa.Array) -> pa.Array:
    mask = pc.match_substring_regex(a, '[,"\r\n]')
    if not pc.any(mask).as_py():
        return a
    quoted = _cat('"', pc.replace_substring(a, '"', '""'), '"')
    return pc.if_else(mask, quoted, a)


def _csv_lines(cols: list[pa.Array]) -> pa.Array:
    return pc.binary_join_element_wise(*cols, ",", null_handling="replace", null_replacement="")


def _body(lines: pa.Array) -> bytes:
    if len(lines) == 0:
        return b""
    arr = pc.binary_join_element_wise(lines, "", "\n")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    return bytes(memoryview(bufs[2])[offs[0]:offs[-1]])


def _searchsorted_groups(cum: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """cum: concatenated per-group cumulative weights shifted by group index (group g in (g, g+1])."""
    return np.searchsorted(cum, group + u, side="right")


# ---------------------------------------------------------------------------------------------
# the world
# ---------------------------------------------------------------------------------------------
class _World:
    def __init__(self, out: Path, start: date, days: int, T: int, seed: int, faults: bool,
                 progress: Callable[[str], None] | None):
        self.out, self.days, self.T, self.seed, self.faults = out, days, T, seed, faults
        self.progress = progress or (lambda m: None)
        self.contracts = load_contracts()
        s0 = np.busday_offset(np.datetime64(start, "D"), 0, roll="forward")
        H = HISTORY_DAYS
        self.H, self.g0 = H, H
        self.axis = np.busday_offset(s0, np.arange(-H, days + 90), roll="forward")
        self.axis_epoch = self.axis.astype(np.int64)
        self.dstr = pa.array(np.datetime_as_string(self.axis, unit="D"))
        self.fault_log: list[dict] = []
        self.rows_total: dict[str, int] = {}
        r = _rng(seed, -1, S_SETUP)
        self._setup_market(r)
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

    # ---- market: fx, instruments, prices ------------------------------------------------------
    def _setup_market(self, r):
        T, H = self.T, self.H
        n_g = H + self.days
        C = len(CURRENCIES)
        self.fx_raw = np.zeros((n_g, C))
        self.fx_raw[0] = FX0
        self.vs = 0.0  # volatility regime state
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
        # custodian per instrument (positions and settlements)
        self.inst_cust = np.array([CCY_CUSTODIAN[c][k % len(CCY_CUSTODIAN[c])] for k, c in enumerate(cur)])
        vsel = r.integers(0, 6, N)
        self.inst_venue = np.array([CCY_VENUES[c][v % len(CCY_VENUES[c])] for c, v in zip(cur, vsel)])
        self.inst_venue = np.where((ac == 1) | (ac == 4), 9, self.inst_venue)
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

    # ---- clients ----------------------------------------------------------------------------
    def _setup_clients(self, r):
        C0 = max(200, self.T // 10)
        self.C0 = C0
        self.n_rm = max(8, C0 // 250)
        c = self._new_clients(r, C0, initial=True)
        self.cl = c
        # initial client holdings
        self.h_client, self.h_inst, self.h_qty = self._new_holdings(r, np.flatnonzero(c["status"] != 2), self.g0 - 1)

    def _new_clients(self, r, n, initial: bool, g: int | None = None) -> dict:
        ctype = r.choice(3, n, p=[0.85, 0.10, 0.05])
        seg = np.where(ctype == 0, np.where(r.random(n) < 0.2, 1, 0),
                       np.where(ctype == 1, np.where(r.random(n) < 0.4, 1, 2), 2))
        first_day = int(self.axis_epoch[self.g0])
        age = r.integers(19, 93, n)
        birth = first_day - (age * 365.25).astype(np.int64) - r.integers(0, 365, n)
        inc = first_day - r.integers(365 * 2, 365 * 120, n)
        birth = np.where(ctype == 0, birth, inc)
        if initial:
            lo = int(np.datetime64("2005-01-03").astype(np.int64))
            onb = r.integers(lo, first_day - 1, n)
            onb = np.minimum(np.maximum(onb, birth + 18 * 366), first_day - 1)
            upd_day = onb + (r.random(n) * (first_day - 1 - onb)).astype(np.int64)
            status = r.choice(3, n, p=[0.88, 0.09, 0.03])
            kyc = r.choice(4, n, p=[0.04, 0.89, 0.05, 0.02])
        else:
            onb = np.full(n, int(self.axis_epoch[g]))
            upd_day = onb
            status = np.zeros(n, np.int64)
            kyc = r.choice(4, n, p=[0.4, 0.6, 0.0, 0.0])
        wealth_med = np.array([6e4, 2.5e6, 6e7])[seg]
        wealth = wealth_med * r.lognormal(0, 1.0, n) * (1 + r.pareto(2.5, n))
        return dict(
            ctype=ctype.astype(np.int8), seg=seg.astype(np.int8),
            country=r.choice(len(CLIENT_COUNTRIES), n, p=np.array(CLIENT_COUNTRY_W) / sum(CLIENT_COUNTRY_W)).astype(np.int8),
            birth=birth.astype(np.int64), onb=onb.astype(np.int64), kyc=kyc.astype(np.int8),
            risk=r.choice(4, n, p=[0.25, 0.35, 0.28, 0.12]).astype(np.int8),
            rm=r.integers(0, self.n_rm, n), status=status.astype(np.int8),
            upd=upd_day * 86400 + r.integers(0, 5 * 3600, n),
            first=r.integers(0, len(FIRST), n), s1=r.integers(0, len(SYL1), n), s2=r.integers(0, len(SYL2), n),
            suffix=r.integers(0, 30, n), dom=r.integers(0, len(MAIL_DOMAINS), n),
            cust=r.choice([0, 1, 2, 3, 4, 5, 6], n), wealth=wealth,
        )

    def _new_holdings(self, r, clients: np.ndarray, g: int):
        if len(clients) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        seg = self.cl["seg"][clients]
        npos = 1 + r.negative_binomial(1.5, 0.27, len(clients)) * np.where(seg == 2, 2, 1)
        npos = np.minimum(npos, 40)
        hc = np.repeat(clients, npos)
        w = np.where(self.ac == 4, 0.0, 1.0 / (self.popularity + 8.0))
        w /= w.sum()
        hi = r.choice(self.N, len(hc), p=w)
        key = np.unique(hc.astype(np.int64) * self.N + hi)
        hc, hi = key // self.N, key % self.N
        share = r.exponential(1.0, len(hc)) ** 1.5
        tot = np.bincount(hc, weights=share, minlength=len(self.cl["seg"]))
        share = share / tot[hc]
        px_usd = self.P(g)[hi] * self.FX(g)[self.cur[hi]]
        qty = np.maximum(1.0, np.round(share * self.cl["wealth"][hc] * 0.6 / px_usd))
        return hc, hi, qty

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
        self.cur_g = g
        self._clients_update(d, g)
        trades_lines, trades_ctx = self._trades(d, g)
        settle_lines, settle_ctx = self._settlements(d, g)
        pos_lines, pos_ctx = self._positions(d, g)
        if d == 0:
            self._calibrate(g)
        act_lines, act_ctx = self._activity(d, g)
        gl_lines, gl_ctx = self._gl(d, g)
        # writes (clients last among the client-referencing data: safe fault rows need the refs)
        self._write_csv(ddir, "books", self._books_cols())
        self._write_csv(ddir, "instruments", [_quote_needed(c) for c in self.inst_table])
        self._write_csv(ddir, "limits", self._limits_cols(d))
        self._write_csv(ddir, "targets", self.targets_cols)
        self._write_prices(ddir, d, g, faulted)
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

    # ---- clients --------------------------------------------------------------------------------
    def _clients_update(self, d, g):
        r = _rng(self.seed, d, S_CLIENTS)
        cl = self.cl
        n = len(cl["seg"])
        day = int(self.axis_epoch[g])
        t_upd = lambda k: day * 86400 + r.integers(0, 5 * 3600, k)  # noqa: E731
        live = np.flatnonzero(cl["status"] != 2)
        # attribute changes
        k = min(len(live), r.poisson(max(1.0, n * 0.002)) + 1)
        who = r.choice(live, k, replace=False)
        what = r.integers(0, 4, k)
        for j, attr in enumerate(["seg", "risk", "rm", "kyc"]):
            w = who[what == j]
            if attr == "seg":
                ct = cl["ctype"][w]
                cl["seg"][w] = np.where(ct == 0, 1 - cl["seg"][w], np.where(ct == 1, 3 - cl["seg"][w], 2))
            elif attr == "risk":
                cl["risk"][w] = (cl["risk"][w] + r.integers(1, 4, len(w))) % 4
            elif attr == "rm":
                cl["rm"][w] = (cl["rm"][w] + r.integers(1, self.n_rm, len(w))) % self.n_rm
            else:
                cl["kyc"][w] = np.where(cl["kyc"][w] == 1, 2, 1)
        cl["upd"][who] = t_upd(k)
        # churn: dormant, reactivated, closed
        for src, dst, rate in [(0, 1, 0.0008), (1, 0, 0.0003), (0, 2, 0.0003), (1, 2, 0.0006)]:
            pool = np.flatnonzero(cl["status"] == src)
            k = min(len(pool), r.poisson(max(0.3, n * rate)))
            if k:
                w = r.choice(pool, k, replace=False)
                cl["status"][w] = dst
                cl["upd"][w] = t_upd(k)
        # pending KYC approved
        pend = np.flatnonzero((cl["kyc"] == 0) & (cl["status"] != 2))
        k = min(len(pend), r.poisson(max(0.5, len(pend) * 0.1)))
        if k:
            w = r.choice(pend, k, replace=False)
            cl["kyc"][w] = 1
            cl["upd"][w] = t_upd(k)
        # onboarding
        k_new = int(r.poisson(max(1.0, self.C0 * 0.0012))) + 1
        new = self._new_clients(r, k_new, initial=False, g=g)
        for key in cl:
            cl[key] = np.concatenate([cl[key], new[key].astype(cl[key].dtype)])
        new_idx = np.arange(n, n + k_new)
        # holdings: closed clients leave, new clients invest, some holdings change
        keep = cl["status"][self.h_client] != 2
        self.h_client, self.h_inst, self.h_qty = self.h_client[keep], self.h_inst[keep], self.h_qty[keep]
        m = r.random(len(self.h_qty)) < 0.02
        self.h_qty = np.where(m, np.maximum(1.0, np.round(self.h_qty * r.lognormal(0, 0.2, len(m)))), self.h_qty)
        investors = new_idx[r.random(k_new) < 0.6]
        hc, hi, hq = self._new_holdings(r, investors, g - 1)
        self.h_client = np.concatenate([self.h_client, hc])
        self.h_inst = np.concatenate([self.h_inst, hi])
        self.h_qty = np.concatenate([self.h_qty, hq])
        # trading weights over active clients
        act = np.flatnonzero(cl["status"] == 0)
        w = cl["wealth"][act] ** 0.5
        self.trade_clients = act
        self.trade_cum = np.cumsum(w) / w.sum()

    def _client_ids(self, idx) -> pa.Array:
        return _ids("C", np.asarray(idx) + 1, 7)

    def _write_clients(self, ddir, d, g, faulted):
        cl = self.cl
        n = len(cl["seg"])
        idx = np.arange(n)
        ind = cl["ctype"] == 0
        last = _cat(_lab(SYL1, cl["s1"]), _lab(SYL2, cl["s2"]))
        first = _lab(FIRST, cl["first"])
        corp_suffix = pc.if_else(pa.array(cl["ctype"] == 1), _lab(CORP_SUFFIX, cl["suffix"] % len(CORP_SUFFIX)),
                                 _lab(FUND_SUFFIX, cl["suffix"] % len(FUND_SUFFIX)))
        name = pc.if_else(pa.array(ind), _cat(first, " ", last), _cat(last, " ", corp_suffix))
        email_ind = _cat(pc.utf8_lower(first), ".", pc.utf8_lower(last), _int(cl["suffix"]), "@",
                         _lab(MAIL_DOMAINS, cl["dom"]))
        email_corp = _cat(_lab(["treasury", "finance", "ops"], cl["suffix"] % 3), "@", pc.utf8_lower(last),
                          _int(cl["suffix"]), ".example.com")
        email = pc.if_else(pa.array(ind), email_ind, email_corp)
        fields = [
            ("client_id", self._client_ids(idx)), ("legal_name", name), ("email", email),
            ("client_type", _lab(CLIENT_TYPES, cl["ctype"])), ("segment", _lab(SEGMENTS, cl["seg"])),
            ("country", _lab(CLIENT_COUNTRIES, cl["country"])),
            ("birth_or_incorporation_date", _epoch_dates(cl["birth"])),
            ("onboarding_date", _epoch_dates(cl["onb"])), ("kyc_status", _lab(KYC, cl["kyc"])),
            ("risk_profile", _lab(RISK, cl["risk"])),
            ("relationship_manager_id", _ids("RM", cl["rm"] + 1, 4)), ("status", _lab(STATUS, cl["status"])),
            ("updated_at", _ts(cl["upd"])),
        ]
        parts = []
        for j, (k, v) in enumerate(fields):
            parts.append(("{" if j == 0 else ",") + json.dumps(k) + ":")
            parts.append(pc.fill_null(_cat('"', v, '"'), "null"))
        parts.append("}")
        lines = _cat(*parts)
        # clients safe to fault: CLOSED and referenced by no other feed today
        referenced = np.zeros(n, bool)
        for arr in self.client_refs:
            referenced[arr] = True
        safe = (cl["status"] == 2) & ~referenced
        self._write_lines(ddir, "clients", lines, {"safe": safe, "any": np.ones(n, bool)}, faulted)

    # ---- trades -----------------------------------------------------------------------------------
    def _trades(self, d, g):
        r = _rng(self.seed, d, S_TRADES)
        T = self.T
        n_new, n_late = int(round(T * 0.94)), int(round(T * 0.02))
        n = n_new + n_late
        t_day = np.full(n, g, np.int32)
        t_day[n_new:] = g - r.integers(1, 4, n_late)
        book = r.choice(self.nb, n, p=self.book_w)
        inst = self.book_univ_flat[np.minimum(_searchsorted_groups(self.book_cum, book, r.random(n)),
                                              len(self.book_univ_flat) - 1)]
        client = self.trade_clients[np.minimum(np.searchsorted(self.trade_cum, r.random(n)), len(self.trade_clients) - 1)]
        seg = self.cl["seg"][client]
        side = (r.random(n) < 0.48).astype(np.int8)  # 0 BUY, 1 SELL
        vol = self.vol[inst]
        ref_px = self.P_raw[t_day, inst]
        price = ref_px * (1 + 0.25 * vol * r.standard_normal(n))
        price = np.maximum(np.where(self.cur[inst] == 3, np.round(price, 2), np.round(price, 4)), 0.0001)
        notional = np.array([8e3, 8e4, 1.5e6])[seg] * r.lognormal(0, 1.0, n)
        fx = self.FX(g)[self.cur[inst]]
        qty = np.maximum(1.0, np.round(notional / (price * fx)))
        bps = r.uniform(np.array([12, 5, 0.5])[seg], np.array([30, 12, 3])[seg])
        comm = np.round(qty * price * bps / 1e4, 2)
        s_day = t_day + np.where(self.ac[inst] == 4, 1, 2).astype(np.int32)
        exec_sec = r.integers(7 * 3600, 21 * 3600, n).astype(np.int32)
        venue = self.inst_venue[inst]
        trader = self.trader_off[book] + (r.random(n) * self.n_traders[book]).astype(np.int64)
        tid = self.tid_next + np.arange(n, dtype=np.int64)
        self.tid_next += n
        new = dict(tid=tid, fo=np.ones(n, bool), book=book, trader=trader, client=client, inst=inst, side=side,
                   qty=qty, price=price, bps=bps, comm=comm, venue=venue, t=t_day, s=s_day, exec_sec=exec_sec,
                   ver=np.ones(n, np.int32), canc=np.zeros(n, bool))
        new.update(self._plan(r, n, g, t_day, s_day, qty, price, K=None))
        # orphans: settlements with no front-office trade
        n_or = max(1, T // 2000)
        oinst = r.integers(0, self.N, n_or)
        opx = self.P(g)[oinst]
        oq = np.maximum(1.0, np.round(r.lognormal(math.log(2e4), 1.0, n_or) / (opx * self.FX(g)[self.cur[oinst]])))
        orph = dict(tid=self.orph_next + np.arange(n_or), fo=np.zeros(n_or, bool), book=np.zeros(n_or, np.int64),
                    trader=np.zeros(n_or, np.int64), client=np.zeros(n_or, np.int64), inst=oinst,
                    side=np.zeros(n_or, np.int8), qty=oq, price=opx, bps=np.zeros(n_or), comm=np.zeros(n_or),
                    venue=np.zeros(n_or, np.int64), t=np.full(n_or, g, np.int32), s=np.full(n_or, g + 2, np.int32),
                    exec_sec=np.zeros(n_or, np.int32), ver=np.ones(n_or, np.int32), canc=np.zeros(n_or, bool))
        self.orph_next += n_or
        orph.update(self._plan(r, n_or, g, orph["t"], orph["s"], oq, opx, K=K_ORPHAN))
        first_new = 0 if self.ts is None else len(self.ts["tid"])
        self._ts_append(new)
        self._ts_append(orph)
        ts = self.ts
        # amendments, cancellations (and an amendment storm)
        n_am, n_ca = int(round(T * 0.03)), int(round(T * 0.01))
        lo = g - 3
        hi_ok = (ts["t"] <= g) if d == 0 else (ts["t"] <= g - 1)
        cand = np.flatnonzero(ts["fo"] & ~ts["canc"] & (ts["t"] >= lo) & hi_ok & (ts["s"] > g))
        storm = self.faults and d == min(1, self.days - 1) and len(cand) > 0
        k = min(len(cand), n_am + n_ca + int(storm))
        pick = r.choice(cand, k, replace=False) if k else np.zeros(0, np.int64)
        storm_idx = pick[:1] if storm else np.zeros(0, np.int64)
        pick = pick[int(storm):]
        am, ca = pick[:min(n_am, len(pick))], pick[min(n_am, len(pick)):]
        am = np.sort(am)
        ca = np.sort(ca)
        ev_rows = []
        if len(am):
            chq = r.random(len(am)) < 0.6
            ts["qty"][am] = np.where(chq, np.maximum(1.0, np.round(ts["qty"][am] * r.uniform(0.5, 1.5, len(am)))),
                                     ts["qty"][am])
            newp = ts["price"][am] * (1 + np.where(chq, 0, r.normal(0, 0.003, len(am))))
            ts["price"][am] = np.maximum(np.round(newp, 4), 0.0001)
            ts["ver"][am] += 1
            ts["comm"][am] = np.round(ts["qty"][am] * ts["price"][am] * ts["bps"][am] / 1e4, 2)
            self._on_amend(r, am, g)
            ev_rows.append((am, ts["ver"][am].copy(), ts["qty"][am].copy(), ts["price"][am].copy(),
                            ts["comm"][am].copy(), np.full(len(am), 1)))
        if len(ca):
            ts["ver"][ca] += 1
            ts["canc"][ca] = True
            self._on_cancel(r, ca, g)
            ev_rows.append((ca, ts["ver"][ca].copy(), ts["qty"][ca].copy(), ts["price"][ca].copy(),
                            ts["comm"][ca].copy(), np.full(len(ca), 2)))
        if len(storm_idx):
            j = int(storm_idx[0])
            m = 50
            v0 = int(ts["ver"][j])
            qs = np.maximum(1.0, np.round(ts["qty"][j] * (1 + np.cumsum(r.normal(0, 0.05, m)))))
            vers = v0 + 1 + np.arange(m)
            comms = np.round(qs * ts["price"][j] * ts["bps"][j] / 1e4, 2)
            ts["ver"][j] = vers[-1]
            ts["qty"][j] = qs[-1]
            ts["comm"][j] = comms[-1]
            self._on_amend(r, storm_idx, g, storm=True)
            ev_rows.append((np.full(m, j), vers, qs, np.full(m, ts["price"][j]), comms, np.full(m, 1)))
            self.fault_log.append(dict(business_date=str(self.axis[g]), feed="trades", file="trades.csv",
                                       line=None, rule="amendment_storm",
                                       detail=f"trade T{int(ts['tid'][j]):010d} amended {m} times on the day "
                                              f"(versions {vers[0]}..{vers[-1]})"))
        # rows: new trades, then amend / cancel / storm events
        idx = np.arange(first_new, first_new + n)
        rows = [(idx, np.ones(n, np.int64), new["qty"], new["price"], new["comm"], np.zeros(n, np.int64))]
        rows += ev_rows
        ri = np.concatenate([x[0] for x in rows])
        ver = np.concatenate([x[1] for x in rows])
        q = np.concatenate([x[2] for x in rows])
        p = np.concatenate([x[3] for x in rows])
        cm = np.concatenate([x[4] for x in rows])
        et = np.concatenate([x[5] for x in rows])
        ins = ts["inst"][ri]
        td = ts["t"][ri]
        cols = [
            _ids("T", ts["tid"][ri], 10), _int(ver), _lab(EVENTS, et), self.dstr.take(pa.array(td)),
            self.dstr.take(pa.array(ts["s"][ri])), _lab(self.book_codes, ts["book"][ri]),
            _lab(self.trader_labels, ts["trader"][ri]), self._client_ids(ts["client"][ri]),
            self.inst_ids.take(pa.array(ins)), _lab(SIDES, ts["side"][ri]), _num(q, 0), _num(p),
            _lab(CURRENCIES, self.cur[ins]), _num(cm, 2), _lab(VENUES, ts["venue"][ri]),
            _ts(self.axis_epoch[td] * 86400 + ts["exec_sec"][ri]),
        ]
        touched = np.zeros(len(ts["tid"]), bool)
        touched[np.concatenate([am, ca, storm_idx])] = True
        plain = (et == 0) & (td == g) & ~touched[ri]
        self.day_new = dict(book=ts["book"][idx], inst=ts["inst"][idx], side=ts["side"][idx], qty=new["qty"],
                            comm_usd=new["comm"] * self.FX(g)[self.cur[new["inst"]]])
        self.client_refs = [ts["client"][ri]]
        return _csv_lines(cols), {"plain": plain, "any": np.ones(len(ri), bool)}

    def _ts_append(self, new: dict):
        if self.ts is None:
            self.ts = {k: np.asarray(v) for k, v in new.items()}
        else:
            self.ts = {k: np.concatenate([self.ts[k], np.asarray(new[k]).astype(self.ts[k].dtype)]) for k in self.ts}

    def _plan(self, r, n, g, t_day, s_day, qty, price, K=None) -> dict:
        """Settlement plan for freshly booked trades: up to three (day, status) events."""
        kind = r.choice(7, n, p=np.array(KIND_P) / sum(KIND_P)) if K is None else np.full(n, K)
        c = np.maximum(g, t_day + np.where(s_day - t_day >= 2, r.integers(0, 2, n), 0)).astype(np.int32)
        early = c < s_day
        k = r.integers(1, 6, n).astype(np.int32)
        S = np.int32(SENT)
        e = np.full((n, 3), S, np.int32)
        st = np.zeros((n, 3), np.int8)
        # phase status X at s (or at c when created late), then optional final Y at +k
        X = np.select([kind == K_NORMAL, kind == K_LATE, kind == K_PART_SETTLE, kind == K_PART_STAY],
                      [ST_SETTLED, ST_FAILED, ST_PARTIAL, ST_PARTIAL], ST_FAILED)
        has_y = (kind == K_LATE) | (kind == K_PART_SETTLE)
        xday = np.where(early, s_day, c)
        e[:, 0] = np.where(early, c, xday)
        st[:, 0] = np.where(early, ST_PENDING, X)
        e[:, 1] = np.where(early, xday, np.where(has_y, xday + k, S))
        st[:, 1] = np.where(early, X, ST_SETTLED)
        e[:, 2] = np.where(early & has_y, xday + k, S)
        st[:, 2] = ST_SETTLED
        # never instructed: half get an instruction late (age of an FO_ONLY break), half never
        nev = kind == K_NEVER
        late_c = s_day + r.integers(1, 15, n).astype(np.int32)
        resolved = r.random(n) < 0.5
        e[nev, 0] = np.where(resolved[nev], late_c[nev], S)
        st[nev, 0] = ST_PENDING
        e[nev, 1] = np.where(resolved[nev], late_c[nev] + 1, S)
        st[nev, 1] = ST_SETTLED
        e[nev, 2] = S
        # orphans: pending, then cancelled by operations after a while (or never)
        orp = kind == K_ORPHAN
        e[orp, 0] = g
        st[orp, 0] = ST_PENDING
        e[orp, 1] = np.where(r.random(orp.sum()) < 0.6, g + r.integers(2, 16, orp.sum()), S)
        st[orp, 1] = ST_CANCELLED
        e[orp, 2] = S
        # quantity / amount breaks: FAILED at s, re-booked correctly after some days (70%) or never
        brk = (kind == K_QTY) | (kind == K_AMT)
        rebook = np.full(n, S, np.int32)
        rb = np.maximum(s_day, c) + r.integers(1, 21, n)
        rebook[brk] = np.where(r.random(brk.sum()) < 0.7, rb[brk], S)
        qf = np.ones(n)
        qf[kind == K_QTY] = r.choice([0.5, 0.9, 1.1, 2.0, 10.0], int((kind == K_QTY).sum()))
        af = np.ones(n)
        nam = int((kind == K_AMT).sum())
        af[kind == K_AMT] = 1 + r.choice([-1, 1], nam) * r.uniform(0.003, 0.03, nam)
        bo_qty = self._bo_qty(qty, qf)
        reason = np.where(kind == K_QTY, 4, np.where(kind == K_AMT, 5, r.integers(0, 4, n))).astype(np.int8)
        return dict(kind=kind.astype(np.int8), sid=np.full(n, -1, np.int64), bo_ver=np.ones(n, np.int32),
                    bo_qty=bo_qty, bo_amt=self._bo_amt(bo_qty, price, af), qf=qf, af=af,
                    pfrac=r.uniform(0.3, 0.9, n), reason=reason, rebook=rebook,
                    e0=e[:, 0], e1=e[:, 1], e2=e[:, 2], s0=st[:, 0], s1=st[:, 1], s2=st[:, 2])

    @staticmethod
    def _bo_qty(qty, qf):
        bq = np.maximum(1.0, np.round(qty * qf))
        return np.where((qf != 1.0) & (bq == qty), qty + 1, bq)

    @staticmethod
    def _bo_amt(bq, price, af):
        amt = np.round(bq * price, 2)
        wrong = np.round(amt * af + np.sign(af - 1) * 0.05, 2)
        return np.maximum(np.where(af != 1.0, wrong, amt), 0.01)

    def _on_amend(self, r, idx, g, storm=False):
        ts = self.ts
        created = ts["e0"][idx] < g
        a = idx[created]
        if len(a):  # operations re-book (maybe days later: a version break until then)
            ts["e1"][a] = SENT
            ts["e2"][a] = SENT
            delay = np.where(r.random(len(a)) < 0.7, 0, r.integers(1, 9, len(a)))
            ts["rebook"][a] = g + (0 if storm else delay)
        b = idx[~created]
        if len(b):  # not instructed yet: the instruction will carry the new version
            ts["bo_ver"][b] = ts["ver"][b]
            ts["bo_qty"][b] = self._bo_qty(ts["qty"][b], ts["qf"][b])
            ts["bo_amt"][b] = self._bo_amt(ts["bo_qty"][b], ts["price"][b], ts["af"][b])

    def _on_cancel(self, r, idx, g):
        ts = self.ts
        created = ts["e0"][idx] < g
        a = idx[created]
        u = r.random(len(a))
        ts["e0"][a] = np.where(u < 0.8, g, np.where(u < 0.9, g + 1, SENT))
        ts["s0"][a] = ST_CANCELLED
        b = idx[~created]
        ts["e0"][b] = SENT
        for f in ("e1", "e2"):
            ts[f][idx] = SENT
        ts["rebook"][idx] = SENT

    # ---- settlements --------------------------------------------------------------------------------
    def _settlements(self, d, g):
        r = _rng(self.seed, d, S_SETTLE)
        ts = self.ts
        parts = []  # (trade idx, sid, ver, qty, amt, status, settled qty)

        def emit(idx, sid, ver, q, amt, status):
            parts.append((idx, sid, ver, q, amt, status))

        # re-bookings: cancel the old instruction, book the current version correctly
        rb = np.flatnonzero(ts["rebook"] == g)
        if len(rb):
            old = rb[ts["sid"][rb] >= 0]
            emit(old, ts["sid"][old].copy(), ts["bo_ver"][old].copy(), ts["bo_qty"][old].copy(),
                 ts["bo_amt"][old].copy(), np.full(len(old), ST_CANCELLED))
            ts["sid"][rb] = self.sid_next + np.arange(len(rb))
            self.sid_next += len(rb)
            ts["kind"][rb] = K_NORMAL
            ts["qf"][rb] = 1.0
            ts["af"][rb] = 1.0
            ts["bo_ver"][rb] = ts["ver"][rb]
            ts["bo_qty"][rb] = ts["qty"][rb]
            ts["bo_amt"][rb] = self._bo_amt(ts["qty"][rb], ts["price"][rb], ts["af"][rb])
            early = g < ts["s"][rb]
            ts["e0"][rb] = g
            ts["s0"][rb] = np.where(early, ST_PENDING, ST_SETTLED)
            ts["e1"][rb] = np.where(early, ts["s"][rb], SENT)
            ts["s1"][rb] = ST_SETTLED
            ts["e2"][rb] = SENT
            ts["rebook"][rb] = SENT
        # new instructions get their id
        new = np.flatnonzero((ts["e0"] == g) & (ts["sid"] < 0))
        ts["sid"][new] = self.sid_next + np.arange(len(new))
        self.sid_next += len(new)
        done_rb = np.zeros(len(ts["tid"]), bool)
        done_rb[rb] = True
        for e, s in (("e0", "s0"), ("e1", "s1"), ("e2", "s2")):
            idx = np.flatnonzero(ts[e] == g)
            emit(idx, ts["sid"][idx], ts["bo_ver"][idx], ts["bo_qty"][idx], ts["bo_amt"][idx], ts[s][idx])
        ti = np.concatenate([p[0] for p in parts])
        sid = np.concatenate([p[1] for p in parts])
        ver = np.concatenate([p[2] for p in parts])
        q = np.concatenate([p[3] for p in parts])
        amt = np.concatenate([p[4] for p in parts])
        st = np.concatenate([p[5] for p in parts]).astype(np.int64)
        order = np.argsort(sid, kind="stable")
        ti, sid, ver, q, amt, st = ti[order], sid[order], ver[order], q[order], amt[order], st[order]
        settled = np.where(st == ST_SETTLED, q, np.where(st == ST_PARTIAL,
                                                         np.floor(q * ts["pfrac"][ti]), 0.0))
        actual = np.where((st == ST_SETTLED) | (st == ST_PARTIAL), g, -1)
        act_col = self.dstr.take(pa.array(np.where(actual >= 0, actual, 0), mask=actual < 0))
        reason = pa.array(np.array(FAIL_REASONS, dtype=object)[ts["reason"][ti]], pa.string(), mask=st != ST_FAILED)
        tid_col = _ids("T", ts["tid"][ti], 10)
        cols = [
            _ids("S", sid, 10), tid_col, _int(ver), _num(q, 0), _num(amt, 2),
            _lab(CURRENCIES, self.cur[ts["inst"][ti]]), self.dstr.take(pa.array(ts["s"][ti])), act_col,
            _lab(SETTLE_STATUS, st), _num(settled, 0), reason, _lab(CUSTODIANS, self.inst_cust[ts["inst"][ti]]),
        ]
        # prune trades with nothing left to do
        E = np.stack([ts["e0"], ts["e1"], ts["e2"], ts["rebook"]])
        future = ((E > g) & (E < SENT)).any(axis=0)
        keep = future | (ts["t"] >= g - 3)
        self.ts = {k: v[keep] for k, v in ts.items()}
        del r
        return _csv_lines(cols), {"any": np.ones(len(st), bool), "settled": st == ST_SETTLED,
                                  "pending": st == ST_PENDING}

    # ---- positions ----------------------------------------------------------------------------------
    def _positions(self, d, g):
        r = _rng(self.seed, d, S_POS)
        nb, N = self.nb, self.N
        dn = self.day_new
        sgn = np.where(dn["side"] == 0, 1.0, -1.0)
        cell = dn["book"].astype(np.int64) * N + dn["inst"]
        flow = np.bincount(cell, weights=sgn * dn["qty"], minlength=nb * N).reshape(nb, N)
        if self.Q is None:
            sumsq = np.bincount(cell, weights=dn["qty"] ** 2, minlength=nb * N).reshape(nb, N)
            base = np.sqrt(sumsq)
            fallback = np.median(base[base > 0]) if (base > 0).any() else 100.0
            base = np.where(base > 0, base, fallback)
            sign = np.where(r.random((nb, N)) < 0.8, 1.0, -1.0)
            self.Q = np.round(sign * base * 12 * r.lognormal(0, 0.6, (nb, N))) * self.held
        self.Q = self.Q + flow * self.held
        bb, bi = np.nonzero(self.held)
        o = np.lexsort((self.h_inst, self.h_client))
        hc, hi, hq = self.h_client[o], self.h_inst[o], self.h_qty[o]
        n_b, n_c = len(bb), len(hc)
        cols = [
            self.dstr.take(pa.array(np.full(n_b + n_c, g, np.int64))),
            pa.concat_arrays([_lab(["BOOK"], np.zeros(n_b)), _lab(["CLIENT"], np.zeros(n_c))]),
            pa.concat_arrays([_lab(self.book_codes, bb), self._client_ids(hc)]),
            self.inst_ids.take(pa.array(np.concatenate([bi, hi]))),
            _num(np.concatenate([self.Q[bb, bi], hq]), 0),
            _lab(CUSTODIANS, np.concatenate([self.inst_cust[bi], self.cl["cust"][hc]])),
        ]
        self.client_refs.append(hc)
        return _csv_lines(cols), {"any": np.ones(n_b + n_c, bool),
                                  "client": np.concatenate([np.zeros(n_b, bool), np.ones(n_c, bool)])}

    # ---- activity, gl ---------------------------------------------------------------------------------
    def _activity(self, d, g):
        r = _rng(self.seed, d, S_ACT)
        cl = self.cl
        n = max(20, self.T // 10)
        live = np.flatnonzero(cl["status"] != 2)
        w = np.cumsum(cl["wealth"][live] ** 0.3)
        who = live[np.minimum(np.searchsorted(w / w[-1], r.random(n)), len(live) - 1)]
        rm = np.where(r.random(n) < 0.9, cl["rm"][who], r.integers(0, self.n_rm, n))
        back = np.where(r.random(n) < 0.8, 0, r.integers(1, 3, n))
        adate = np.maximum(self.axis_epoch[g - back], cl["onb"][who])
        ch = r.choice(5, n, p=CHANNEL_P)
        lo, hi = np.array([c[0] for c in CHANNEL_COST]), np.array([c[1] for c in CHANNEL_COST])
        cost = np.round(r.uniform(lo[ch], hi[ch]), 2)
        camp = np.where(r.random(n) < 0.3, r.integers(0, len(CAMPAIGNS), n), -1)
        u = r.random(n)
        lead_p = np.where(camp >= 0, 0.18, 0.10)
        outcome = np.where(u < 0.02, 2, np.where(u < 0.02 + lead_p, 1, 0))
        aid = self.act_next + np.arange(n)
        self.act_next += n
        cols = [
            _ids("A", aid, 10), self._client_ids(who), _ids("RM", rm + 1, 4), _epoch_dates(adate),
            _lab(CHANNELS, ch), pa.array(np.array(CAMPAIGNS + [""], dtype=object)[camp], pa.string(), mask=camp < 0),
            _num(cost, 2), _lab(OUTCOMES, outcome),
        ]
        self.client_refs.append(who)
        return _csv_lines(cols), {"any": np.ones(n, bool)}

    def _gl(self, d, g):
        r = _rng(self.seed, d, S_GL)
        fx = self.FX(g)
        rows_cc, rows_cat, rows_usd = [], [], []
        for b, book in enumerate(BOOKS):
            rev = self.book_rev[b]
            rows_cc.append(b)
            rows_cat.append(0)
            rows_usd.append(rev * self.fee_share[b])
            for cat, share in BOOK_COST_SPLIT.items():
                rows_cc.append(b)
                rows_cat.append(cat)
                rows_usd.append(rev * book[7] * share)
        tot = float(sum(self.book_rev))
        for j, sup in enumerate(SUPPORT):
            for cat, share in SUPPORT_COST_SPLIT.items():
                if cat == 5 and sup != "SALES":
                    continue
                rows_cc.append(self.nb + j)
                rows_cat.append(cat)
                rows_usd.append(tot * SUPPORT_SHARE[j] * share * (3.0 if sup == "SALES" and cat == 5 else 1.0))
        cc, cat, usd = np.array(rows_cc), np.array(rows_cat), np.array(rows_usd)
        k = 1 + r.poisson(2.0, len(cc))
        cc, cat, usd = np.repeat(cc, k), np.repeat(cat, k), np.repeat(usd / k, k)
        n = len(cc)
        usd = usd * r.lognormal(0, 0.35, n)
        ent_ccy = np.array([b[4] for b in BOOKS] + [0, 0, 2, 0])[cc]
        ccy = np.where(r.random(n) < 0.2, r.choice([1, 3, 4], n), ent_ccy)
        amt = np.maximum(np.round(usd / fx[ccy], 2), 0.01)
        back = np.where(r.random(n) < 0.85, 0, r.integers(1, 3, n))
        eid = self.gl_next + np.arange(n)
        self.gl_next += n
        cols = [
            _ids("GL", eid, 9), self.dstr.take(pa.array(g - back)), _lab(self.book_codes + SUPPORT, cc),
            _cat(_lab(GL_ACCOUNTS, cat), "-", _int(cc % 4 * 10 + 10)), _lab(GL_CATS, cat), _num(amt, 2),
            _lab(CURRENCIES, ccy),
        ]
        return _csv_lines(cols), {"any": np.ones(n, bool)}

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
        n = len(tg)
        self.targets_cols = [_ids("TGT-", np.arange(1, n + 1), 3), pa.array([t[0] for t in tg]),
                             pa.array([t[1] for t in tg]), _num([t[2] for t in tg])]

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

    # ---- writers --------------------------------------------------------------------------------------
    def _record(self, ddir: Path, feed: str, data: bytes, rows: int):
        spec = self.contracts[feed]
        (ddir / spec.file).write_bytes(data)
        self.files[feed] = (spec.file, rows, hashlib.sha256(data).hexdigest())
        self.rows_total[feed] = self.rows_total.get(feed, 0) + rows

    def _write_csv(self, ddir, feed, cols):
        self._write_lines(ddir, feed, _csv_lines(cols), None, False)

    def _write_lines(self, ddir, feed, lines: pa.Array, ctx: dict | None, faulted: bool):
        spec = self.contracts[feed]
        n = len(lines)
        if faulted and ctx is not None:
            lines = self._inject(feed, lines, ctx, header=spec.format == "csv")
        body = _body(lines)
        head = (",".join(spec.column_names) + "\n").encode() if spec.format == "csv" else b""
        del n
        self._record(ddir, feed, head + body, len(lines))

    def _write_prices(self, ddir, d, g, faulted):
        gs = np.arange(0, g + 1) if d == 0 else np.array([g])
        N = self.N
        gg = np.repeat(gs, N)
        ii = np.tile(np.arange(N), len(gs))
        px = np.stack([self.P(x) for x in gs]).ravel()
        days = self.axis_epoch[gg].astype(np.int32)
        inst = self.inst_ids.take(pa.array(ii))
        n_f = min(6, len(px) // 150) if (faulted and d > 0) else 0
        if n_f:
            fr = self.fr
            rules = [str(x) for x in fr.permutation(["close_price:range", "instrument_id:ref",
                                                     "instrument_id:required", "price_date:range",
                                                     "duplicate_key"])][:n_f]
            rows = fr.choice(len(px), len(rules), replace=False)
            bd = date.fromisoformat(str(self.axis[g]))
            px = px.copy()
            days = days.copy()
            inst_arr = np.array(inst.to_pylist(), dtype=object)
            mods, dups = {}, []
            for rule, row in zip(rules, rows):
                row = int(row)
                if rule == "duplicate_key":
                    dups.append((int(fr.integers(row + 1, len(px) + 1)), row))
                    continue
                mods[row] = rule
                if rule == "close_price:range":
                    px[row] = 0.0
                elif rule == "instrument_id:ref":
                    inst_arr[row] = "XX999999"
                elif rule == "instrument_id:required":
                    inst_arr[row] = None
                else:
                    days[row] = np.datetime64(bd + timedelta(days=1), "D").astype(np.int64)
            dups.sort()
            ins_at = np.array([a for a, _ in dups], np.int64)
            order = np.insert(np.arange(len(px)), ins_at, [rw for _, rw in dups]) if dups else np.arange(len(px))
            for row, rule in mods.items():
                self._log(g, "prices", row + int((ins_at <= row).sum()) + 1, rule, f"row {row + 1}: {rule}")
            for k, (a, rw) in enumerate(dups):
                self._log(g, "prices", a + k + 1, "duplicate_key",
                          f"row {a + k + 1}: exact copy of row {rw + int((ins_at <= rw).sum()) + 1}")
            px, days, inst = px[order], days[order], pa.array(inst_arr[order], pa.string())
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
        cols = [self.dstr.take(pa.array(gg)), _lab(CURRENCIES, cc), _num(rate, 8)]
        ctx = None
        if d == 0 and self.faults:
            hist = gg < g
            ctx = {"usd": hist & (cc == 0), "other": hist & (cc != 0)}
        self._write_lines(ddir, "fx_rates", _csv_lines(cols), ctx, ctx is not None)

    def _log(self, g, feed, line, rule, detail):
        self.fault_log.append(dict(business_date=str(self.axis[g]), feed=feed, file=self.contracts[feed].file,
                                   line=int(line) if line is not None else None, rule=rule, detail=detail))

    # ---- fault injection ------------------------------------------------------------------------------
    def _inject(self, feed: str, lines: pa.Array, ctx: dict, header: bool) -> pa.Array:
        fr = self.fr
        n = len(lines)
        g = self.cur_g
        bd = date.fromisoformat(str(self.axis[g]))
        catalogue = FAULTS[feed]
        cap = 3 if feed == "fx_rates" else 6
        n_f = min(cap, n // 150)
        if n_f == 0:
            return lines
        order = fr.permutation(len(catalogue))
        chosen = [catalogue[k] for k in order[:n_f]]
        used: set[int] = set()
        mods: dict[int, tuple[str, str, str]] = {}
        inserts: list[tuple[int, int, str]] = []  # (insert before original index, source row, line)
        cols = self.contracts[feed].column_names
        for rule, cand_key, fn in chosen:
            cand = np.flatnonzero(ctx.get(cand_key, np.zeros(n, bool)))
            cand = cand[~np.isin(cand, list(used))] if used else cand
            if len(cand) == 0:
                continue
            row = int(fr.choice(cand))
            used.add(row)
            raw = lines[row].as_py()
            if rule == "duplicate_key":
                at = int(fr.integers(row + 1, n + 1))
                inserts.append((at, row, raw))
                continue
            if feed == "clients":
                rec = json.loads(raw)
                before = dict(rec)
                new = fn(rec, bd, fr)
                mods[row] = (rule, new if isinstance(new, str) else json.dumps(rec, separators=(",", ":")),
                             _what(before, rec, new))
            else:
                rec = dict(zip(cols, raw.split(",")))
                before = dict(rec)
                new = fn(rec, bd, fr)
                mods[row] = (rule, new if isinstance(new, str) else ",".join(rec[c] for c in cols),
                             _what(before, rec, new))
        extra = [m[1] for m in mods.values()] + [x[2] for x in inserts]
        idx = np.arange(n, dtype=np.int64)
        for k, row in enumerate(mods):
            idx[row] = n + k
        inserts.sort(key=lambda x: (x[0], x[1]))
        ins_at = np.array([x[0] for x in inserts], np.int64)
        ins_src = n + len(mods) + np.arange(len(inserts), dtype=np.int64)
        final = np.insert(idx, ins_at, ins_src) if len(inserts) else idx
        off = 2 if header else 1
        for row, (rule, _, what) in mods.items():
            line = row + int((ins_at <= row).sum()) + off
            self._log(g, feed, line, rule, what)
        for k, (at, src, _) in enumerate(inserts):
            line = at + k + off
            src_line = src + int((ins_at <= src).sum()) + off
            self._log(g, feed, line, "duplicate_key", f"line {line}: exact copy of line {src_line}")
        allv = pa.concat_arrays([lines, pa.array(extra, pa.string())]) if extra else lines
        return allv.take(pa.array(final))

    def _manifest(self, ddir, d, g, bdate):
        r = _rng(self.seed, d, S_DELIV)
        day = int(self.axis_epoch[g]) * 86400
        feeds = {}
        late_feed = "settlements" if (self.faults and d == min(2, self.days - 1)) else None
        for name, spec in self.contracts.items():
            file, rows, sha = self.files[name]
            hh, mm = map(int, spec.deadline.split(":"))
            dl = day + hh * 3600 + mm * 60
            at = dl - int(r.integers(5 * 60, 4 * 3600))
            if name == late_feed:
                at = dl + int(r.integers(20 * 60, 100 * 60))
                self._log(g, name, None, "late_delivery",
                          f"delivered at {_ts([at])[0].as_py()} after the {spec.deadline} UTC deadline")
            feeds[name] = {"file": file, "rows": rows, "sha256": sha, "delivered_at": _ts([at])[0].as_py()}
        (ddir / "_manifest.json").write_text(json.dumps({"business_date": bdate, "feeds": feeds}, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# fault catalogue: (rule, candidate rows key, mutate(record, business_date, rng) -> None or raw line)
# ---------------------------------------------------------------------------------------------
def _what(before: dict, after: dict, new) -> str:
    if isinstance(new, str):
        return "record does not parse (wrong number of fields / truncated)"
    ch = [f"{k}: {before[k]!r} -> {after[k]!r}" for k in before if before[k] != after[k]]
    return "; ".join(ch)


def _set(col, value):
    def f(rec, bd, r):
        rec[col] = value(rec, bd) if callable(value) else value
    return f


def _drop_last_field(rec, bd, r):
    return ",".join(list(rec.values())[:-1])


def _plus_days(col, k):
    return _set(col, lambda rec, bd: (bd + timedelta(days=k)).isoformat())


def _neg(col):
    return _set(col, lambda rec, bd: "-" + (rec[col] if rec[col] not in ("0", "") else "1.5"))


_DUP = ("duplicate_key", "any", None)
_MAL = ("malformed_record", "any", _drop_last_field)
FAULTS: dict[str, list] = {
    "trades": [
        ("quantity:type", "plain", _set("quantity", "abc")),
        ("price:type", "plain", _set("price", "1.2.3")),
        ("exec_timestamp:type", "plain", _set("exec_timestamp", lambda rec, bd: f"{bd.isoformat()}T25:61:00Z")),
        ("trader_id:required", "plain", _set("trader_id", "")),
        ("side:values", "plain", _set("side", "HOLD")),
        ("quantity:range", "plain", _neg("quantity")),
        ("price:range", "plain", _set("price", "0")),
        ("currency:pattern", "plain", _set("currency", "US")),
        ("client_id:ref", "plain", _set("client_id", "CX0000001")),
        ("instrument_id:ref", "plain", _set("instrument_id", "XX999999")),
        ("book:ref", "plain", _set("book", "NOBOOK")),
        ("trade_date:range", "plain", _plus_days("trade_date", 1)),
        ("settle_not_before_trade", "plain",
         _set("settle_date", lambda rec, bd: (date.fromisoformat(rec["trade_date"]) - timedelta(days=1)).isoformat())),
        ("version1_is_new", "plain", _set("event_type", "AMEND")),
        ("currency_is_instrument_currency", "plain",
         _set("currency", lambda rec, bd: "EUR" if rec["currency"] == "USD" else "USD")),
        ("duplicate_key", "plain", None), ("malformed_record", "plain", _drop_last_field),
    ],
    "settlements": [
        ("quantity:type", "any", _set("quantity", "abc")),
        ("settlement_amount:range", "any", _set("settlement_amount", "0")),
        ("trade_version:range", "any", _set("trade_version", "0")),
        ("status:values", "any", _set("status", "DONE")),
        ("custodian:required", "any", _set("custodian", "")),
        ("currency:pattern", "any", _set("currency", "usd")),
        ("intended_settle_date:type", "any", _set("intended_settle_date", "2026-02-30")),
        ("settled_within_quantity", "settled",
         _set("settled_quantity", lambda rec, bd: repr(float(rec["quantity"]) + 1.0))),
        ("actual_date_only_when_settled", "pending", _set("actual_settle_date", lambda rec, bd: rec["intended_settle_date"])),
        ("fail_reason_only_when_failed", "pending", _set("fail_reason", "SSI_MISSING")),
        _DUP, _MAL,
    ],
    "positions": [
        ("as_of_date:range", "any", _plus_days("as_of_date", -1)),
        ("holder_type:values", "any", _set("holder_type", "FIRM")),
        ("instrument_id:ref", "any", _set("instrument_id", "XX999999")),
        ("quantity:type", "any", _set("quantity", "n/a")),
        ("custodian:required", "any", _set("custodian", "")),
        ("holder_known", "client", _set("holder_id", "CX0000001")),
        _DUP, _MAL,
    ],
    "gl_entries": [
        ("amount:type", "any", _set("amount", "12.34.56")),
        ("posting_date:range", "any", _plus_days("posting_date", 1)),
        ("category:values", "any", _set("category", "BONUS")),
        ("amount:range", "any", _neg("amount")),
        ("currency:pattern", "any", _set("currency", "EURO")),
        ("gl_account:required", "any", _set("gl_account", "")),
        ("cost_center_known", "any", _set("cost_center", "MARKETING_DEPT")),
        _DUP, _MAL,
    ],
    "client_activity": [
        ("client_id:ref", "any", _set("client_id", "CX0000001")),
        ("channel:values", "any", _set("channel", "FAX")),
        ("cost_usd:range", "any", _neg("cost_usd")),
        ("activity_date:type", "any", _set("activity_date", "2026-02-30")),
        ("activity_date:range", "any", _plus_days("activity_date", 400)),
        ("outcome:values", "any", _set("outcome", "WON")),
        ("relationship_manager_id:required", "any", _set("relationship_manager_id", "")),
        _DUP, _MAL,
    ],
    "clients": [
        ("email:pattern", "safe", _set("email", lambda rec, bd: rec["email"].replace("@", "."))),
        ("country:pattern", "safe", _set("country", "GBR")),
        ("segment:values", "safe", _set("segment", "VIP")),
        ("kyc_status:values", "safe", _set("kyc_status", "UNKNOWN")),
        ("birth_or_incorporation_date:range", "safe", _plus_days("birth_or_incorporation_date", 0)),
        ("birth_or_incorporation_date:type", "safe", _set("birth_or_incorporation_date", "1985-02-30")),
        ("onboarding_date:range", "safe", _plus_days("onboarding_date", 0)),
        ("legal_name:required", "safe", _set("legal_name", None)),
        ("updated_at:type", "safe", _set("updated_at", "yesterday")),
        ("duplicate_key", "any", None),
        ("malformed_record", "safe", lambda rec, bd, r: json.dumps(rec, separators=(",", ":"))[:-25]),
    ],
    "fx_rates": [
        ("usd_is_one", "usd", _set("usd_per_unit", "1.0001")),
        ("currency:pattern", "other", _set("currency", lambda rec, bd: rec["currency"].lower())),
        ("usd_per_unit:type", "other", _set("usd_per_unit", "n/a")),
    ],
}


def _bd_future(col, k):
    # a date k calendar days after the business date (k=0 is handled as "the day after")
    return _set(col, lambda rec, bd: (bd + timedelta(days=k)).isoformat())


FAULTS["clients"][4] = ("birth_or_incorporation_date:range", "safe", _bd_future("birth_or_incorporation_date", 30))
FAULTS["clients"][6] = ("onboarding_date:range", "safe", _bd_future("onboarding_date", 5))
FAULTS["client_activity"][4] = ("activity_date:range", "any", _bd_future("activity_date", 1))


# ---------------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------------
def generate(out: Path, start: date, days: int, trades_per_day: int = 2000, seed: int = 42,
             faults: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Write `days` business days of sample feeds under `out`; return a summary.

    `start` is a business date (a weekend moves to the next Monday). Deterministic for the same
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
    # Marks the folder as sample data: runs over it may use the development pseudonym key.
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
