"""A machine's own SQLite file for a shared ledger (its stat cache, mirror and spool) under many
processes that come and go, while the PostgreSQL server refuses every connection.

A farm trial saw ``ledger …/shared-….db: cannot be read (disk I/O error)``. The cause:
opening a ledger file closed a descriptor of it (the one its checks were made on) after
SQLite had connected, and closing any descriptor of a file drops every POSIX lock the process
holds on it, SQLite's included. Such a process still had the file open but no longer showed
it: the next process to close it believed itself the last, checkpointed and deleted the WAL
and the -shm, and the first went on in files nobody else saw (lost writes, a damaged file,
I/O errors). These tests check that every process keeps SQLite's lock, that one process
closing the file leaves it working for the others, and a farm-like run of many processes,
some SIGKILLed mid-resolve, loses no write and sees no SQLite error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assetcache import AssetCache, LedgerError
from assetcache._demo import sample_png
from assetcache.ledger.sqlite_file import LedgerFile, machine_file

from .conftest import EMAIL

pytestmark = pytest.mark.slow

ROOT = str(Path(__file__).resolve().parent.parent)
WORKER = str(Path(__file__).with_name("machine_file_worker.py"))

#: Where SQLite takes its shared lock on a database file (the "locking" section of its
#: os.h, part of the file format): 510 bytes from 2 past the 1 GiB mark.
SHARED_FIRST = 0x40000000 + 2
SHARED_SIZE = 510


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A PostgreSQL URL whose port refuses every connection (bound, never listening: the
    kernel answers a connect with a reset, as a server out of slots ends each session)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        yield f"postgresql://farm@127.0.0.1:{port}/assetcache"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def _someone_holds_the_shared_lock(path: str) -> bool:
    """Whether another process holds SQLite's shared lock on ``path`` (probed from a process
    of its own: this one must not open and close the file, see the module docstring)."""
    probe = _python(
        "import errno, fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]))\n"
        "except OSError as exc:\n"
        "    sys.exit(3 if exc.errno in (errno.EAGAIN, errno.EACCES) else 1)\n",
        path,
        str(SHARED_FIRST),
        str(SHARED_SIZE),
    )
    assert probe.returncode in (0, 3), probe.stderr
    return probe.returncode == 3


def _stat_paths(path: str) -> set[str]:
    """The stat-cache rows of the file, as another process reads them."""
    read = _python(
        "import json, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "print(json.dumps([r[0] for r in conn.execute('SELECT path FROM file_stats')]))\n"
        "conn.close()\n",
        path,
    )
    assert read.returncode == 0, read.stderr
    return set(json.loads(read.stdout))


def _resolve_refused(cache: AssetCache, path: Path) -> None:
    """Resolve ``path``: hashed and remembered in the machine file, then the server refuses."""
    with pytest.raises(LedgerError, match="cannot be reached"):
        cache.resolve(path, email=EMAIL)


def test_every_process_with_the_file_open_holds_sqlites_lock_on_it(
    refused_url: str, tmp_path: Path
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(sample_png(4, 4, (1, 2, 3)))
    with AssetCache(db=refused_url) as cache:
        _resolve_refused(cache, image)
        assert _someone_holds_the_shared_lock(machine_file(refused_url))
    assert not _someone_holds_the_shared_lock(machine_file(refused_url))


def test_another_process_closing_the_file_leaves_it_working_for_this_one(
    refused_url: str, tmp_path: Path
) -> None:
    images = []
    for n in range(3):
        images.append(tmp_path / f"{n}.png")
        images[-1].write_bytes(sample_png(4 + n, 4, (n, 2, 3)))
    local = machine_file(refused_url)
    with AssetCache(db=refused_url) as cache:
        _resolve_refused(cache, images[0])
        # Another process opens the same file, resolves, and closes it: it is not the last.
        other = _python(
            "import sys\n"
            "from assetcache import AssetCache, LedgerError\n"
            "with AssetCache(db=sys.argv[1]) as cache:\n"
            "    try:\n"
            "        cache.resolve(sys.argv[2], email='me@example.com')\n"
            "    except LedgerError as exc:\n"
            "        assert 'cannot be reached' in str(exc), exc\n",
            refused_url,
            str(images[1]),
        )
        assert other.returncode == 0, other.stderr
        # Still in use here: its WAL and shared memory must still be the ones everyone uses.
        assert os.path.exists(local + "-wal") and os.path.exists(local + "-shm")
        _resolve_refused(cache, images[2])
        # What this process writes now, every other process sees.
        assert _stat_paths(local) == {str(p) for p in images}
    assert _stat_paths(local) == {str(p) for p in images}


def test_a_farm_machine_loses_no_write_and_sees_no_sqlite_error(
    refused_url: str, tmp_path: Path
) -> None:
    """Many processes on one machine, 4 threads each, over the same files and five of their
    own, the server refusing them all; some SIGKILL themselves mid-resolve, some are killed
    from outside while they start (opening the file), the others end normally."""
    shared = []
    for n in range(8):
        shared.append(str(tmp_path / f"shared-{n}.png"))
        Path(shared[-1]).write_bytes(sample_png(8, 8, (n, 9, 9)))
    folder = tmp_path / "own"
    folder.mkdir()
    rng = random.Random(17)
    env = dict(os.environ, PYTHONPATH=ROOT)
    running: list[tuple[subprocess.Popen[str], bool]] = []
    finished: list[tuple[subprocess.Popen[str], bool, str, str]] = []

    def reap(proc: subprocess.Popen[str], killed: bool) -> None:
        out, err = proc.communicate(timeout=120)
        finished.append((proc, killed, out, err))

    for ident in range(48):
        if len(running) == 12:  # at most 12 at once: wait for the oldest
            reap(*running.pop(0))
        roll = rng.random()
        die_after = rng.randrange(1, 14) if roll < 0.3 else -1
        proc = subprocess.Popen(
            [sys.executable, WORKER, refused_url, str(folder), str(ident), str(die_after), *shared],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed_from_outside = 0.3 <= roll < 0.4
        if killed_from_outside:
            # At once or after a moment: while it imports, opens the file or first resolves.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=rng.choice([0, 0.05, 0.1, 0.2]))
            proc.kill()
        running.append((proc, die_after >= 0 or killed_from_outside))
    for proc, killed in running:
        reap(proc, killed)

    unexpected: list[str] = []
    written: set[str] = set()
    for proc, killed, out, err in finished:
        if not killed:
            assert proc.returncode == 0 and not err, err
        for line in out.splitlines():
            answer = json.loads(line)
            if "done" in answer:
                written.update(answer["done"])
            elif "cannot be reached" not in answer.get("error", "cannot be reached"):
                unexpected.append(answer["error"])
    assert unexpected == []  # e.g. "cannot be read (disk I/O error)" from the machine file
    assert written  # some processes ended normally, having written their files' rows
    local = machine_file(refused_url)
    # Every row written by a process that ended normally is there for the others...
    assert written <= _stat_paths(local)
    # ... and the file is whole.
    with contextlib.closing(sqlite3.connect(local)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_two_ledgers_on_one_file_in_one_process_keep_the_lock_until_both_close(
    tmp_path: Path,
) -> None:
    """Closing one of two caches on the same file must not drop the other's lock."""
    path = str(tmp_path / "l.db")
    first = LedgerFile(path)
    second = LedgerFile(path)
    for ledger in (first, second):
        assert ledger.file_stat("/nothing") is None  # a read: SQLite takes its shared lock
    first.close()
    assert _someone_holds_the_shared_lock(path)
    assert second.file_stat("/nothing") is None
    second.close()
    assert not _someone_holds_the_shared_lock(path)


def test_opening_and_closing_ledgers_leaves_no_descriptor_open(tmp_path: Path) -> None:
    gc.collect()  # earlier tests' caches, closed by the collector, would close theirs here
    before = len(os.listdir("/proc/self/fd"))
    for n in range(40):
        ledger = LedgerFile(str(tmp_path / f"{n}.db"))
        again = LedgerFile(str(tmp_path / f"{n}.db"))
        with ledger.write() as conn:
            conn.execute("DELETE FROM file_stats")
        ledger.close()
        again.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_probe_sees_a_lock_held_by_another_process(tmp_path: Path) -> None:
    """The lock probe above is trustworthy: it sees a plain sqlite3 reader's shared lock."""
    path = str(tmp_path / "plain.db")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("SELECT * FROM t").fetchall()
        assert _someone_holds_the_shared_lock(path)
    assert not _someone_holds_the_shared_lock(path)
