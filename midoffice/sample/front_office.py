"""Front-office feeds: clients (and their holdings), trades, client activity."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from midoffice.sample.back_office import K_ORPHAN
from midoffice.sample.common import CURRENCIES, S_ACT, S_CLIENTS, S_TRADES, _rng
from midoffice.sample.files import _cat, _csv_lines, _epoch_dates, _ids, _int, _lab, _num, _ts
from midoffice.sample.portfolios import client_holdings, portfolio_rng
from midoffice.sample.reference import RISK, SYL1, SYL2, VENUES

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
STATUS = ["ACTIVE", "DORMANT", "CLOSED"]
SIDES = ["BUY", "SELL"]
EVENTS = ["NEW", "AMEND", "CANCEL"]
CHANNELS = ["CALL", "MEETING", "EMAIL", "EVENT", "SOCIAL"]
CHANNEL_P = [0.35, 0.15, 0.30, 0.05, 0.15]
CHANNEL_COST = [(4.0, 20.0), (60.0, 350.0), (0.05, 0.8), (90.0, 600.0), (0.3, 6.0)]
CAMPAIGNS = ["CMP-WEALTH-SPRING", "CMP-ESG-FOCUS", "CMP-RETIRE-READY", "CMP-INST-ONBOARD", "CMP-FX-HEDGE"]
OUTCOMES = ["NONE", "LEAD", "DEAL"]


def _searchsorted_groups(cum: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """cum: concatenated per-group cumulative weights shifted by group index (group g in (g, g+1])."""
    return np.searchsorted(cum, group + u, side="right")


class FrontOfficeMixin:
    """The client file and holdings, the day's trades (new, amended, cancelled), activity."""

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
        # by risk profile, from the portfolio stream (midoffice/sample/portfolios.py)
        hc, hi, share = client_holdings(portfolio_rng(self.seed, g, clients), clients, self.cl["seg"],
                                        self.cl["risk"], self.ac, self.popularity)
        px_usd = self.P(g)[hi] * self.FX(g)[self.cur[hi]]
        qty = np.maximum(1.0, np.round(share * self.cl["wealth"][hc] * 0.6 / px_usd))
        return hc, hi, qty


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
        # holdings: new clients invest; otherwise custody moves only by what settles (DOMAIN §8.4,
        # product_control.py), and a closed client's custody stays until transferred away. The
        # draws of the random changes this replaced are kept, so that the stream stays as it was.
        r.random(len(self.h_qty))
        r.lognormal(0, 0.2, len(self.h_qty))
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
        # T+1 for FX, T+2 otherwise, in FIRM business dates, rolled past the currency's holidays
        s_day = self.settle_roll[self.cur[inst], t_day + np.where(self.ac[inst] == 4, 1, 2)].astype(np.int32)
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
                    venue=np.zeros(n_or, np.int64), t=np.full(n_or, g, np.int32), s=self.settle_roll[self.cur[oinst], g + 2].astype(np.int32),
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
        self.day_new = dict(book=ts["book"][idx], inst=ts["inst"][idx], side=ts["side"][idx], qty=new["qty"], t=t_day,
                            comm_usd=new["comm"] * self.FX(g)[self.cur[new["inst"]]])
        self.client_refs = [ts["client"][ri]]
        return _csv_lines(cols), {"plain": plain, "any": np.ones(len(ri), bool)}

    def _ts_append(self, new: dict):
        if self.ts is None:
            self.ts = {k: np.asarray(v) for k, v in new.items()}
        else:
            self.ts = {k: np.concatenate([self.ts[k], np.asarray(new[k]).astype(self.ts[k].dtype)]) for k in self.ts}

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
