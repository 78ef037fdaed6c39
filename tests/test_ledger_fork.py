"""After fork, a child drops what it inherited from the Ledger and KeyLocks without using it.

SQLite forbids using a connection across fork, and closing one is a use; a thread lock held by
a parent thread at fork time stays held forever in the child; a lock descriptor the child
inherited keeps the parent's flock alive after the parent lets go.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assetcache import Asset, LedgerError
from assetcache.ledger import locks as _locks
from assetcache.ledger import sqlite_file
from assetcache.ledger.locks import KeyLocks
from assetcache.ledger.sqlite import Ledger

from .conftest import EMAIL

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SHA = "cd" * 32

pytestmark = pytest.mark.slow


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(str(tmp_path / "l.db"))
    opened.record(
        Asset(
            asset_ref="r",
            sha256=SHA,
            email=EMAIL,
            content_type="image/png",
            size=1,
            uploaded_at=NOW - timedelta(days=1),
            expires_at=NOW + timedelta(days=29),
            upload_id="u",
            media_url="m",
        )
    )
    yield opened
    opened.close()


def in_child(body: Callable[[], bool], *, then: Callable[[], None] = lambda: None) -> int:
    """Fork; the child runs ``body`` and exits 0 if it returned True. ``then`` runs in the
    parent right after the fork. Returns the child's exit status (-9 if it hung)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 3
        try:
            code = 0 if body() else 1
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    then()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -9


def test_forget_inherited_drops_connections_without_closing_them(ledger: Ledger) -> None:
    assert ledger.newest(SHA, EMAIL, now=NOW) is not None
    inherited = list(ledger._idle)
    assert inherited
    held = ledger._guard
    held.acquire()  # as if a parent thread held it at fork time
    try:
        ledger.forget_inherited()
    finally:
        held.release()
    assert ledger._idle == []
    assert all(any(c is conn for c in sqlite_file._INHERITED) for conn in inherited)
    assert inherited[0].execute("SELECT 1").fetchone() == (1,)  # never closed
    assert ledger.newest(SHA, EMAIL, now=NOW) is not None  # a new guard, a new connection
    assert all(conn is not inherited[0] for conn in ledger._idle)
    for conn in inherited:  # this test's own process: closing them here is fine
        sqlite_file._INHERITED.remove(conn)
        conn.close()


def test_no_connection_is_open_across_fork(ledger: Ledger) -> None:
    """Idle connections are closed just before fork (SQLite's per-process lock bookkeeping
    would otherwise be inherited); the child opens its own, the parent reopens as needed."""
    assert ledger.newest(SHA, EMAIL, now=NOW) is not None
    inherited = list(ledger._idle)
    assert inherited

    def child() -> bool:
        empty_at_start = ledger._idle == []
        found = ledger.newest(SHA, EMAIL, now=NOW)
        fresh = all(conn not in inherited for conn in ledger._idle)
        return empty_at_start and found is not None and fresh

    assert in_child(child) == 0
    assert ledger._idle == []  # closed in the parent too, before the fork
    assert ledger.newest(SHA, EMAIL, now=NOW) is not None
    conn = sqlite3.connect(ledger.path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_a_child_forked_while_a_connection_was_in_use_refuses_the_ledger(
    ledger: Ledger,
) -> None:
    in_use = threading.Event()
    done = threading.Event()

    def reader() -> None:
        with ledger._reading():
            in_use.set()
            done.wait(20)

    thread = threading.Thread(target=reader)
    thread.start()
    assert in_use.wait(10)

    def child() -> bool:
        try:
            ledger.newest(SHA, EMAIL, now=NOW)
        except LedgerError as exc:
            return "open a new cache in the child" in str(exc)
        return False

    try:
        assert in_child(child) == 0
    finally:
        done.set()
        thread.join()
    assert ledger.newest(SHA, EMAIL, now=NOW) is not None  # the parent is unaffected


def test_a_forked_child_gets_a_key_its_parent_held_at_fork_time(tmp_path: Path) -> None:
    locks = KeyLocks(str(tmp_path / "l.db.locks"))
    held, release = threading.Event(), threading.Event()

    def parent_thread() -> None:
        with locks.hold("k"):
            held.set()
            release.wait(20)

    holder = threading.Thread(target=parent_thread)
    holder.start()
    assert held.wait(10)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def child() -> bool:
        locks.forget_inherited()
        os.write(ready_w, b"r")
        os.read(go_r, 1)  # the parent has let go of the key by now
        # Without fresh thread locks this waits on the dead parent thread's lock until it
        # gives up; the inherited descriptor is closed, never unlocked.
        with locks.hold("k"):
            return True

    def parent_lets_go() -> None:
        os.close(ready_w)  # so that a child dying early reads as end of file here
        ready = os.read(ready_r, 1)
        release.set()
        holder.join(10)
        if ready:
            os.write(go_w, b"g")

    try:
        status = in_child(child, then=parent_lets_go)
    finally:
        release.set()
        holder.join(10)
        for fd in (ready_r, go_r, go_w):
            os.close(fd)
    assert status == 0


def test_forget_inherited_leaves_this_process_locks_alone(tmp_path: Path) -> None:
    locks = KeyLocks(str(tmp_path / "l.db.locks"))
    with locks.hold("k"):
        mine = dict(_locks._OPEN_LOCKS)
        locks.forget_inherited()  # as a cache would, lazily, in a process that did not fork
        for fd in mine:
            os.fstat(fd)  # still open
        slot = locks.slot("k")
        other = os.open(slot.path, os.O_RDWR)
        try:
            assert not slot.try_lock(other)  # and still locked
        finally:
            os.close(other)
    assert not set(mine) & set(_locks._OPEN_LOCKS)  # released: no longer tracked
