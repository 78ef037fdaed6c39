"""What the cache's methods answer besides an Asset: refresh items, audits and their advice,
import reports. Plain values, shared by both caches and rendered by the front ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal

from ._asset import Asset
from ._errors import AssetCacheError

RefreshStatus = Literal[
    "refreshed", "would-refresh", "missing", "changed", "no-source", "other-host", "failed"
]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``import_rows`` did: uploads added, uploads held here that the import revoked (a
    ``forget`` made where the rows came from), and those with nothing new."""

    added: int
    skipped: int
    revoked: int = 0


@dataclass(frozen=True, slots=True)
class RefreshItem:
    """What refresh did (or would do) with one expiring entry."""

    asset: Asset
    status: RefreshStatus
    new: Asset | None = None
    error: AssetCacheError | None = None

    @property
    def reason(self) -> str:
        return {
            "refreshed": "re-uploaded",
            "would-refresh": "would be re-uploaded",
            "missing": "source file is gone",
            "changed": "source file content changed",
            "no-source": "no source file recorded (resolved from bytes)",
            "other-host": f"source file is on another host ({self.asset.host})",
            "failed": f"upload failed: {self.error}",
        }[self.status]


AdviceAction = Literal["refresh", "upload-again", "prune", "nothing"]

#: How far ahead audit looks for expiring refs (and what its refresh advice covers).
AUDIT_HORIZON: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Advice:
    """What to do next about one account's refs, as data for a front end to render.

    ``refresh``: re-upload the ``count`` refs expiring within ``expiring_within`` whose source
    files are unchanged. ``upload-again``: refs are expiring but no unchanged source file is
    known, so only the user can resolve them again. ``prune``: drop ``count`` rows that are no
    evidence of a live ref (expired, revoked, or recorded while the clock ran ahead).
    """

    action: AdviceAction
    email: str
    count: int = 0
    expiring_within: timedelta | None = None


@dataclass(frozen=True, slots=True)
class AccountAudit:
    """The state of one account's cached refs (counted per content, newest upload each).

    ``future`` counts rows recorded while the clock ran ahead and ``revoked`` rows marked dead
    by ``forget`` (see ``Asset.state``): neither is ever an answer, and prune removes both.
    """

    email: str
    live: int
    expiring_24h: int
    expiring_7d: int
    expired: int
    refreshable: int
    uploads: int
    future: int = 0
    revoked: int = 0

    @property
    def advice(self) -> Advice:
        if self.expiring_7d and self.refreshable:
            return Advice("refresh", self.email, self.refreshable, AUDIT_HORIZON)
        if self.expiring_7d:
            return Advice("upload-again", self.email, self.expiring_7d)
        if self.expired or self.future or self.revoked:
            return Advice("prune", self.email, self.expired + self.future + self.revoked)
        return Advice("nothing", self.email)
