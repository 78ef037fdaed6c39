"""The SQLite ledger file: found (a path's real file, or this machine's file for a shared
ledger), checked, opened, pooled and kept safe across ``fork``, with the reads a cache hit
makes. ``sqlite.Ledger`` builds everything else on it.

The console script answers a cache hit with this module, ``_hit.py`` and the stat cache
(``content/stat_cache.py``, whose rows are read here) alone, so it imports nothing that a hit
does not need: no ``contextlib``, ``threading``, ``weakref``, ``typing`` or
``dataclasses`` (tests/test_entry.py pins it). That is why locks come from ``_thread``, the
open-ledger set from ``_weakrefset`` (what ``weakref.WeakSet`` is), and the ``with`` blocks are
small classes rather than ``contextlib.contextmanager``. See ``sqlite.py`` for the
SQLite choices (WAL, busy timeout, BEGIN IMMEDIATE, look before changing anything, ownership,
resolved paths, no connection across fork).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from _thread import allocate_lock
from _weakrefset import WeakSet
from datetime import UTC, datetime

from .. import _rules
from .._errors import LedgerError
from .._owner import make_private_dirs, require_own
from ..content import stat_cache
from . import schema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Final

    from ..content.stat_cache import FileStat

    #: An upload row as read, in ``schema.UPLOAD_COLUMNS`` order.
    Row = tuple[Any, ...]

BUSY_TIMEOUT_S: Final = 30.0
#: Idle connections kept for reuse; more threads than this just open and close their own.
MAX_IDLE_CONNECTIONS: Final = 8

_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
#: The first bytes of every SQLite database file.
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
#: Files SQLite keeps beside a database and reads back into it.
_COMPANIONS: Final = ("-wal", "-shm", "-journal")
#: Connections a forked child inherited: never used, never closed (see forget_inherited).
_INHERITED: list[sqlite3.Connection] = []
#: Every open ledger, for the fork hooks below.
_OPEN_LEDGERS: WeakSet[LedgerFile] = WeakSet()
#: The descriptor each ledger file open in this process was checked on, by (device, inode):
#: ``[users, descriptor, ...]``, users being the LedgerFiles open on it. Closing ANY
#: descriptor of a file drops EVERY POSIX lock this process holds on it, SQLite's included
#: (SQLite's documented hazard), and a process whose lock is gone still reads and writes the
#: file while the others cannot see it: the next to close it thinks itself the last, and
#: checkpoints and deletes the WAL and -shm under it (lost writes, "disk I/O error", a damaged
#: file). So one descriptor per file, shared by every LedgerFile on it, closed only once the
#: last of them and all their connections are closed. Guarded by _FILES_GUARD.
_FILES: dict[tuple[int, int], list[int]] = {}
_FILES_GUARD = allocate_lock()


def ledger_path(location: str) -> str:
    """The real filesystem path for a ledger location (a path, or a ``sqlite:////abs/path`` URL).

    Symlinks are resolved, so every name of one ledger gives one path, and so one WAL (SQLite
    keeps it beside the name it is given), one lock folder (``<path>.locks``) and one single
    flight. Hard links cannot be resolved so: a hard-linked ledger is refused when opened.
    """
    if "://" not in location:
        return _real(location)
    scheme, _, rest = location.partition("://")
    if scheme.split("+")[0] != "sqlite":
        raise LedgerError(
            f"unsupported ledger URL scheme {scheme!r}: a ledger is a file path, a sqlite:/// "
            "URL (SQLite on this machine) or a postgresql:// URL (a ledger shared by machines)",
            path=without_password(location),
        )
    # sqlite:////absolute/path, as SQLAlchemy spells it.
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if path and path != ":memory:" and not path.startswith("/"):
        # SQLAlchemy reads sqlite:///tmp/x.db as the relative tmp/x.db, which is not what
        # anyone typing it means: refused, naming both spellings, rather than guessed.
        raise LedgerError(
            f"ledger URL {location}: three slashes name the relative path {path} "
            f"(SQLAlchemy's reading); write sqlite:////{path} for the absolute path /{path}, "
            f"or give the path itself ({path} or /{path})",
            path=location,
        )
    if not path or path == ":memory:":
        raise LedgerError(
            "an in-memory ledger would forget every upload when the process exits; "
            "give it a file path",
            path=location,
        )
    return _real(path)


def without_password(url: str) -> str:
    """A URL as it may be shown: for PostgreSQL, the target libpq connects to with every piece
    of its password masked (``pgurl.shown``); in any other URL a password (``user:secret@host``,
    ``?password=secret``) becomes ``***``."""

    from .pgurl import is_postgres

    if is_postgres(url):
        from .pgurl import shown

        return shown(url)
    return masked_userinfo(url)


def masked_userinfo(url: str) -> str:
    """Any URL with a password (``user:secret@host``, ``?password=secret``) as ``***``: the
    generic rule (and, for a PostgreSQL URL, the one versions before ``pgurl`` applied, which
    names their machine files)."""
    from urllib.parse import unquote

    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The user info taken to the last "@", so that no piece of a password with "@" shows.
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


def _real(path: str) -> str:
    # A missing ledger resolves through its existing parents: a new ledger in a symlinked
    # folder gets the same path as when it exists.
    return os.path.realpath(os.path.expanduser(path))


def machine_file(location: str) -> str:
    """This machine's SQLite file for a shared ledger: its stat cache, mirror, spool and lock
    folder, in the user cache dir. Named for the database the URL connects to (host and port
    of each server libpq tries, database, user: ``pgurl.identity``), so every spelling of one
    database shares one file, one mirror and one lock folder. The console script calls this on
    every hit: it parses the URL itself (no psycopg) and creates nothing."""
    import hashlib

    from .._config import cache_dir
    from .pgurl import ConninfoError, identity

    try:
        name = identity(location)
    except ConninfoError:  # no libpq reads it: no database to name; as older versions did
        return legacy_machine_file(location)
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return os.path.join(cache_dir(), f"shared-{digest}.db")


def legacy_machine_file(url: str) -> str:
    """The name this machine's file for ``url`` had before it was named for the database: a
    digest of the URL with its password masked, as that version masked it (``machine.py``
    adopts that file)."""
    import hashlib

    from .._config import cache_dir

    digest = hashlib.sha256(masked_userinfo(url).encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"shared-{digest}.db")


class LedgerFile:
    """An opened, current ledger file, with the reads and hints a cache hit needs.

    Thread-safe: each thread gets its own SQLite connection. ``sqlite.Ledger`` adds
    the single-flight locks and everything else the cache asks of a ledger.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self.path = ledger_path(location)
        # A small pool rather than one connection per thread: threads come and go (every
        # resolve_many batch has its own), and per-thread connections would leak descriptors.
        self._idle: list[sqlite3.Connection] = []
        self._guard = allocate_lock()
        self._closed = False
        self._in_use = 0  # connections checked out now
        self._broken_by_fork = False
        self._file_key: tuple[int, int] | None = None  # its entry in _FILES, until released
        fd = self._open_file()
        try:
            self._ensure_schema(fd)
        except BaseException:
            # A refused file keeps no connection, nor the -wal/-shm it made, nor (unless
            # another LedgerFile here uses it) the descriptor.
            self.close()
            raise
        _OPEN_LEDGERS.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

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
        self._guard = allocate_lock()

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
            _close_quietly(conn)

    def _after_fork_in_parent(self) -> None:
        self._guard.release()

    def _after_fork_in_child(self) -> None:
        # A connection another thread had checked out at fork time is open in this process
        # too, with the bookkeeping above: no connection opened here could be trusted.
        self._broken_by_fork = self._in_use > 0
        self._in_use = 0
        self._guard = allocate_lock()

    # -- opening -------------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException | None = None, hint: str = "") -> LedgerError:
        detail = f" ({exc})" if exc is not None else ""
        return LedgerError(f"ledger {self.path}: {what}{detail}{hint}", path=self.path)

    def _open_file(self) -> int:
        """A descriptor of the ledger file, created private if absent, else checked unchanged;
        held (see _FILES) until this LedgerFile is closed.

        Nothing existing is changed here: the file may turn out not to be a ledger.
        """
        self._check_folder()
        with _FILES_GUARD:  # so no other thread closes the file's descriptor meanwhile
            fd = self._open_or_create()
        try:
            for suffix in _COMPANIONS:
                self._check_companion(self.path + suffix)
        except BaseException:
            self._release_file()
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
        """Under _FILES_GUARD: the file's held descriptor, opening (or creating) it if this
        process holds none, checked and counted as used by this LedgerFile."""
        while True:
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                fd = self._create_file()
                if fd is None:
                    continue  # another process created it meanwhile: check it like any other
                self._hold(fd)
                return fd
            except OSError as exc:
                raise self._fail("cannot be opened", exc) from None
            # Before opening: opening a device or a FIFO can itself act (rewind a tape, block).
            self._check_kind(st)
            held = _FILES.get((st.st_dev, st.st_ino))
            if held is None:
                fd = self._open_existing()
            else:
                # Open here already, with connections maybe: opening (and one day closing)
                # another descriptor would drop their locks, so check the held one. It keeps
                # the inode alive, so its number is this very file's.
                fd = held[1]
                self._check_file(fd)
            self._hold(fd)
            return fd

    def _hold(self, fd: int) -> None:
        """Under _FILES_GUARD: count this LedgerFile as a user of ``fd``'s file."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        entry = _FILES.get(key)
        if entry is None:
            _FILES[key] = [1, fd]
        else:
            entry[0] += 1
            if fd not in entry[1:]:
                # The path was swapped for a file held here between the lstat and the open
                # (someone renaming in our own folder): this one cannot be closed before the
                # others either.
                entry.append(fd)
        self._file_key = key

    def _release_file(self) -> None:
        """This LedgerFile no longer uses its file (it is closed, and so are its connections):
        the last user closes the held descriptor, now that no lock here can be dropped."""
        with _FILES_GUARD:
            key, self._file_key = self._file_key, None
            if key is None:
                return
            entry = _FILES[key]
            entry[0] -= 1
            if entry[0]:
                return
            del _FILES[key]
            # Closed under the guard: a thread opening the file now waits, so no connection of
            # its can exist yet to lose its lock.
            for fd in entry[1:]:
                try:
                    os.close(fd)
                except OSError:
                    continue  # gone already: nothing more to release

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
            if st.st_nlink > 1:
                # SQLite keeps the WAL (and its index, -shm) beside the name it opens: processes
                # using two names of one file each see their own, so one's rows are invisible to
                # the other (its re-check uploads again) and are lost at the next checkpoint.
                # Symlinks are resolved to one name; hard links have no name to prefer.
                raise self._fail(
                    f"has {st.st_nlink} names (hard links), and SQLite keeps its write-ahead log "
                    "beside each name, so processes using different names would not see each "
                    "other's uploads (rows lost, images uploaded again)",
                    hint="; keep one name: remove the other links (a symbolic link is fine). A "
                    "backup made with hard links (cp -l, rsync --link-dest) is this same file, "
                    "not a copy: back the ledger up by exporting its rows instead",
                )
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
            # Safe to close: no LedgerFile here holds this file, so no connection of ours has it.
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
        if version == schema.HEAD:
            return
        # One process migrates; the others wait here, then find the schema current with a
        # plain read instead of each importing Alembic (a second of CPU) to learn the same.
        import contextlib  # only a ledger behind the code gets here

        from .locks import file_lock

        with contextlib.ExitStack() as held:
            # Without a place for the lock file (read-only directory), BEGIN IMMEDIATE in
            # _migrate still serialises the migration itself.
            migrating = os.path.join(self.path + ".locks", "migrate.lock")
            with contextlib.suppress(OSError):
                held.enter_context(file_lock(migrating, ledger=self.path))
            if self._schema_version() != schema.HEAD:
                self._migrate()
        if self._schema_version() != schema.HEAD:
            raise self._fail("migration did not reach the current schema")

    def _make_private(self, fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) & 0o077:
            # Readable by others (writable ones were refused): from now on only by the user.
            try:
                os.fchmod(fd, 0o600)
            except OSError:  # a read-only filesystem: reads still work
                return

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
        if version in schema.REVISIONS:
            return version
        if version is not None and schema.UPLOADS in names:
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
        """Bring the ledger to the current schema with Alembic, in one transaction."""
        # Imported here: a current ledger never pays for Alembic and SQLAlchemy.
        from .migrate import upgrade_to_head

        try:
            # BEGIN IMMEDIATE around the whole upgrade: processes opening a new ledger at once
            # queue on the write lock, and each one after the first finds the schema already
            # at head and does nothing.
            upgrade_to_head("sqlite://", self._new_connection, begin="BEGIN IMMEDIATE")
        except Exception as exc:
            raise self._fail("could not be migrated to the current schema", exc) from exc

    # -- connections ---------------------------------------------------------------------

    def _new_connection(self) -> sqlite3.Connection:
        # Nothing here writes to the file: the first connection may be inspecting a file that
        # is not a ledger (WAL is switched on in _use_wal, once the file is known).
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            # (sqlite3's ``timeout`` is SQLite's busy_timeout: no PRAGMA needed for it.)
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

    def _checkout(self) -> _Checkout:
        """``with``: a connection for this block, from the pool or new; returned (or closed)
        after."""
        return _Checkout(self)

    def _reading(self) -> _Checkout:
        """``with``: like ``_checkout``; an SQLite error in the block becomes a LedgerError."""
        return _Reading(self)

    def write(self) -> _Checkout:
        """``with``: a short write transaction that starts with BEGIN IMMEDIATE."""
        return _Writing(self)

    def _take(self) -> sqlite3.Connection:
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
        if conn is not None:
            return conn
        try:
            return self._new_connection()
        except BaseException:
            with self._guard:
                self._in_use -= 1
                release = self._closed and not self._in_use
            if release:
                self._release_file()
            raise

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._guard:
            self._in_use -= 1
            keep = not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS
            if keep:
                self._idle.append(conn)
            release = self._closed and not self._in_use
        if not keep:
            try:
                conn.close()
            finally:
                if release:  # the last connection of a closed ledger: now its descriptor
                    self._release_file()

    def close(self) -> None:
        """Close idle connections now; those in use close when their block ends (and then
        the file's descriptor, if no other LedgerFile here uses it)."""
        with self._guard:
            self._closed = True
            connections, self._idle = self._idle, []
            release = not self._in_use
        for conn in connections:
            _close_quietly(conn)
        if release:
            self._release_file()

    # -- what a cache hit reads (and the hints it may write) -----------------------------

    def newest_row(self, sha256: str, email: str, *, now: datetime | None = None) -> Row | None:
        """The latest-expiring credible, unrevoked upload row of this content to this account,
        live or not, as the columns of ``schema.UPLOAD_COLUMNS``.

        Rows recorded while the clock ran ahead of ``now`` (default: the current time) are
        skipped (see ``Asset.state``).
        """
        params = {"sha256": sha256, "email": email, **credible_bounds(now)}
        with self._reading() as conn:
            row: Row | None = conn.execute(schema.SELECT_NEWEST, params).fetchone()
        return row

    def mirrored_row(self, sha256: str, email: str, *, now: datetime) -> Row | None:
        """As a shared ledger's machine file: the newest credible, unrevoked row of a key this
        machine knows at ``now``: read from the shared ledger within ``mirror_window``, or
        spooled here (columns as ``newest_row``)."""
        params: dict[str, str | int] = {"sha256": sha256, "email": email}
        params.update(credible_bounds(now))
        params.update(mirror_window(now))
        with self._reading() as conn:
            row: Row | None = conn.execute(schema.SELECT_MIRRORED, params).fetchone()
        return row

    def set_source(self, row_id: int, source: str, host: str) -> None:
        with self.write() as conn:
            conn.execute(schema.UPDATE_SOURCE, {"id": row_id, "source": source, "host": host})

    # -- the stat cache's rows (content/stat_cache.py), on this file's connections -------

    def file_stat(self, path: str) -> FileStat | None:
        with self._reading() as conn:
            return stat_cache.read_row(conn, path)

    def put_file_stat(self, entry: FileStat) -> None:
        with self.write() as conn:
            stat_cache.write_row(conn, entry)


class _Checkout:
    """``with ledger._checkout() as conn``: a connection from the pool (or new) for the block,
    given back after. A class, as ``contextlib`` is not imported on a cache hit."""

    __slots__ = ("_conn", "_ledger")

    def __init__(self, ledger: LedgerFile) -> None:
        self._ledger = ledger
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        self._conn = self._ledger._take()
        return self._conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._ledger._give_back(conn)


class _Reading(_Checkout):
    """A checkout whose SQLite errors become a LedgerError that says what to do."""

    __slots__ = ()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        if isinstance(exc, sqlite3.Error):
            ledger = self._ledger
            raise ledger._fail("cannot be read", exc, hint=ledger._access_hint(exc)) from None


class _Writing(_Checkout):
    """A checkout inside BEGIN IMMEDIATE ... COMMIT; rolled back when the block fails."""

    __slots__ = ()

    def __enter__(self) -> sqlite3.Connection:
        conn = super().__enter__()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            super().__exit__(None, None, None)
            self._raise_for(exc)
            raise
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if exc is None:
                try:
                    conn.execute("COMMIT")
                except BaseException as failed:
                    _roll_back(conn)
                    self._raise_for(failed)
                    raise
            else:
                _roll_back(conn)
                self._raise_for(exc)
        finally:
            super().__exit__(None, None, None)

    def _raise_for(self, exc: BaseException) -> None:
        """An SQLite error becomes a LedgerError; anything else is left to propagate."""
        if isinstance(exc, sqlite3.Error):
            ledger = self._ledger
            raise ledger._fail("cannot be written", exc, hint=ledger._access_hint(exc)) from None


def _roll_back(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        return  # the transaction is gone with the failure: the original error is what matters


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        return  # closing what this process owns: nothing more to do about it


#: The ledgers whose pools are held while a fork happens (set in _before_fork only).
_FORKING: list[LedgerFile] = []


def _before_fork() -> None:
    _FILES_GUARD.acquire()  # so the child's _FILES is not caught halfway through a change
    _FORKING[:] = list(_OPEN_LEDGERS)
    for ledger in _FORKING:
        ledger._before_fork()


def _after_fork_in_parent() -> None:
    _FILES_GUARD.release()
    for ledger in _FORKING:
        ledger._after_fork_in_parent()
    _FORKING.clear()


def _after_fork_in_child() -> None:
    _FILES_GUARD.release()  # held by the thread that forked, which is this one
    for ledger in _FORKING:
        ledger._after_fork_in_child()
    _FORKING.clear()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def credible_bounds(now: datetime | None) -> dict[str, str]:
    """The :now and :latest bounds beyond which a row was recorded with the clock ahead."""
    moment = datetime.now(UTC) if now is None else now
    try:
        latest = moment + _rules.RETENTION
    except OverflowError:
        latest = datetime.max.replace(tzinfo=UTC)
    return {"now": schema.to_db_time(moment), "latest": schema.to_db_time(latest)}


def mirror_window(now: datetime) -> dict[str, str | int]:
    """The reads of a shared ledger this machine's mirror still answers from at ``now`` (the
    parameters of ``schema.SELECT_MIRRORED``, with ``credible_bounds``' ``:now``): those made
    within MIRROR_TTL by the wall clock (``now``; a stamp later than it, made while the clock
    ran ahead, is no answer) and by the machine clock (``_rules.machine_ns``: however the wall clock
    jumped since, in either direction, a row read more than MIRROR_TTL ago is read again).
    ``PostgresLedger`` and the console script's lean ``ref`` both answer by it."""
    ticks = _rules.machine_ns()
    return {
        "seen_after": schema.to_db_time(now - _rules.MIRROR_TTL),
        "seen_after_ns": ticks - _rules.MIRROR_TTL_NS,
        "now_ns": ticks,
    }


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
