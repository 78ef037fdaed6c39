"""The value users get back: one upload of some content to one account."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from . import _rules
from ._rules import RETENTION as RETENTION

if TYPE_CHECKING:
    from ._rules import AssetState


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    """An upload recorded in the ledger. Immutable; all datetimes are timezone-aware UTC.

    ``reused`` is True when the answer came from the ledger without an upload. ``source`` is
    the last path the content was resolved from, or None for bytes; ``host`` the machine that
    path belongs to (None for rows recorded before hosts were).
    """

    asset_ref: str
    sha256: str
    email: str
    content_type: str
    size: int
    uploaded_at: datetime
    expires_at: datetime
    upload_id: str
    media_url: str
    source: str | None = None
    revoked_at: datetime | None = None
    host: str | None = None
    reused: bool = False
    id: int | None = field(default=None, compare=False)

    @property
    def remaining(self) -> timedelta:
        """Time left before the remote forgets the upload (negative once expired)."""
        return self.expires_at - datetime.now(UTC)

    def remaining_at(self, now: datetime) -> timedelta:
        return self.expires_at - now

    def is_live(self, now: datetime) -> bool:
        """Whether the row is evidence of a ref that still works at ``now``."""
        return self.state(now) == "live"

    def state(self, now: datetime) -> AssetState:
        """``live``, ``expired``, ``revoked`` (``forget``: found dead before its time), or
        ``future``: recorded while the clock ran ahead.

        A row uploaded "later than now", or with more than the retention left, was written
        while the clock ran ahead: its expiry may be days later than the real one, so it is no
        evidence that the ref still works. It is never an answer, and prune removes it.
        """
        return _rules.state(self.uploaded_at, self.expires_at, self.revoked_at, now)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601 with offset), plus ``reused``."""
        out = {name: getattr(self, name) for name in EXPORT_FIELDS}
        out["uploaded_at"] = self.uploaded_at.isoformat()
        out["expires_at"] = self.expires_at.isoformat()
        out["revoked_at"] = None if self.revoked_at is None else self.revoked_at.isoformat()
        out["reused"] = self.reused
        return out


def answered(asset: Asset, *, source: str | None, host: str | None) -> Asset:
    """The row as a hit's answer: ``reused``, with the path it was just resolved from.

    ``dataclasses.replace`` without its per-call field introspection, which cost more than the
    rest of an API hit's Python work; an Asset has no ``__post_init__`` to skip.
    """
    copy = object.__new__(Asset)
    for name in _FIELDS:
        object.__setattr__(copy, name, getattr(asset, name))
    object.__setattr__(copy, "source", source)
    object.__setattr__(copy, "host", host)
    object.__setattr__(copy, "reused", True)
    return copy


_FIELDS: Final = tuple(Asset.__dataclass_fields__)
#: The fields of an Asset as exported (JSON, CSV): the ledger's upload columns, the ref first
#: and without the row id (tests/test_schema.py holds them to ``ledger.schema.UPLOAD_COLUMNS``;
#: the value type never imports the ledger).
EXPORT_FIELDS: Final = tuple(name for name in _FIELDS if name not in ("reused", "id"))
