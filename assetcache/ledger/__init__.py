"""What the cache asks of a ledger, and which engine answers: the one place that chooses.

Engines, picked by the location's scheme and imported only when chosen:

- a file path or ``sqlite:///path``: ``_sqlite_ledger.Ledger``, SQLite on this machine (default);
- ``postgresql://`` (or ``postgres://``, ``postgresql+psycopg://``): ``_postgres.PostgresLedger``,
  one ledger shared by every machine, with the ``postgres`` extra installed.

Every engine offers ``LedgerEngine`` below. What is per machine stays per machine: the stat
cache (path, inode, mtime -> sha256) means nothing on another host, so a shared engine keeps it
in a local SQLite file. Single flight is each engine's own: SQLite's locks are this machine's
(``_locks``), a shared ledger's are lease rows in the shared database (``_leases``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # types only: the console script's hit picks its engine here, cheaply
    import contextlib
    from collections.abc import Callable, Iterable, Iterator
    from datetime import datetime
    from typing import Any, Protocol

    from .._asset import Asset
    from .sqlite import FileStat, MergeOutcome

    class KeyLock(Protocol):
        """Single flight for one (content, account) key: at most one holder, wherever it runs."""

        def hold(self, key: str) -> contextlib.AbstractContextManager[None]: ...

        def ahold(self, key: str) -> contextlib.AbstractAsyncContextManager[None]: ...

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


POSTGRES_SCHEMES = ("postgresql", "postgres")
#: Rows per read (and per delete) when an engine walks many rows: prune, export.
BATCH_ROWS = 5000


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


def scheme_of(location: str) -> str:
    """``sqlite`` for a path, else the URL scheme without its driver (``postgresql+psycopg``)."""
    if "://" not in location:
        return "sqlite"
    return location.partition("://")[0].split("+")[0].lower()


def shown_location(location: str) -> str:
    """How a ledger is named to people: the real path, or (a shared ledger) the target libpq
    connects to, with its password masked (``_pgurl.shown``)."""
    if scheme_of(location) in POSTGRES_SCHEMES:
        from .pgurl import shown

        return shown(location)
    from .sqlite_file import ledger_path

    return ledger_path(location)


def machine_file(location: str) -> str:
    """This machine's SQLite file for a shared ledger: its stat cache, mirror, spool and lock
    folder, in the user cache dir. Named for the database the URL connects to (host and port
    of each server libpq tries, database, user: ``_pgurl.identity``), so every spelling of one
    database shares one file, one mirror and one lock folder. The console script calls this on
    every hit: it parses the URL itself (no psycopg) and creates nothing."""
    import hashlib
    import os

    from .._config import cache_dir
    from .pgurl import ConninfoError, identity

    try:
        name = identity(location)
    except ConninfoError:  # no libpq reads it: no database to name; as older versions did
        from .machine import legacy_machine_file

        return legacy_machine_file(location)
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return os.path.join(cache_dir(), f"shared-{digest}.db")


def open_engine(location: str, *, lock_wait_s: float | None = None) -> LedgerEngine:
    """Open (and migrate) the ledger at ``location`` with the engine its scheme names.

    ``lock_wait_s``: how long single-flight waiters wait for a holder at least (the engine's
    own bound otherwise: ``_locks.LOCK_WAIT_S`` on this machine, ``_leases.LOCK_WAIT_S`` for a
    shared ledger's leases)."""
    if scheme_of(location) in POSTGRES_SCHEMES:
        from .postgres import PostgresLedger

        return PostgresLedger(location, lock_wait_s=lock_wait_s)
    from .sqlite import Ledger

    return Ledger(location, lock_wait_s=lock_wait_s)
