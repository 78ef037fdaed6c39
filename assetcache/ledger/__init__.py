"""The ledger: what was uploaded where, and the one place an engine is chosen for a location.

Engines, picked by the location's scheme and imported only when chosen (``open_engine``):

- a file path or ``sqlite:////absolute/path``: ``sqlite.Ledger``, SQLite on this machine (default);
- ``postgresql://`` (or ``postgres://``, ``postgresql+psycopg://``): ``postgres.PostgresLedger``,
  one ledger shared by every machine, with the ``postgres`` extra installed; its asyncio driver
  (``postgres_async``) is handed to it from here.

Every engine offers ``base.LedgerEngine``. What is per machine stays per machine: the stat
cache (path, inode, mtime -> sha256) means nothing on another host, so a shared engine keeps it
in a local SQLite file (``machine``). Single flight is each engine's own: SQLite's locks are
this machine's (``locks``), a shared ledger's are lease rows in the shared database (``leases``).

The modules, each importing only modules listed below it (so neither engine imports the other):

==================  ==========================================================================
``__init__``        ``open_engine``: the one place an engine is chosen from a location;
                    ``absent_ledger``: whether a read would find no SQLite ledger
``postgres_async``  the PostgreSQL engine through psycopg's asyncio driver (AsyncAssetCache)
``postgres``        the PostgreSQL engine: sessions, the mirror and the spool, leases
``machine``         this machine's file for a shared ledger (``MachineFile``): mirror and spool
``sqlite``          the SQLite engine
``base``            the written interface, and what both engines share: the row mapping, merge
                    outcomes, keyset pagination
``sqlite_file``     the SQLite file: found (and named, for a shared ledger), checked, opened,
                    pooled, kept safe across fork, with the reads of a cache hit
``migrate``         Alembic on open, for any engine
``locks``           single flight on this machine: lock files
``leases``          single flight across machines: a lease row per key
``session_turn``    whose turn it is on a process's one PostgreSQL session: lease holders first
``models``          the same tables as SQLModel classes, for Alembic only
``schema``          table and column names, and the SQL both engines run
``pgurl``           PostgreSQL URLs read as libpq reads them, shown without their password
==================  ==========================================================================

Below the package: ``_asset`` (the value type), ``_rules``, ``_errors`` and the other leaves.
This module stays light: the console script's hit imports ``ledger.sqlite_file``, which runs it
first, and must not pay for an engine, SQLAlchemy or psycopg.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # types only: the console script's hit picks its engine here, cheaply
    from .base import AsyncLedgerSide as AsyncLedgerSide
    from .base import KeyLock as KeyLock
    from .base import LedgerEngine as LedgerEngine
    from .postgres import PostgresLedger
    from .postgres_async import AsyncSessions


POSTGRES_SCHEMES = ("postgresql", "postgres")


def scheme_of(location: str) -> str:
    """``sqlite`` for a path, else the URL scheme without its driver (``postgresql+psycopg``)."""
    if "://" not in location:
        return "sqlite"
    return location.partition("://")[0].split("+")[0].lower()


def shown_location(location: str) -> str:
    """How a ledger is named to people: the real path, or (a shared ledger) the target libpq
    connects to, with its password masked (``pgurl.shown``)."""
    if scheme_of(location) in POSTGRES_SCHEMES:
        from .pgurl import shown

        return shown(location)
    from .sqlite_file import ledger_path

    return ledger_path(location)


def absent_ledger(location: str) -> str | None:
    """The path of an SQLite ledger that does not exist yet, else None (it exists, or the
    ledger is a shared one, whose database the server keeps). Commands that only read ask
    first, so that a mistyped path creates nothing. Creates nothing itself."""
    import os

    if scheme_of(location) in POSTGRES_SCHEMES:
        return None
    path = shown_location(location)
    return None if os.path.lexists(path) else path


def open_engine(location: str, *, lock_wait_s: float | None = None) -> LedgerEngine:
    """Open (and migrate) the ledger at ``location`` with the engine its scheme names.

    ``lock_wait_s``: how long single-flight waiters wait for a holder at least (the engine's
    own bound otherwise: ``locks.LOCK_WAIT_S`` on this machine, ``leases.LOCK_WAIT_S`` for a
    shared ledger's leases)."""
    if scheme_of(location) in POSTGRES_SCHEMES:
        from .postgres import PostgresLedger  # imports psycopg only when it must ask the server

        return PostgresLedger(location, lock_wait_s=lock_wait_s, async_driver=_async_sessions)
    from .sqlite import Ledger

    return Ledger(location, lock_wait_s=lock_wait_s)


def _async_sessions(ledger: PostgresLedger) -> AsyncSessions:
    """A shared ledger's asyncio driver, made when first awaited. ``postgres_async`` imports
    the sync engine, never the reverse, so the engine is handed this factory; asyncio is
    imported only by a program that awaits."""
    from .postgres_async import AsyncSessions

    return AsyncSessions(ledger)
