"""The rules a shared-ledger waiter follows at each poll (``leases.Waiting``), shared by the
sync and asyncio paths: pure decisions, tested without a server.

- the first refused claim names the holder; a poll that finds another holder, or none, means
  the one waited for is done: look for its answer first (LOOK); the same holder: WAIT;
- a holder that is a dead process of this machine: TAKE its key;
- the lease holding our own token (a claim or take whose answer was lost): MINE;
- an impatient waiter (a batch's first try) never waits for a live holder: KeyBusy at the first
  refusal, or at any later poll or refused claim that shows one, even when it began by taking
  a dead holder's key.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from assetcache.ledger import leases
from assetcache.ledger.busy import KeyBusy
from assetcache.ledger.leases import Lease, Waiting


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _token(pid: int) -> str:
    host, _, _, ns, namespace = leases._this_process().rsplit(" ", 4)
    return f"{host} pid {pid} {ns} {namespace} 0123456789abcdef"


@pytest.fixture
def lease() -> Lease:
    return Lease.of("ab" * 32 + ":me@example.com")


ALIVE = "elsewhere pid 1 ns 0 feedfacefeedface"  # another machine's: never judged dead


def test_a_patient_waiter_waits_for_the_same_holder_and_looks_when_it_changes(
    lease: Lease,
) -> None:
    waiting = Waiting(lease, ALIVE)
    assert waiting.polled(ALIVE) == Waiting.WAIT
    assert waiting.polled("other pid 2 ns 0 0000000000000000") == Waiting.LOOK
    assert waiting.polled(None) == Waiting.LOOK  # the holder left
    assert waiting.polled(None) == Waiting.WAIT
    waiting.refused_by(ALIVE)  # a claim lost to another waiter: it is the holder now
    assert waiting.polled(ALIVE) == Waiting.WAIT


def test_a_dead_local_holder_is_taken_and_our_own_token_is_ours(lease: Lease) -> None:
    dead = _token(_dead_pid())
    waiting = Waiting(lease, dead)
    assert waiting.polled(dead) == Waiting.TAKE
    assert waiting.polled(lease.holder) == Waiting.MINE  # a take whose answer was lost
    assert Waiting(lease, lease.holder, patient=False).polled(lease.holder) == Waiting.MINE


def test_an_impatient_waiter_never_waits_for_a_live_holder(lease: Lease) -> None:
    with pytest.raises(KeyBusy):
        Waiting(lease, ALIVE, patient=False)
    with pytest.raises(KeyBusy):
        Waiting(lease, None, patient=False)  # refused by someone it could not see
    with pytest.raises(KeyBusy):
        Waiting.busy_unless_free(ALIVE)
    Waiting.busy_unless_free(None)  # free: go on and claim


def test_an_impatient_waiter_that_began_taking_a_dead_key_stops_once_a_live_holder_has_it(
    lease: Lease,
) -> None:
    dead = _token(_dead_pid())
    waiting = Waiting(lease, dead, patient=False)  # a dead holder's key may be taken...
    assert waiting.polled(None) == Waiting.LOOK  # ...or, gone, looked for and claimed
    with pytest.raises(KeyBusy):
        waiting.refused_by(ALIVE)  # another claimant got there first
    waiting = Waiting(lease, dead, patient=False)
    with pytest.raises(KeyBusy):
        waiting.polled(ALIVE)
