"""The ledger: where it is, how it is opened, migrated and written, and its queries.

SQLite choices, each for a reason:

- ``journal_mode=WAL``: readers never wait for a writer, so cache hits in one process are not
  slowed by an upload being recorded in another. It persists in the file, so it is switched on
  once, when a ledger is opened, not on every pooled connection.
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
- Look before changing anything: a mistaken ``--db`` (another program's database, a text file,
  a device) must be left exactly as it was. The file's type, owner, mode and header are
  checked first (``lstat``, then a read-only, non-blocking, ``O_NOFOLLOW`` descriptor), then
  its schema is read on an ordinary connection with nothing but reads: a reader creates no
  rollback journal, and in WAL mode the ``-wal``/``-shm`` it creates are removed when it
  closes (a ``?mode=ro`` connection would leave them behind). Only once the file is known to
  be a ledger (``alembic_version`` at a known revision) or empty are its mode tightened, WAL
  switched on and migrations run. The fast path stays one connection and the one version
  read: that connection then serves the lookups.
- The ledger and what SQLite keeps beside it (``-wal``, ``-shm``, ``-journal``) must be the
  user's own and writable by nobody else: SQLite would replay another user's journal or WAL
  into the database, and another user's ledger may hold planted rows.
- The path is resolved (symlinks followed) before anything else: a ledger reached through two
  names must have one lock folder, or two processes would upload the same content.
- No connection is open across ``fork``: an at-fork hook closes the idle ones first (SQLite's
  per-process lock bookkeeping is inherited, so a child with an inherited open connection would
  take no real locks), and a child forked while another thread had one checked out refuses
  the ledger. Anything left over is dropped unclosed (``Ledger.forget_inherited``): closing is
  a use.

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
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from . import _schema
from ._asset import RETENTION, Asset
from ._errors import LedgerError
from ._locks import KeyLocks, file_lock, make_private_dirs, require_own

if TYPE_CHECKING:
    from pathlib import Path

BUSY_TIMEOUT_S: Final = 30.0
#: Rows deleted per write transaction. Deletes cost index maintenance on random pages; 5000
#: a batch shares more of those pages than 1000 (-35 % time at a million rows) while memory
#: stays a few MB and each write lock is held well under a second.
PRUNE_BATCH: Final = 5000
#: Idle connections kept for reuse; more threads than this just open and close their own.
MAX_IDLE_CONNECTIONS: Final = 8

_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
#: The first bytes of every SQLite database file.
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
#: Files SQLite keeps beside a database and reads back into it.
_COMPANIONS: Final = ("-wal", "-shm", "-journal")
#: What decoding a row raises when another program wrote a value that is not ours.
_UNREADABLE: Final = (ValueError, TypeError, OverflowError)
#: Connections a forked child inherited: never used, never closed (see forget_inherited).
_INHERITED: list[sqlite3.Connection] = []
#: Every open Ledger, for the fork hooks below.
_OPEN_LEDGERS: weakref.WeakSet[Ledger] = weakref.WeakSet()


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
    """The real filesystem path for a ledger location (a path or a ``sqlite:///`` URL).

    Symlinks are resolved, so every name of one ledger gives one path, and so one lock folder
    (``<path>.locks``) and one single flight.
    """
    if "://" not in location:
        return _real(location)
    scheme, _, rest = location.partition("://")
    if scheme.split("+")[0] != "sqlite":
        raise LedgerError(
            f"unsupported ledger URL scheme {scheme!r}: this version of assetcache keeps its "
            "ledger in SQLite; pass a file path or a sqlite:/// URL",
            path=without_password(location),
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
    return _real(path)


def without_password(url: str) -> str:
    """A URL as it may be shown: a password in it (``user:secret@host``, or libpq's
    ``?password=secret``) becomes ``***``."""
    from urllib.parse import unquote

    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # libpq ends the user info at the last "@", whatever comes before it ("?" and "/" included).
    credentials, at, rest = rest.rpartition("@")
    if at:
        user, colon, _ = credentials.partition(":")
        rest = f"{user}{':***' if colon else ''}@{rest}"
    rest, question, query = rest.partition("?")
    if question:
        fields = [
            "password=***" if unquote(field).lower().startswith("password=") else field
            for field in query.split("&")
        ]
        query = "&".join(fields)
    return f"{scheme}://{rest}{question}{query}"


def passwords_in(url: str) -> list[str]:
    """The password a URL carries, as written and decoded, to scrub from a driver's messages."""
    from urllib.parse import unquote

    _, _, rest = url.partition("://")
    credentials, at, after = rest.rpartition("@")
    found = [credentials.partition(":")[2]] if at and ":" in credentials else []
    for field in after.partition("?")[2].split("&"):
        key, _, value = field.partition("=")
        if unquote(key).lower() == "password":
            found.append(value)
    return [p for raw in found for p in {raw, unquote(raw)} if p]


def _real(path: str) -> str:
    # A missing ledger resolves through its existing parents: a new ledger in a symlinked
    # folder gets the same path as when it exists.
    return os.path.realpath(os.path.expanduser(path))


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
        #: Single flight for this ledger: one lock folder per real path (see _locks.py).
        self.locks = KeyLocks(self.path + ".locks")
        # A small pool rather than one connection per thread: threads come and go (every
        # resolve_many batch has its own), and per-thread connections would leak descriptors.
        self._idle: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        self._in_use = 0  # connections checked out now
        self._broken_by_fork = False
        fd = self._open_file()
        try:
            self._ensure_schema(fd)
        except BaseException:
            self.close()  # a refused file keeps no connection, nor the -wal/-shm it made
            raise
        finally:
            os.close(fd)
        _OPEN_LEDGERS.add(self)

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"

    def forget_inherited(self) -> None:
        """Call in a child process right after ``fork``: drop the parent's connections.

        SQLite forbids using a connection across fork, and closing one is a use (the last
        close checkpoints and deletes the WAL the parent is still writing). So the idle ones
        are not closed but moved to a module-level list, where no finalizer ever closes them,
        and the guard is replaced, as a parent thread may have held it at fork time. New
        connections are opened as needed.
        """
        _INHERITED.extend(self._idle)
        self._idle = []
        self._guard = threading.Lock()
        self.locks.forget_inherited()

    def _before_fork(self) -> None:
        """Really close the idle connections (this process owns them), and hold the pool.

        SQLite keeps per-process bookkeeping of the POSIX locks it holds on a file, and a child
        inherits it: while any inherited connection is open, the child's new connections think
        its locks are already taken and take none, so other processes believe they are alone
        (the WAL can be checkpointed and deleted under the child's writes). With no connection
        open at fork time, a child starts clean.
        """
        self._guard.acquire()
        connections, self._idle = self._idle, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _after_fork_in_parent(self) -> None:
        self._guard.release()

    def _after_fork_in_child(self) -> None:
        # A connection another thread had checked out at fork time is open in this process
        # too, with the bookkeeping above: no connection opened here could be trusted.
        self._broken_by_fork = self._in_use > 0
        self._in_use = 0
        self._guard = threading.Lock()

    # -- opening -------------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException | None = None, hint: str = "") -> LedgerError:
        detail = f" ({exc})" if exc is not None else ""
        return LedgerError(f"ledger {self.path}: {what}{detail}{hint}", path=self.path)

    def _open_file(self) -> int:
        """A descriptor of the ledger file, created private if absent, else checked unchanged.

        Nothing existing is changed here: the file may turn out not to be a ledger.
        """
        self._check_folder()
        fd = self._open_or_create()
        try:
            for suffix in _COMPANIONS:
                self._check_companion(self.path + suffix)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_folder(self) -> None:
        """Refuse a ledger in a folder someone else may write to.

        SQLite opens the database again for every connection, and its -wal, -shm and -journal
        by name whenever it needs them: whoever can create or rename files in the folder (even
        a sticky one like /tmp) can plant a WAL or swap the file between our checks and
        SQLite's opens. The owner must be you (or root, for system folders), and neither others
        nor a group other than your own may write to it.
        """
        folder = os.path.dirname(self.path)
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            return  # created private by _create_file
        except OSError as exc:
            raise self._fail("its folder cannot be examined", exc) from None
        foreign_group = st.st_mode & 0o020 and st.st_gid != os.getegid()
        if st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o002 or foreign_group:
            raise self._fail(
                f"is in {folder}, a folder other users may write to (owner uid {st.st_uid}, "
                f"mode {stat.S_IMODE(st.st_mode):04o}), where they could plant or swap its files",
                hint="; keep the ledger in a folder of your own (mode 0700)",
            )

    def _open_or_create(self) -> int:
        while True:
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                fd = self._create_file()
                if fd is None:
                    continue  # another process created it meanwhile: check it like any other
                return fd
            except OSError as exc:
                raise self._fail("cannot be opened", exc) from None
            # Before opening: opening a device or a FIFO can itself act (rewind a tape, block).
            self._check_kind(st)
            return self._open_existing()

    def _create_file(self) -> int | None:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
        try:
            # Only the user may list or read what the cache keeps, even under umask 000.
            make_private_dirs(os.path.dirname(self.path))
            # Created here, so it is 0600 from its first byte (SQLite gives its -wal and -shm
            # files the same mode); O_EXCL, so it is never a file that appeared meanwhile.
            return os.open(self.path, flags, 0o600)
        except FileExistsError:
            return None
        except PermissionError:
            raise self._fail("cannot create it (permission denied)") from None
        except OSError as exc:
            raise self._fail("cannot create it", exc) from None

    def _check_kind(self, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode):
            raise self._fail("is a directory; give a file path")
        if stat.S_ISLNK(st.st_mode):  # the path is resolved: only a loop is left a link
            raise self._fail(
                "is a symbolic link that does not resolve (a loop?); "
                "give the ledger file itself as the ledger path"
            )
        raise self._fail(
            "is not a regular file (a device, FIFO or socket) and was left untouched; "
            "give a ledger file as the ledger path"
        )

    def _open_existing(self) -> int:
        # Read-only and non-blocking (a FIFO swapped in since the lstat cannot hang us);
        # O_NOFOLLOW: the path was resolved, so a symlink here appeared since.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            raise self._fail("cannot be opened", exc, hint="; check that you can read it") from None
        try:
            self._check_file(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_file(self, fd: int) -> None:
        """Refuse, on the open descriptor, a file that is not ours or not an SQLite database."""
        st = os.fstat(fd)
        self._check_kind(st)  # what was checked by name is what is open
        require_own(st, self.path, "ledger", 0o600)
        if st.st_size and os.pread(fd, len(_SQLITE_MAGIC), 0) != _SQLITE_MAGIC:
            raise self._fail(
                "is not a readable SQLite database and was left untouched; if it is your "
                "ledger, restore a backup or move it aside, otherwise use another "
                "ledger path"
            )

    def _check_companion(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._fail(f"cannot inspect {path}", exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise LedgerError(
                f"ledger companion {path} is not a regular file, so SQLite would follow or "
                "misuse it: move it aside",
                path=path,
            )
        require_own(st, path, "ledger companion", 0o600)

    def _ensure_schema(self, fd: int) -> None:
        version = self._schema_version()  # refuses anything but a ledger or an empty file
        # Known to be a ledger (or empty) from here on: only now is anything changed.
        self._make_private(fd)
        self._use_wal()
        if version == _schema.HEAD:
            return
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

    def _make_private(self, fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) & 0o077:
            # Readable by others (writable ones were refused): from now on only by the user.
            with contextlib.suppress(OSError):  # a read-only filesystem: reads still work
                os.fchmod(fd, 0o600)

    def _use_wal(self) -> None:
        try:
            with self._checkout() as conn:
                _enable_wal(conn)
        except sqlite3.Error as exc:
            raise self._fail("cannot be opened", exc, hint=self._access_hint(exc)) from None

    def _schema_version(self) -> str | None:
        try:
            with self._checkout() as conn:
                return self._read_version(conn)
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc, hint=self._access_hint(exc)) from None

    def _read_version(self, conn: sqlite3.Connection) -> str | None:
        """The ledger's revision, or None for an empty database; anything else is refused."""
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        version = None
        if "alembic_version" in names:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            version = None if row is None else str(row[0])
        if version in _schema.REVISIONS:
            return version
        if version is not None and _schema.UPLOADS in names:
            raise self._fail(
                f"was written by a newer assetcache (schema {version})",
                hint="; upgrade assetcache or use another ledger path",
            )
        # Empty, or only an Alembic stamp at base (a ledger downgraded to nothing).
        if version is None and not {n for n in names if not n.startswith("sqlite_")} - {
            "alembic_version"
        }:
            return None
        raise self._fail(
            "is an SQLite database, but not an assetcache ledger, and was left untouched",
            hint="; use another ledger path",
        )

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
        # Nothing here writes to the file: the first connection may be inspecting a file that
        # is not a ledger (WAL is switched on in _use_wal, once the file is known).
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
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
            return "; the file is read-only: make it writable or use another ledger path"
        if not os.access(os.path.dirname(self.path), os.W_OK):
            return "; its directory is not writable (SQLite needs it for the WAL files)"
        return ""

    @contextlib.contextmanager
    def _checkout(self) -> Iterator[sqlite3.Connection]:
        """A connection for this block, from the pool or new; returned (or closed) after."""
        with self._guard:
            if self._closed:
                raise self._fail("is closed")
            if self._broken_by_fork:
                raise self._fail(
                    "was in use by another thread when this process was forked, so SQLite "
                    "cannot be used safely here",
                    hint="; open a new cache in the child process",
                )
            conn = self._idle.pop() if self._idle else None
            self._in_use += 1
        try:
            if conn is None:
                conn = self._new_connection()
            yield conn
        finally:
            with self._guard:
                self._in_use -= 1
                keep = (
                    conn is not None and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS
                )
                if keep and conn is not None:
                    self._idle.append(conn)
            if not keep and conn is not None:
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

    def _decoded(self, rows: Iterable[tuple[Any, ...]]) -> list[Asset]:
        """Rows as Assets; a value that is not ours (another program wrote it) is refused."""
        try:  # around the whole loop: free in 3.11 until something raises
            return [asset_from_row(row) for row in rows]
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: BaseException) -> LedgerError:
        return self._fail(
            "has a row assetcache cannot read",
            exc,
            hint="; another program wrote it: delete or fix that row, or move the ledger "
            "aside to start a new one (its content is then uploaded again when needed)",
        )

    def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None:
        """The latest-expiring credible upload of this content to this account, live or not.

        Rows recorded while the clock ran ahead of ``now`` (default: the current time) are
        skipped (see ``Asset.state``).
        """
        params = {"sha256": sha256, "email": email, **_credible_bounds(now)}
        with self._reading() as conn:
            row = conn.execute(_schema.SELECT_NEWEST, params).fetchone()
        if row is None:
            return None
        try:
            return asset_from_row(row)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from None

    def mirrored(
        self, sha256: str, email: str, *, now: datetime, seen_after: datetime
    ) -> Asset | None:
        """As a mirror of a shared ledger: the newest credible row of a key, if it was read
        from the shared ledger at ``seen_after`` or later."""
        params = {"sha256": sha256, "email": email, **_credible_bounds(now)}
        params["seen_after"] = _schema.to_db_time(seen_after)
        try:
            with self._reading() as conn:
                row = conn.execute(_schema.SELECT_MIRRORED, params).fetchone()
            return None if row is None else asset_from_row(row)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from None

    def mirror(self, sha256: str, email: str, asset: Asset | None, *, seen_at: datetime) -> None:
        """As a mirror: what the shared ledger answered for a key, read at ``seen_at`` (a revoked
        row is kept, as news that outranks anything read before it)."""
        stamp = _schema.to_db_time(seen_at)
        key = {"sha256": sha256, "email": email}
        with self.write() as conn:
            if conn.execute(_schema.SELECT_MIRROR_NEWS, {**key, "mirrored_at": stamp}).fetchone():
                return  # the mirror already holds later news of this key
            conn.execute(_schema.DELETE_MIRRORED, key)
            if asset is not None:
                params = {**_upload_params(asset), "mirrored_at": stamp}
                conn.execute(_schema.INSERT_MIRRORED, params)

    def async_side(self) -> None:
        """None: a local file has no asyncio driver; AsyncAssetCache uses worker threads."""
        return

    def spooled(self, limit: int) -> list[Asset]:
        """As a shared ledger's local file: the oldest uploads waiting to be recorded there."""
        with self._reading() as conn:
            return self._decoded(conn.execute(_schema.SELECT_SPOOLED, {"limit": limit}))

    def unspool(self, assets: Iterable[Asset]) -> None:
        """As a shared ledger's local file: these spooled uploads are recorded there now."""
        with self.write() as conn:
            conn.executemany(_schema.DELETE_UPLOAD, [{"id": a.id} for a in assets])

    def record(self, asset: Asset) -> Asset:
        """Insert a new upload row and return the asset with its id."""
        params = _upload_params(asset)
        with self.write() as conn:
            (row_id,) = conn.execute(_schema.RECORD_UPLOAD, params).fetchone()
        return replace(asset, id=row_id)

    def set_source(self, row_id: int, source: str, host: str) -> None:
        with self.write() as conn:
            conn.execute(_schema.UPDATE_SOURCE, {"id": row_id, "source": source, "host": host})

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
            return self._decoded(conn.execute(_schema.select_assets(*params), params))

    def export(self, *, email: str | None, live_after: datetime | None) -> Iterator[Asset]:
        """Every row (of ``email``, live after ``live_after`` when given), in id order, read
        in batches: memory stays bounded however large the ledger."""
        params: dict[str, Any] = {
            "email": email,
            "live_after": _db_time_or_none(live_after),
            "limit": PRUNE_BATCH,
            "after": 0,
        }
        while True:
            with self._reading() as conn:
                batch = self._decoded(conn.execute(_schema.SELECT_EXPORT_BATCH, params))
            if not batch:
                return
            yield from batch
            params["after"] = batch[-1].id

    def revoke(
        self, *, sha256: str | None, asset_ref: str | None, email: str | None, at: datetime
    ) -> list[Asset]:
        """Mark the live rows (expiring after ``at``, not yet revoked) of one content or one
        ref, maybe of one account, revoked at ``at``, in one transaction; returns them."""
        stamp = _schema.to_db_time(at)
        if sha256 is not None:
            query = _schema.SELECT_BY_CONTENT
            params = {"sha256": sha256, "email": email, "now": stamp}
        else:
            query = _schema.SELECT_BY_REF
            params = {"asset_ref": asset_ref, "email": email, "now": stamp}
        with self.write() as conn:
            rows = self._decoded(conn.execute(query, params))
            conn.executemany(
                _schema.REVOKE_UPLOAD, [{"id": a.id, "revoked_at": stamp} for a in rows]
            )
        return [replace(a, revoked_at=at) for a in rows]

    def merge(self, assets: Iterable[Asset]) -> list[MergeOutcome]:
        """Merge uploads in one transaction: each ``added`` (new here), ``revoked`` (held, and
        the import revokes it: a revocation is never lost) or ``skipped`` (nothing new)."""
        outcomes: list[MergeOutcome] = []
        with self.write() as conn:
            for asset in assets:
                params = _upload_params(asset)
                if conn.execute(_schema.MERGE_UPLOAD, params).rowcount:
                    outcomes.append("added")
                    continue
                held = conn.execute(_schema.SELECT_SAME_UPLOAD, params).fetchone()
                outcome = merge_outcome(held, asset)
                if outcome == "revoked":
                    conn.execute(_schema.REVOKE_UPLOAD, {"id": held[0], **_revoked(asset)})
                outcomes.append(outcome)
        return outcomes

    def prune(
        self,
        *,
        email: str | None,
        expired_before: datetime | None,
        uploaded_before: datetime | None,
        dry_run: bool,
        now: datetime | None = None,
    ) -> Iterator[Asset]:
        """Delete matching rows in batches, yielding each as it goes (bounded memory).

        Rows recorded while the clock ran ahead of ``now`` (default: the current time) always
        match.
        """
        params: dict[str, Any] = {
            "email": email,
            "expired_before": _db_time_or_none(expired_before),
            "uploaded_before": _db_time_or_none(uploaded_before),
            "limit": PRUNE_BATCH,
            "after": 0,
            **_credible_bounds(now),
        }
        while True:
            with self._reading() as conn:
                batch = self._decoded(conn.execute(_schema.SELECT_PRUNE_BATCH, params))
            if not batch:
                return
            if not dry_run:
                with self.write() as conn:
                    conn.executemany(_schema.DELETE_UPLOAD, [{"id": a.id} for a in batch])
            yield from batch
            params["after"] = batch[-1].id


#: The ledgers whose pools are held while a fork happens (set in _before_fork only).
_FORKING: list[Ledger] = []


def _before_fork() -> None:
    _FORKING[:] = list(_OPEN_LEDGERS)
    for ledger in _FORKING:
        ledger._before_fork()


def _after_fork_in_parent() -> None:
    for ledger in _FORKING:
        ledger._after_fork_in_parent()
    _FORKING.clear()


def _after_fork_in_child() -> None:
    for ledger in _FORKING:
        ledger._after_fork_in_child()
    _FORKING.clear()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _credible_bounds(now: datetime | None) -> dict[str, str]:
    """The :now and :latest bounds beyond which a row was recorded with the clock ahead."""
    moment = datetime.now(UTC) if now is None else now
    try:
        latest = moment + RETENTION
    except OverflowError:
        latest = datetime.max.replace(tzinfo=UTC)
    return {"now": _schema.to_db_time(moment), "latest": _schema.to_db_time(latest)}


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


def asset_from_row(row: tuple[Any, ...]) -> Asset:
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
        uploaded_at=_schema.from_db_time(uploaded),
        expires_at=_schema.from_db_time(expires),
        upload_id=upload_id,
        media_url=media,
        source=src,
        revoked_at=None if revoked is None else _schema.from_db_time(revoked),
        host=host,
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
        "revoked_at": _db_time_or_none(asset.revoked_at),
        "host": asset.host,
    }


MergeOutcome = Literal["added", "revoked", "skipped"]


def merge_outcome(held: tuple[Any, ...] | None, incoming: Asset) -> MergeOutcome:
    """What importing ``incoming`` does, given the (id, revoked_at) of the same upload held."""
    if held is None:
        return "added"
    if incoming.revoked_at is not None and held[1] is None:
        return "revoked"
    return "skipped"


def _revoked(asset: Asset) -> dict[str, Any]:
    return {"revoked_at": _db_time_or_none(asset.revoked_at)}


def _db_time_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else _schema.to_db_time(moment)


def _stat_values(entry: FileStat) -> tuple[Any, ...]:
    inode = _schema.to_sqlite_int(entry.inode)  # unsigned 64-bit on some filesystems
    values = (entry.path, entry.device, inode, entry.size, entry.mtime_ns, entry.ctime_ns)
    return (*values, entry.sha256, entry.recorded_ns)
