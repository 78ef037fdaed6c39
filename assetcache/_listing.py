"""Which ledger rows a listing shows: the row each (content, account) answers with now, the
rows it superseded, and the state and expiry filters.

The rule of "the current row" is the one resolve applies (``_schema.SELECT_NEWEST``): of a
key's credible, unrevoked rows, the latest-expiring (the highest id among equals). Rows recorded
while the clock ran ahead (``future``) and revoked ones are never that row. ``audit``,
``refresh`` and ``ls`` all take it from here, so they agree on what is live and expiring.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from ._asset import Asset

if TYPE_CHECKING:
    from ._rules import AssetState

    #: A row's status in a history listing: its state, or ``superseded`` for a row that is
    #: live by its own dates but is not what resolve answers (a later upload of it is).
    ListedStatus = AssetState | Literal["superseded"]

_Key = tuple[str, str]


def _key(asset: Asset) -> _Key:
    return (asset.sha256, asset.email)


def _in_expiry_order(rows: Iterable[Asset]) -> list[Asset]:
    return sorted(rows, key=lambda a: (a.expires_at, a.id or 0))


def newest_per_key(rows: Iterable[Asset], now: datetime) -> list[Asset]:
    """The latest-expiring credible, unrevoked row of each (content, account), in expiry order:
    what resolve decides on (the answer when it is live with enough time left).

    ``rows`` must be in expiry order (as ledgers list them): among equals the last one wins.
    """
    newest: dict[_Key, Asset] = {}
    for asset in rows:
        if asset.state(now) in ("live", "expired"):
            newest[_key(asset)] = asset
    return _in_expiry_order(newest.values())


def current_per_key(rows: Iterable[Asset], now: datetime) -> list[Asset]:
    """One row per (content, account), in expiry order: its ``newest_per_key`` row, or for a
    key that has none (every row revoked, or recorded while the clock ran ahead) its
    latest-expiring row, whose state says why nothing answers for it.

    ``rows`` must be in expiry order, as for ``newest_per_key``.
    """
    rows = list(rows)
    current = {_key(a): a for a in newest_per_key(rows, now)}
    unanswered: dict[_Key, Asset] = {}
    for asset in rows:
        if _key(asset) not in current:
            unanswered[_key(asset)] = asset
    return _in_expiry_order([*current.values(), *unanswered.values()])


def listed_status(asset: Asset, now: datetime, current: bool) -> ListedStatus:
    """How a listing of every upload names a row: ``superseded`` when it is live but is not its
    key's current row (``current``), else its state (an expired row is dead either way)."""
    state = asset.state(now)
    return "superseded" if state == "live" and not current else state


def selected(
    rows: Iterable[Asset],
    now: datetime,
    *,
    expiring_within: timedelta | None,
    expired: bool | None,
) -> list[Asset]:
    """The rows a listing's filters keep: every row (``expired`` None), the live or the expired
    ones (True/False), or the live ones expiring within ``expiring_within``."""
    if expired and expiring_within is not None:
        raise ValueError("expired=True and expiring_within select disjoint sets; pick one")
    if expired is None and expiring_within is None:
        return list(rows)
    wanted = "expired" if expired else "live"
    until = None if expiring_within is None else _later(now, expiring_within)
    return [a for a in rows if a.state(now) == wanted and (until is None or a.expires_at <= until)]


def _later(moment: datetime, delta: timedelta) -> datetime:
    """moment + delta, saturating at the end of time instead of raising OverflowError."""
    try:
        return moment + delta
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)
