"""What a ledger engine is, and what the engines share: the one module both of them import.

- **The written interface**: ``LedgerEngine`` (what the caches ask of a ledger), with its
  single flight (``KeyLock``) and its asyncio side (``AsyncLedgerSide``). ``sqlite.Ledger`` and
  ``postgres.PostgresLedger`` offer it; ``ledger.open_engine`` chooses between them.
- **The row mapping**: an upload row, in ``schema.UPLOAD_COLUMNS`` order, as an ``Asset``
  (``asset_from_row``), and an ``Asset`` as the parameters of the shared statements
  (``upload_params``).
- **Merging**: what importing an upload does to the ledger (``merge_outcome``).
- **Keyset pagination**: walking many rows in bounded batches (``in_id_order``).

Neither engine imports the other: whatever both need lives here, below them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from .._asset import Asset
from . import schema
from .busy import KeyBusy as KeyBusy

if TYPE_CHECKING:
    from ..content.stat_cache import FileStat

_T = TypeVar("_T")

#: Rows per read (and per delete) when an engine walks many rows: prune, export.
BATCH_ROWS = 5000

#: What importing one upload did: ``added`` (new here), ``revoked`` (held, and the import
#: revokes it: a revocation is never lost) or ``skipped`` (nothing new).
MergeOutcome = Literal["added", "revoked", "skipped"]


class KeyLock(Protocol):
    """Single flight for one (content, account) key: at most one holder, wherever it runs.

    ``hold`` yields None while the caller holds the key, and the caller looks for the answer
    again before it uploads (someone may have uploaded while it waited). ``look`` is that look,
    offered for the wait itself: an engine whose waiters can tell that the holder they waited
    for is done (the shared ledger's leases) asks it then, and yields what it found without
    taking the key, so that the waiters of a finished upload do not take the key one after
    another only to find the row. An engine whose waiters cannot tell (SQLite's file locks,
    where the kernel queues them, cheaply) never calls it and always yields None.

    ``patient=False``: raise ``KeyBusy`` rather than wait when someone else (another process,
    machine or thread) holds the key now, so that a batch uploads something else meanwhile.
    """

    def hold(
        self, key: str, look: Callable[[], _T | None] | None = None, *, patient: bool = True
    ) -> contextlib.AbstractContextManager[_T | None]: ...

    def ahold(
        self,
        key: str,
        look: Callable[[], Awaitable[_T | None]] | None = None,
        *,
        patient: bool = True,
    ) -> contextlib.AbstractAsyncContextManager[_T | None]: ...

    def forget_inherited(self) -> None: ...


class AsyncLedgerSide(Protocol):
    """What AsyncAssetCache awaits on its resolve path, with the meaning of LedgerEngine's
    methods of the same names: an engine's own asyncio driver (PostgreSQL: psycopg's), or,
    for an engine without one (SQLite: local disk), the sync calls in worker threads."""

    async def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None: ...

    async def record(self, asset: Asset) -> Asset: ...


class LedgerEngine(Protocol):
    """The ledger as the cache uses it. ``path`` names it in messages (never a password)."""

    @property
    def path(self) -> str: ...

    @property
    def locks(self) -> KeyLock: ...

    def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None:
        """The latest-expiring credible, unrevoked row of a key (see Asset.state), or None.

        ``fresh``: the ledger's own answer, never a local copy of it (single flight's re-check
        under the key's lock must see what another machine just recorded)."""

    def record(self, asset: Asset) -> Asset:
        """Insert a new upload row in one short transaction; the asset with its id."""

    def set_source(self, row_id: int, source: str, host: str) -> None:
        """The path (on ``host``) this content was last resolved from; may do nothing."""

    def file_stat(self, path: str) -> FileStat | None:
        """The stat cache, on this machine only."""

    def put_file_stat(self, entry: FileStat) -> None: ...

    def assets(
        self,
        *,
        email: str | None = None,
        live_after: datetime | None = None,
        expires_until: datetime | None = None,
    ) -> list[Asset]: ...

    def prune(
        self,
        *,
        email: str | None,
        expired_before: datetime | None,
        uploaded_before: datetime | None,
        dry_run: bool,
        now: datetime | None = None,
    ) -> Iterator[Asset]: ...

    def export(self, *, email: str | None, live_after: datetime | None) -> Iterator[Asset]: ...

    def merge(self, assets: Iterable[Asset]) -> list[MergeOutcome]:
        """Each upload ``added``, ``revoked`` (an imported revocation) or ``skipped``."""

    def revoke(
        self, *, sha256: str | None, asset_ref: str | None, email: str | None, at: datetime
    ) -> list[Asset]: ...

    def async_side(self) -> AsyncLedgerSide | None:
        """The engine's asyncio driver for the resolve path, or None: then AsyncAssetCache
        runs ``newest`` and ``record`` in worker threads."""

    def close(self) -> None: ...

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's connections without using them."""


# -- the row mapping -----------------------------------------------------------------------


def asset_from_row(row: tuple[Any, ...]) -> Asset:
    """An upload row as read by either engine (times as stored text, or as datetimes)."""
    # Positional unpacking in UPLOAD_COLUMNS order (test_migrations checks that order): this
    # runs once per listed row, so it avoids building a dict per row.
    (
        row_id,
        sha256,
        email,
        asset_ref,
        content_type,
        size,
        uploaded,
        expires,
        upload_id,
        media,
        src,
        revoked,
        host,
    ) = row
    return Asset(
        id=row_id,
        sha256=sha256,
        email=email,
        asset_ref=asset_ref,
        content_type=content_type,
        size=size,
        uploaded_at=schema.from_db_time(uploaded),
        expires_at=schema.from_db_time(expires),
        upload_id=upload_id,
        media_url=media,
        source=src,
        revoked_at=None if revoked is None else schema.from_db_time(revoked),
        host=host,
    )


def upload_params(
    asset: Asset, *, time: Callable[[datetime], object] | None = None
) -> dict[str, Any]:
    """An Asset as the parameters of the shared upload statements (``:sha256``, ``:email``, ...).
    Times stay aware datetimes (PostgreSQL binds them so), or go through ``time`` (SQLite
    stores ``schema.to_db_time`` text)."""

    def stored(moment: datetime | None) -> object:
        return moment if moment is None or time is None else time(moment)

    return {
        "sha256": asset.sha256,
        "email": asset.email,
        "asset_ref": asset.asset_ref,
        "content_type": asset.content_type,
        "size": asset.size,
        "uploaded_at": stored(asset.uploaded_at),
        "expires_at": stored(asset.expires_at),
        "upload_id": asset.upload_id,
        "media_url": asset.media_url,
        "source": asset.source,
        "revoked_at": stored(asset.revoked_at),
        "host": asset.host,
    }


def merge_outcome(held: tuple[Any, ...] | None, incoming: Asset) -> MergeOutcome:
    """What importing ``incoming`` does, given the (id, revoked_at) of the same upload held."""
    if held is None:
        return "added"
    if incoming.revoked_at is not None and held[1] is None:
        return "revoked"
    return "skipped"


# -- keyset pagination ---------------------------------------------------------------------


def in_id_order(
    read: Callable[[dict[str, Any]], list[Asset]], params: dict[str, Any]
) -> Iterator[list[Asset]]:
    """Every row a batch query selects, batch by batch in id order, each read after the last
    id of the one before (keyset pagination): memory and each read stay small however large
    the ledger, and rows deleted between batches (prune) never shift the next one. The query
    takes ``:after`` and ``:limit``."""
    params = {**params, "limit": BATCH_ROWS, "after": 0}
    while batch := read(params):
        yield batch
        params["after"] = batch[-1].id
