"""The --faults injections: per feed, a catalogue of realistic defects, applied to a few rows
of a date's file and logged with the file line as ground truth (`_faults.json`)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pyarrow as pa


class FaultsMixin:
    """Applies the catalogue below to a date's lines and logs every defect it injects."""

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

    def _fault_prices(self, g, px, days, inst):
        """Up to six defects in the day's prices (the `line` of a Parquet fault is its 1-based row)."""
        n_f = min(6, len(px) // 150)
        if n_f == 0:
            return px, days, inst
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
            self.bad_price_rows.add(row)  # d > 0: row k is instrument k (product control's desk misses it too)
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
        return px, days, inst


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
