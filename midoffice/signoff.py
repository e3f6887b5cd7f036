"""Sign-off of a date's pack (DOMAIN §10.2): PREPARED by one person, SIGNED by another, on a version.

The records are people's actions (midoffice.people.store, kind `signoffs`): PREPARE then SIGN,
each naming the published version of the date it was made on (the version that last published
the date when the person acted). The state is read from them, never stored:

- NONE: nobody prepared the date's current version;
- PREPARED: prepared on the version now published for the date, not signed yet;
- SIGNED: prepared and signed (by a different person) on that version;
- SUPERSEDED: the last sign-off (or preparation) was made on an earlier version: a restatement
  published the date again since (and the build alerted it, SIGNOFF_SUPERSEDED).
"""

from __future__ import annotations

from dataclasses import dataclass

from midoffice import lake
from midoffice.config import Settings
from midoffice.people import store

NONE, PREPARED, SIGNED, SUPERSEDED = "NONE", "PREPARED", "SIGNED", "SUPERSEDED"


class SignoffRefused(ValueError):
    pass


@dataclass(frozen=True)
class SignoffState:
    business_date: str
    state: str
    version: int | None          # the version the (last) sign-off was made on
    current_version: int | None  # the version that publishes the date now
    prepared_by: str | None = None
    prepared_at: str | None = None
    signed_by: str | None = None
    signed_at: str | None = None
    comment: str | None = None


def state_of(records: list[dict], business_date: str, current_version: int | None) -> SignoffState:
    """The sign-off state of a date from its records (in id order) and its current version."""
    mine = [r for r in records if str(r["effective_date"]) == business_date]
    if not mine:
        return SignoffState(business_date, NONE, None, current_version)
    last_version = mine[-1]["version"]
    cycle = [r for r in mine if r["version"] == last_version]
    prepare = next((r for r in reversed(cycle) if r["action"] == "PREPARE"), None)
    sign = next((r for r in reversed(cycle) if r["action"] == "SIGN"), None)
    state = SIGNED if sign else PREPARED
    if current_version is not None and last_version < current_version:
        state = SUPERSEDED
    return SignoffState(
        business_date, state, last_version, current_version,
        prepared_by=prepare["by"] if prepare else None, prepared_at=str(prepare["at"]) if prepare else None,
        signed_by=sign["by"] if sign else None, signed_at=str(sign["at"]) if sign else None,
        comment=(sign or prepare or {}).get("comment"))


def current_state(settings: Settings, business_date: str) -> SignoffState:
    version = lake.published_dates(settings).get(business_date)
    return state_of(store.records(settings, "signoffs"), business_date, version)


def sign_off(settings: Settings, business_date: str, by: str, comment: str | None = None) -> SignoffState:
    """PREPARE the date's current version, or SIGN it when another person prepared it."""
    by = (by or "").strip()
    if not by:
        raise SignoffRefused("--by NAME is required")
    version = lake.published_dates(settings).get(business_date)
    if version is None:
        raise SignoffRefused(f"{business_date} is not published: there is no pack to sign")
    now = state_of(store.records(settings, "signoffs"), business_date, version)
    if now.state == SIGNED:
        raise SignoffRefused(f"{business_date} version {version} is already signed by {now.signed_by} "
                             f"(prepared by {now.prepared_by})")
    if now.state == PREPARED:
        if now.prepared_by == by:
            raise SignoffRefused(f"{business_date} version {version} was prepared by {by}: a different person "
                                 "must sign it")
        action = "SIGN"
    else:  # NONE, or SUPERSEDED: a new cycle on the current version
        action = "PREPARE"
    store.append(settings, "signoffs", {"effective_date": business_date, "action": action, "by": by,
                                        "version": version, "comment": comment})
    return current_state(settings, business_date)
