"""Rendering feed files: CSV text columns built with pyarrow string kernels (no per-row Python),
the files and their record in the manifest (DOMAIN.md §3 delivery)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from midoffice.sample.common import S_DELIV, _rng


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


class FilesMixin:
    """Writes a date's files and its `_manifest.json`."""

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

