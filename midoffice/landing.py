"""The landing zone: a date's manifest and the checks on a delivered file.

Landing is the senders' area and is read-only to us. Every check that can fail a whole feed for a
date (missing, checksum, path outside the landing folder) lives here and raises FileLevelError
with a message that names the date, feed, file and cause.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path

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


def read_manifest(landing: Path, business_date: str) -> dict:
    path = date_folder(landing, business_date) / "_manifest.json"
    if not path.is_file():
        raise FileLevelError(business_date, "_manifest", str(path), "manifest missing")
    if path.stat().st_size > 1_000_000:
        raise FileLevelError(business_date, "_manifest", str(path), "manifest larger than 1 MB")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileLevelError(business_date, "_manifest", str(path), f"manifest unreadable: {exc}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("feeds"), dict):
        raise FileLevelError(business_date, "_manifest", str(path), "manifest has no 'feeds' object")
    if manifest.get("business_date") != business_date:
        raise FileLevelError(
            business_date, "_manifest", str(path),
            f"manifest is for business date {manifest.get('business_date')!r}",
        )
    return manifest


def manifest_entry(manifest: dict, business_date: str, feed: Feed) -> ManifestEntry:
    raw = manifest["feeds"].get(feed.name)
    if not isinstance(raw, dict):
        raise FileLevelError(business_date, feed.name, feed.file, "feed not in the manifest")
    try:
        rows = int(raw["rows"])
        sha = str(raw["sha256"]).lower()
        file = str(raw.get("file", feed.file))
    except (KeyError, TypeError, ValueError) as exc:
        raise FileLevelError(business_date, feed.name, feed.file, f"manifest entry invalid: {exc}")
    return ManifestEntry(file=file, rows=rows, sha256=sha, delivered_at=raw.get("delivered_at"))


def resolve_file(landing: Path, business_date: str, feed: Feed, entry: ManifestEntry) -> Path:
    """The delivered file's path, refusing anything outside <landing>/<date>/."""
    folder = date_folder(landing, business_date).resolve()
    candidate = (folder / entry.file).resolve()
    if not candidate.is_relative_to(folder):
        raise FileLevelError(
            business_date, feed.name, entry.file, "manifest names a path outside the landing folder",
        )
    if candidate.name != feed.file:
        raise FileLevelError(
            business_date, feed.name, entry.file, f"manifest names {entry.file}, contract expects {feed.file}",
        )
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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_checksum(business_date: str, feed: Feed, path: Path, entry: ManifestEntry) -> str:
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise FileLevelError(
            business_date, feed.name, str(path),
            f"checksum mismatch: manifest sha256 {entry.sha256[:12]}…, file has {actual[:12]}…",
        )
    return actual


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
