"""The report's rows: which urgency each ledger row has, and what the page's list says of it.

Computed once, here, at the moment the page is made, so that the summary, the chart and the
list agree, and a ref with 5 hours left is graded apart from one with 6 days left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from .._asset import Asset
from .._durations import format_duration, relative
from .._sizes import human_size
from .thumbnails import Picture

#: How soon a row stops working: live ones by the time they have left, then the dead ones.
Grade = Literal["day", "week", "later", "expired", "revoked"]

#: Every grade in the page's order, with its label.
GRADE_LABELS: Final[dict[Grade, str]] = {
    "day": "under 24 h",
    "week": "under 7 days",
    "later": "later",
    "expired": "expired",
    "revoked": "revoked",
}
#: The grades of refs that still work: what the list shows until the reader asks for more.
LIVE_GRADES: Final[tuple[Grade, ...]] = ("day", "week", "later")

DAY: Final = timedelta(days=1)
WEEK: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Listed:
    """A ledger row the page lists, with its grade."""

    asset: Asset
    grade: Grade


def grade_of(left: timedelta) -> Grade:
    """The grade of a live ref with ``left`` to go (more than zero)."""
    if left < DAY:
        return "day"
    return "week" if left < WEEK else "later"


def listed(assets: Iterable[Asset], now: datetime) -> list[Listed]:
    """The rows the page lists, soonest to expire first.

    A row recorded while the clock ran ahead ("future") is no evidence of anything, so it is
    left out, as ``ls`` marks it and ``prune`` removes it.
    """
    rows = []
    for asset in assets:
        state = asset.state(now)
        if state == "live":
            rows.append(Listed(asset, grade_of(asset.remaining_at(now))))
        elif state != "future":
            rows.append(Listed(asset, state))
    rows.sort(key=lambda row: row.asset.expires_at)
    return rows


def time_left_text(row: Listed, now: datetime) -> str:
    """``5h 12m``; ``3d 2h ago`` once expired; ``revoked 2d ago``."""
    asset = row.asset
    if row.grade == "revoked" and asset.revoked_at is not None:
        return "revoked " + relative(asset.revoked_at, now)
    left = asset.remaining_at(now)
    if row.grade == "expired":
        return format_duration(-left) + " ago"
    return format_duration(left)


def values(row: Listed, now: datetime, account: int, picture: Picture) -> list[object]:
    """One row of the page's data, in the order page.js unpacks it (``FIELDS`` there):
    ref, account (an index into the page's accounts), source path ("" for bytes), size in
    bytes, size as ``ls`` shows it, type, seconds left (negative once expired), time left as
    text, grade, expiry (UTC), then the picture: its source, its fallback, and the index of an
    embedded image (-1 for none)."""
    asset = row.asset
    return [
        asset.asset_ref,
        account,
        asset.source or "",
        asset.size,
        human_size(asset.size),
        asset.content_type.removeprefix("image/"),
        int(asset.remaining_at(now).total_seconds()),
        time_left_text(row, now),
        row.grade,
        asset.expires_at.strftime("%Y-%m-%d %H:%M"),
        picture.src,
        picture.fallback,
        picture.image,
    ]
