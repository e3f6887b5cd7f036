"""Back-office feeds: settlements (each trade's settlement life cycle), positions, GL entries."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from midoffice.sample.common import CURRENCIES, S_GL, S_POS, S_SETTLE, SENT, _rng
from midoffice.sample.files import _cat, _csv_lines, _ids, _int, _lab, _num
from midoffice.sample.product_control import EXPENSE_SCALE
from midoffice.sample.reference import BOOKS, CUSTODIANS

ST_PENDING, ST_SETTLED, ST_PARTIAL, ST_FAILED, ST_CANCELLED = range(5)
SETTLE_STATUS = ["PENDING", "SETTLED", "PARTIAL", "FAILED", "CANCELLED"]
FAIL_REASONS = ["SSI_MISSING", "INSUFFICIENT_SECURITIES", "INSUFFICIENT_CASH", "COUNTERPARTY_UNMATCHED",
                "QUANTITY_MISMATCH", "AMOUNT_MISMATCH"]
# settlement plan kinds
K_NORMAL, K_LATE, K_PART_SETTLE, K_PART_STAY, K_NEVER, K_QTY, K_AMT, K_ORPHAN = range(8)
KIND_P = [0.898, 0.04, 0.01, 0.01, 0.015, 0.015, 0.012]

SUPPORT = ["OPERATIONS", "TECHNOLOGY", "COMPLIANCE", "SALES"]
SUPPORT_SHARE = [0.08, 0.10, 0.04, 0.03]
GL_CATS = ["REVENUE_FEES", "STAFF", "TECHNOLOGY", "MARKET_DATA", "PREMISES", "MARKETING", "OTHER_EXPENSE"]
GL_ACCOUNTS = ["4100", "6100", "6200", "6300", "6400", "6500", "6900"]
BOOK_COST_SPLIT = {1: 0.55, 2: 0.14, 3: 0.10, 4: 0.10, 5: 0.02, 6: 0.09}
SUPPORT_COST_SPLIT = {1: 0.60, 2: 0.18, 4: 0.12, 5: 0.04, 6: 0.06}


class BackOfficeMixin:
    """Each trade's settlement plan and its instructions, custody positions, the GL."""


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
        self._pc_settled(ti, sid, settled)
        actual = np.where((st == ST_SETTLED) | (st == ST_PARTIAL), g, -1)
        act_col = self.dstr.take(pa.array(np.where(actual >= 0, actual, 0), mask=actual < 0))
        reason = pa.array(np.array(FAIL_REASONS, dtype=object)[ts["reason"][ti]], pa.string(), mask=st != ST_FAILED)
        tid_col = _ids("T", ts["tid"][ti], 10)
        cols = [
            _ids("S", sid, 10), tid_col, _int(ver), _num(q, 0), _num(amt, 2),
            _lab(CURRENCIES, self.cur[ts["inst"][ti]]), self.dstr.take(pa.array(ts["s"][ti])), act_col,
            _lab(SETTLE_STATUS, st), _num(settled, 0), reason,
            # a client trade settles at the client's custodian (its custody moves by it, DOMAIN §8.4)
            _lab(CUSTODIANS, np.where(ts["fo"][ti], self.cl["cust"][ts["client"][ti]], self.inst_cust[ts["inst"][ti]])),
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
            self._pc_size_inventory(g)  # product_control.py: an inventory the month's revenue can carry
        self.Q = self._pc_inventory_step(flow)
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
        usd = np.where(cat == 0, usd, usd * EXPENSE_SCALE)  # product_control.py: cost-to-income calibration
        k = 1 + r.poisson(2.0, len(cc))
        cc, cat, usd = np.repeat(cc, k), np.repeat(cat, k), np.repeat(usd / k, k)
        n = len(cc)
        usd = usd * r.lognormal(0, 0.35, n)
        ent_ccy = np.array([b[4] for b in BOOKS] + [0, 0, 2, 0])[cc]
        ccy = np.where(r.random(n) < 0.2, r.choice([1, 3, 4], n), ent_ccy)
        amt = np.maximum(np.round(usd / fx[ccy], 2), 0.01)
        back = np.where(r.random(n) < 0.85, 0, r.integers(1, 3, n))
        self.gl_day = dict(cc=cc, cat=cat, amt=amt, ccy=ccy, back=back)  # the desks' fees (product_control.py)
        eid = self.gl_next + np.arange(n)
        self.gl_next += n
        cols = [
            _ids("GL", eid, 9), self.dstr.take(pa.array(g - back)), _lab(self.book_codes + SUPPORT, cc),
            _cat(_lab(GL_ACCOUNTS, cat), "-", _int(cc % 4 * 10 + 10)), _lab(GL_CATS, cat), _num(amt, 2),
            _lab(CURRENCIES, ccy),
        ]
        return _csv_lines(cols), {"any": np.ones(n, bool)}
