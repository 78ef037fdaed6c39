"""Single flight's locks (``_locks.KeyLocks``), with open-file-description locks and with the
``flock`` stripes used where those are missing: one key per holder, across descriptors of one
process and across processes; a waiter that gives up in time and names the holder; no wait
for another key."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assetcache import LedgerError
from assetcache.ledger import locks as _locks
from assetcache.ledger.locks import STRIPES, KeyLocks, file_lock, wait_for

ROOT = str(Path(__file__).resolve().parent.parent)

#: Holds ``KEY`` in the lock folder argv[1] (OFD locks when argv[2] is "1") until stdin closes.
HOLDER = """
import os, sys
sys.path.insert(0, os.environ["ROOT"])
from assetcache.ledger import locks as _locks
_locks._OFD = sys.argv[2] == "1"
with _locks.KeyLocks(sys.argv[1]).hold(sys.argv[3]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(params=["ofd", "flock"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of locking; OFD only where the kernel has it."""
    ofd = request.param == "ofd"
    if ofd and not _locks._ofd():
        pytest.skip("this kernel has no open-file-description locks")
    monkeypatch.setattr(_locks, "_OFD", ofd)
    return str(request.param)


@pytest.fixture
def folder(tmp_path: Path) -> str:
    return str(tmp_path / "l.db.locks")


@pytest.fixture
def holder(folder: str, mode: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding key "k"."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, folder, "1" if mode == "ofd" else "0", "k"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, ROOT=ROOT),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.communicate(timeout=30)  # closes its stdin: it lets go and exits


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        assert time.monotonic() < deadline, "the holder did not stop"
        time.sleep(0.01)


@pytest.mark.usefixtures("mode")
def test_two_descriptors_of_one_process_exclude_each_other(folder: str) -> None:
    # Two caches of one ledger in one process: their own in-process locks, one lock file.
    first = KeyLocks(folder, ledger="the ledger", wait_s=0.2)
    second = KeyLocks(folder, ledger="the ledger", wait_s=0.2)
    in_process = "held by another thread, task or cache of this"
    with first.hold("k"):
        with pytest.raises(LedgerError, match=in_process), second.hold("k"):
            pass
        # Another thread of the same cache waits the same way.
        with pytest.raises(LedgerError, match=in_process), first.hold("k"):
            pass
        with second.hold("k2" if _locks._OFD else other_stripe("k")):
            pass  # another key: no wait
    with second.hold("k"):
        pass


def other_stripe(key: str) -> str:
    """A key on another flock stripe than ``key``."""
    slot = KeyLocks("x").slot(key)
    return next(f"{key}{i}" for i in range(100) if KeyLocks("x").slot(f"{key}{i}").path != slot.path)


def test_keys_are_bytes_of_one_file_and_never_share_one(folder: str, mode: str) -> None:
    locks = KeyLocks(folder)
    slots = [locks.slot(f"{i:064x}:me@example.com") for i in range(STRIPES * 4)]
    if mode == "ofd":
        assert {s.path for s in slots} == {os.path.join(folder, "keys.lock")}
        assert len({s.offset for s in slots}) == len(slots)
        assert all(0 <= s.offset < 2**62 for s in slots)
    else:  # the stripes and names of the version before OFD locks, so both exclude each other
        key = "ab" * 32 + ":me@example.com"
        stripe = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % STRIPES
        assert locks.slot(key).path == os.path.join(folder, f"{stripe:04x}.lock")


def test_a_stopped_holder_fails_the_waiter_in_time_naming_it(
    folder: str, holder: subprocess.Popen[str]
) -> None:
    stop(holder)
    locks = KeyLocks(folder, ledger="/some/ledger.db", wait_s=0.5)
    with pytest.raises(LedgerError) as info, locks.hold("k"):
        pass
    message = str(info.value)
    assert message.startswith("ledger /some/ledger.db: gave up after waiting 0.5 s for")
    assert f"held by pid {holder.pid} (" in message and "import os, sys" in message
    assert "which is stopped" in message and f"kill -CONT {holder.pid}" in message
    assert info.value.path == "/some/ledger.db"
    holder.send_signal(signal.SIGCONT)
    holder.communicate(timeout=30)
    with locks.hold("k"):  # released by the holder's exit
        pass


def test_an_async_waiter_gives_up_in_time_too(folder: str, holder: subprocess.Popen[str]) -> None:
    stop(holder)
    locks = KeyLocks(folder, wait_s=0.5)

    async def wait() -> None:
        async with locks.ahold("k"):
            pass

    with pytest.raises(LedgerError, match=f"held by pid {holder.pid} .*which is stopped"):
        asyncio.run(asyncio.wait_for(wait(), 30))


def test_a_running_holder_is_named_as_running(folder: str, holder: subprocess.Popen[str]) -> None:
    held = KeyLocks(folder, wait_s=0.2).hold("k")
    with pytest.raises(LedgerError, match=f"held by pid {holder.pid} .*still running"), held:
        pass


@pytest.mark.usefixtures("mode")
def test_a_copy_of_the_holders_descriptor_does_not_keep_the_key(folder: str) -> None:
    # As a forked child's copy would, before its at-fork hook closes it: the holder unlocks
    # explicitly, so letting go does not wait for the last copy to close.
    locks = KeyLocks(folder, wait_s=0.2)
    with locks.hold("k"):
        (fd,) = _locks._OPEN_LOCKS
        copy = os.dup(fd)
    try:
        with KeyLocks(folder, wait_s=0.2).hold("k"):
            pass
    finally:
        os.close(copy)


def test_file_lock_gives_up_in_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_locks, "MIGRATION_WAIT_S", 0.2)
    path = str(tmp_path / "l.db.locks" / "migrate.lock")
    held = file_lock(path, ledger="/the/ledger.db")
    again = file_lock(path, ledger="/the/ledger.db")
    expected = "migrating it, held by .*this very process"
    with held, pytest.raises(LedgerError, match=expected), again:
        pass


def test_a_waiter_allows_for_its_own_upload_budget() -> None:
    assert wait_for(180.0) == _locks.LOCK_WAIT_S == 300.0
    assert wait_for(30.0) == 300.0  # never less: a holder may have the default budget
    assert wait_for(600.0) == 720.0
