"""The ledger: where it is, how it is opened, migrated and written, and its queries.

SQLite choices, each for a reason:

- ``journal_mode=WAL``: readers never wait for a writer, so cache hits in one process are not
  slowed by an upload being recorded in another.
- ``busy_timeout`` (and sqlite3's ``timeout``): a writer that finds the database locked waits
  instead of failing with "database is locked".
- ``BEGIN IMMEDIATE`` for every transaction that writes: it takes the write lock up front, so
  two writers cannot both start reading and then deadlock upgrading to write; the wait happens
  in BEGIN, under the busy timeout. Write transactions are a few statements long and never
  span a network call (the cache uploads first, then records).
- ``synchronous=FULL``: a row lost to a power cut costs a paid re-upload, and uploads are rare
  enough that one fsync per commit is free.
- Autocommit mode at the driver (``isolation_level=None``): Python's sqlite3 would otherwise
  open transactions on its own, behind our BEGIN IMMEDIATE.

Migrations are Alembic revisions in ``migrations/`` (shipped in the wheel as
``assetcache/_migrations``), applied when a ledger is opened and found behind. The check that
it is current reads ``alembic_version`` with plain sqlite3, so a current ledger never imports
Alembic or SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from . import _schema
from ._asset import Asset
from ._errors import LedgerError
from ._locks import file_lock

if TYPE_CHECKING:
    from pathlib import Path

BUSY_TIMEOUT_S: Final = 30.0
#: Rows deleted per write transaction. Deletes cost index maintenance on random pages; 5000
#: a batch shares more of those pages than 1000 (-35 % time at a million rows) while memory
#: stays a few MB and each write lock is held well under a second.
PRUNE_BATCH: Final = 5000
#: Idle connections kept for reuse; more threads than this just open and close their own.
MAX_IDLE_CONNECTIONS: Final = 8


@dataclass(frozen=True, slots=True)
class FileStat:
    """A file's identity at the moment it was hashed (see the stat cache in _cache.py)."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str
    recorded_ns: int


def ledger_path(location: str) -> str:
    """The filesystem path for a ledger location (a path or a ``sqlite:///`` URL)."""
    if "://" not in location:
        return os.path.abspath(os.path.expanduser(location))
    scheme, _, rest = location.partition("://")
    if scheme.split("+")[0] != "sqlite":
        raise LedgerError(
            f"unsupported ledger URL scheme {scheme!r}: this version of assetcache keeps its "
            "ledger in SQLite; pass a file path or a sqlite:/// URL",
            path=location,
        )
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        raise LedgerError(
            "an in-memory ledger would forget every upload when the process exits; "
            "give it a file path",
            path=location,
        )
    return os.path.abspath(os.path.expanduser(path))


def _migrations_dir() -> Path:
    from pathlib import Path

    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise LedgerError("assetcache is installed without its migrations; reinstall it")


class Ledger:
    """An opened, current ledger. Thread-safe: each thread gets its own SQLite connection."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.path = ledger_path(location)
        # A small pool rather than one connection per thread: threads come and go (every
        # resolve_many batch has its own), and per-thread connections would leak descriptors.
        self._idle: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        self._prepare_file()
        self._ensure_schema()

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"

    # -- opening -------------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException | None = None, hint: str = "") -> LedgerError:
        detail = f" ({exc})" if exc is not None else ""
        return LedgerError(f"ledger {self.path}: {what}{detail}{hint}", path=self.path)

    def _prepare_file(self) -> None:
        directory = os.path.dirname(self.path)
        try:
            if not os.path.isdir(directory):
                # Only the user may list or read what the cache keeps.
                os.makedirs(directory, mode=0o700, exist_ok=True)
            # Create the file ourselves so it is 0600 from its first byte (SQLite gives its
            # -wal and -shm files the same mode as the database).
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except PermissionError:
            if os.path.isfile(self.path):
                return  # read-only ledger: reads may still work; writes will say so
            raise self._fail("cannot create it (permission denied)") from None
        except IsADirectoryError:
            raise self._fail("is a directory; give a file path") from None
        except OSError as exc:
            raise self._fail("cannot create or open it", exc) from None
        try:
            st = os.fstat(fd)
            if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def _ensure_schema(self) -> None:
        version = self._schema_version()
        if version == _schema.HEAD:
            return
        if version is not None and version not in _schema.REVISIONS:
            raise self._fail(
                f"was written by a newer assetcache (schema {version})",
                hint="; upgrade assetcache (pip install -U assetcache) or use another --db",
            )
        # One process migrates; the others wait here, then find the schema current with a
        # plain read instead of each importing Alembic (a second of CPU) to learn the same.
        with contextlib.ExitStack() as held:
            # Without a place for the lock file (read-only directory), BEGIN IMMEDIATE in
            # _migrate still serialises the migration itself.
            with contextlib.suppress(OSError):
                held.enter_context(file_lock(os.path.join(self.path + ".locks", "migrate.lock")))
            if self._schema_version() != _schema.HEAD:
                self._migrate()
        if self._schema_version() != _schema.HEAD:
            raise self._fail("migration did not reach the current schema")

    def _schema_version(self) -> str | None:
        try:
            with self._checkout() as conn:
                return self._read_version(conn)
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc, hint=self._access_hint(exc)) from None

    def _read_version(self, conn: sqlite3.Connection) -> str | None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "alembic_version" not in tables:
            if tables - {"sqlite_sequence"}:
                raise self._fail(
                    "is an SQLite database, but not an assetcache ledger",
                    hint="; point --db / ASSETCACHE_DB at another file",
                )
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])

    def _migrate(self) -> None:
        # Imported here: a current ledger never pays for Alembic and SQLAlchemy.
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import create_engine, event
        from sqlalchemy.pool import NullPool

        engine = create_engine("sqlite://", creator=self._new_connection, poolclass=NullPool)

        # Alembic's whole upgrade runs inside one BEGIN IMMEDIATE transaction: processes
        # opening a new ledger at once queue on the write lock, and each one after the first
        # finds the schema already at head and does nothing.
        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        config = Config()
        config.set_main_option("script_location", str(_migrations_dir()))
        try:
            with engine.connect() as conn, conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except Exception as exc:
            raise self._fail("could not be migrated to the current schema", exc) from exc
        finally:
            engine.dispose()

    # -- connections ---------------------------------------------------------------------

    def _new_connection(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise self._fail("cannot be opened", exc, hint=self._access_hint(exc)) from None
        return conn

    def _access_hint(self, exc: BaseException | None = None) -> str:
        if exc is not None and type(exc) is sqlite3.DatabaseError:
            # Plain DatabaseError (not OperationalError) is "not a database" or "malformed".
            return (
                "; the file is not a readable SQLite database and was left untouched: "
                "move it aside (or restore a backup) and retry"
            )
        if os.path.exists(self.path) and not os.access(self.path, os.W_OK):
            return "; the file is read-only: make it writable or use another --db"
        if not os.access(os.path.dirname(self.path), os.W_OK):
            return "; its directory is not writable (SQLite needs it for the WAL files)"
        return ""

    @contextlib.contextmanager
    def _checkout(self) -> Iterator[sqlite3.Connection]:
        """A connection for this block, from the pool or new; returned (or closed) after."""
        with self._guard:
            if self._closed:
                raise self._fail("is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._new_connection()
        try:
            yield conn
        finally:
            with self._guard:
                keep = not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._checkout() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc, hint=self._access_hint(exc)) from None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction that starts with BEGIN IMMEDIATE."""
        with self._checkout() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                hint = self._access_hint(exc)
                raise self._fail("cannot be written", exc, hint=hint) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    hint = self._access_hint(exc)
                    raise self._fail("cannot be written", exc, hint=hint) from None
                raise

    def close(self) -> None:
        """Close idle connections now; those in use close when their block ends."""
        with self._guard:
            self._closed = True
            connections, self._idle = self._idle, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- queries -------------------------------------------------------------------------

    def newest(self, sha256: str, email: str) -> Asset | None:
        """The latest-expiring upload of this content to this account, live or not."""
        with self._reading() as conn:
            row = conn.execute(_schema.SELECT_NEWEST, {"sha256": sha256, "email": email}).fetchone()
        return None if row is None else _asset(row)

    def record(self, asset: Asset) -> Asset:
        """Insert a new upload row and return the asset with its id."""
        params = _upload_params(asset)
        with self.write() as conn:
            cursor = conn.execute(_schema.INSERT_UPLOAD, params)
            row_id = cursor.lastrowid
        return replace(asset, id=row_id)

    def set_source(self, row_id: int, source: str) -> None:
        with self.write() as conn:
            conn.execute(_schema.UPDATE_SOURCE, {"id": row_id, "source": source})

    def file_stat(self, path: str) -> FileStat | None:
        with self._reading() as conn:
            row = conn.execute(_schema.SELECT_STAT, {"path": path}).fetchone()
        return None if row is None else FileStat(*row)

    def put_file_stat(self, entry: FileStat) -> None:
        params = dict(zip(_schema.FILE_STAT_COLUMNS, _stat_values(entry), strict=True))
        with self.write() as conn:
            conn.execute(_schema.UPSERT_STAT, params)

    def assets(
        self,
        *,
        email: str | None = None,
        live_after: datetime | None = None,
        expires_until: datetime | None = None,
    ) -> list[Asset]:
        given = {
            "email": email,
            "live_after": _db_time_or_none(live_after),
            "expires_until": _db_time_or_none(expires_until),
        }
        params = {name: value for name, value in given.items() if value is not None}
        with self._reading() as conn:
            rows = conn.execute(_schema.select_assets(*params), params)
            return [_asset(row) for row in rows]

    def prune(
        self,
        *,
        email: str | None,
        expired_before: datetime | None,
        uploaded_before: datetime | None,
        dry_run: bool,
    ) -> Iterator[Asset]:
        """Delete matching rows in batches, yielding each as it goes (bounded memory)."""
        params: dict[str, Any] = {
            "email": email,
            "expired_before": _db_time_or_none(expired_before),
            "uploaded_before": _db_time_or_none(uploaded_before),
            "limit": PRUNE_BATCH,
            "after": 0,
        }
        while True:
            with self._reading() as conn:
                batch = [_asset(r) for r in conn.execute(_schema.SELECT_PRUNE_BATCH, params)]
            if not batch:
                return
            if not dry_run:
                with self.write() as conn:
                    conn.executemany(_schema.DELETE_UPLOAD, [{"id": a.id} for a in batch])
            yield from batch
            params["after"] = batch[-1].id


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL (it persists in the file, so this is a read once it is set).

    SQLite answers "database is locked" at once, without its busy handler, when the journal
    mode is changed while another process holds a lock, e.g. the first process migrating a
    brand-new ledger. So the change is retried here, within the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _asset(row: tuple[Any, ...]) -> Asset:
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
    ) = row
    return Asset(
        id=row_id,
        sha256=sha256,
        email=email,
        asset_ref=asset_ref,
        content_type=content_type,
        size=size,
        uploaded_at=_schema.from_db_time(uploaded),
        expires_at=_schema.from_db_time(expires),
        upload_id=upload_id,
        media_url=media,
        source=src,
    )


def _upload_params(asset: Asset) -> dict[str, Any]:
    return {
        "sha256": asset.sha256,
        "email": asset.email,
        "asset_ref": asset.asset_ref,
        "content_type": asset.content_type,
        "size": asset.size,
        "uploaded_at": _schema.to_db_time(asset.uploaded_at),
        "expires_at": _schema.to_db_time(asset.expires_at),
        "upload_id": asset.upload_id,
        "media_url": asset.media_url,
        "source": asset.source,
    }


def _db_time_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else _schema.to_db_time(moment)


def _stat_values(entry: FileStat) -> tuple[Any, ...]:
    inode = _schema.to_sqlite_int(entry.inode)  # unsigned 64-bit on some filesystems
    values = (entry.path, entry.device, inode, entry.size, entry.mtime_ns, entry.ctime_ns)
    return (*values, entry.sha256, entry.recorded_ns)
