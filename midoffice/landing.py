"""The landing zone: a date's manifest and the checks on a delivered file.

Landing is the senders' area and is read-only to us. Every check that can fail a whole feed for a
date (missing, checksum, path outside the landing folder) lives here and raises FileLevelError
with a message that names the date, feed, file and cause.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path, PurePosixPath

from midoffice.contracts import Feed


class FileLevelError(Exception):
    """A feed fails for a date as a whole (nothing of it is loaded)."""

    def __init__(self, business_date: str, feed: str, file: str, cause: str):
        self.business_date, self.feed, self.file, self.cause = business_date, feed, file, cause
        super().__init__(f"{business_date} {feed} ({file}): {cause}")


@dataclass(frozen=True)
class ManifestEntry:
    file: str
    rows: int
    sha256: str
    delivered_at: str | None


def date_folder(landing: Path, business_date: str) -> Path:
    date.fromisoformat(business_date)  # refuses anything that is not a date
    return landing / business_date


class DuplicateKey(ValueError):
    pass


def _refusing_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refusing a key given twice (json.loads would keep the last one silently:
    two entries for one feed, of which the sender may have meant either)."""
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(repr(key))
        seen[key] = value
    return seen


def read_manifest(landing: Path, business_date: str) -> dict:
    folder = date_folder(landing.resolve(), business_date)
    path = folder / "_manifest.json"
    if path.exists() and not path.resolve().is_relative_to(folder):
        # A symlinked date folder or manifest: the sender's control record must be in the landing.
        raise FileLevelError(business_date, "_manifest", str(path),
                             f"manifest is outside the landing folder: symlink to {path.resolve()}")
    if not path.is_file():
        raise FileLevelError(business_date, "_manifest", str(path), "manifest missing")
    if path.stat().st_size > 1_000_000:
        raise FileLevelError(business_date, "_manifest", str(path), "manifest larger than 1 MB")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_refusing_duplicate_keys)
    except DuplicateKey as exc:
        raise FileLevelError(business_date, "_manifest", str(path),
                             f"manifest names {exc} more than once: which entry holds is ambiguous")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise FileLevelError(business_date, "_manifest", str(path), f"manifest unreadable: {exc}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("feeds"), dict):
        raise FileLevelError(business_date, "_manifest", str(path), "manifest has no 'feeds' object")
    if manifest.get("business_date") != business_date:
        raise FileLevelError(
            business_date, "_manifest", str(path),
            f"manifest is for business date {manifest.get('business_date')!r}",
        )
    return manifest


SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def manifest_entry(manifest: dict, business_date: str, feed: Feed) -> ManifestEntry:
    raw = manifest["feeds"].get(feed.name)
    if not isinstance(raw, dict):
        raise FileLevelError(business_date, feed.name, feed.file, "feed not in the manifest")
    problems = []
    rows, sha, file = raw.get("rows"), raw.get("sha256"), raw.get("file", feed.file)
    # Control totals are exact: an int, not a float, a bool or a numeric string.
    if type(rows) is not int or rows < 0:
        problems.append(f"rows must be a whole number >= 0, got {rows!r}")
    if not isinstance(sha, str) or not SHA256_HEX.match(sha.lower()):
        problems.append(f"sha256 must be 64 hex digits, got {str(sha)[:80]!r}")
    if not isinstance(file, str) or not file:
        problems.append(f"file must be a non-empty string, got {str(file)[:80]!r}")
    delivered_at = raw.get("delivered_at")
    if delivered_at is not None and not isinstance(delivered_at, str):
        problems.append(f"delivered_at must be a string, got {str(delivered_at)[:80]!r}")
    if problems:
        raise FileLevelError(business_date, feed.name, feed.file, "manifest entry invalid: " + "; ".join(problems))
    return ManifestEntry(file=file, rows=rows, sha256=sha.lower(), delivered_at=delivered_at)


def _outside(business_date: str, feed: Feed, named: str, why: str) -> FileLevelError:
    return FileLevelError(business_date, feed.name, named, f"manifest names a path outside the landing folder: {why}")


def resolve_file(landing: Path, business_date: str, feed: Feed, entry: ManifestEntry) -> Path:
    """The delivered file's path, refusing anything that leads outside <landing>/<date>/.

    The manifest is the sender's text: its file name may be absolute, climb with `..`, carry a
    NUL byte, or name a symlink (or sit in a symlinked date folder) that points elsewhere on the
    machine. Only a regular file whose real path lies inside the date's folder is accepted.
    """
    folder = date_folder(landing.resolve(), business_date)  # the folder as it must be, not where it points
    named = entry.file
    if "\x00" in named:
        raise FileLevelError(business_date, feed.name, repr(named), "manifest entry invalid: file name contains a NUL byte")
    given = PurePosixPath(named)
    if given.is_absolute() or named.startswith("\\") or re.match(r"^[A-Za-z]:", named):
        raise _outside(business_date, feed, named, "an absolute path")
    if ".." in given.parts:
        raise _outside(business_date, feed, named, "it climbs out with '..'")
    if given.name != feed.file:
        raise FileLevelError(business_date, feed.name, named, f"manifest names {named}, contract expects {feed.file}")
    unresolved = folder / given
    try:
        candidate = unresolved.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a path too long
        raise FileLevelError(business_date, feed.name, str(unresolved), f"path cannot be resolved: {exc}")
    if not candidate.is_relative_to(folder):
        inside = [p for p in [unresolved, *unresolved.parents] if p.is_relative_to(folder)]
        link = next((p for p in inside if p.is_symlink()), None)
        if link is not None:
            raise _outside(business_date, feed, str(unresolved),
                           f"symlink {link} points to {link.resolve()}, outside {folder}")
        raise _outside(business_date, feed, named, f"it resolves to {candidate}")
    if candidate.exists() and not candidate.is_file():
        raise FileLevelError(business_date, feed.name, str(candidate), "not a regular file")
    if not candidate.is_file():
        raise FileLevelError(business_date, feed.name, str(candidate), "file missing")
    return candidate


def feed_delivered(landing: Path, business_date: str, feed_name: str) -> bool:
    """True once the date's manifest lists the feed and the file it names is there."""
    from midoffice.contracts import get_feed

    feed = get_feed(feed_name)
    try:
        entry = manifest_entry(read_manifest(landing, business_date), business_date, feed)
        resolve_file(landing, business_date, feed, entry)
    except FileLevelError as exc:
        return "file missing" not in exc.cause and "not in the manifest" not in exc.cause \
            and "manifest missing" not in exc.cause
    return True


def receive(business_date: str, feed: Feed, path: Path, entry: ManifestEntry, into: Path) -> tuple[Path, str]:
    """Copy the delivered file into `into` (a private folder) while hashing the bytes copied.

    Returns the copy and its sha256, which matches the manifest's: the pipeline then reads only
    the copy, so what is loaded is exactly what was verified. Hashing the landing file and
    letting DuckDB open its path again would load whatever a sender (or an attacker) swapped in
    between the two. The copy is removed and FileLevelError raised (naming the landing file)
    when the checksum differs.
    """
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = into / path.name
    digest = hashlib.sha256()
    with path.open("rb") as src, open(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
        for chunk in iter(lambda: src.read(1 << 22), b""):
            digest.update(chunk)
            dst.write(chunk)
    actual = digest.hexdigest()
    if actual != entry.sha256:
        copy.unlink(missing_ok=True)
        raise FileLevelError(
            business_date, feed.name, str(path),
            f"checksum mismatch: manifest sha256 {entry.sha256[:12]}…, file has {actual[:12]}…",
        )
    return copy, actual


def freshness(business_date: str, feed: Feed, delivered_at: str | None) -> tuple[str, str]:
    """(deadline ISO timestamp, ON_TIME | LATE | UNKNOWN) from the sender's delivery time."""
    hh, mm = (int(x) for x in feed.deadline.split(":"))
    deadline = datetime.combine(date.fromisoformat(business_date), time(hh, mm), tzinfo=timezone.utc)
    deadline_iso = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not delivered_at:
        return deadline_iso, "UNKNOWN"
    try:
        at = datetime.strptime(delivered_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return deadline_iso, "UNKNOWN"
    return deadline_iso, "ON_TIME" if at <= deadline else "LATE"
