"""A congested shared ledger must not cost a second upload (issue #17, seen in CI: a farm
behind a busy PgBouncer uploaded 22 times for 20 images).

Under congestion every statement waits. A lease holder's renewal queued behind its own
process's polls (threads that only wait for other images) could then miss its expiry, and
another machine would take the key over and upload again. So:

- on a process's one session, the threads that hold a lease go before those that only wait
  (``SessionTurn``), whatever order they asked in;
- the process measures how long its statements take (``TurnLatency``): it rises at once and
  falls slowly;
- while statements are slow, leases last longer (``lease_seconds``, bounded by LEASE_MAX_S) and
  waiters poll less often, so that a renewal that must queue still lands in time.
"""

from __future__ import annotations

import threading
import time

import pytest

from assetcache.ledger import leases as _leases
from assetcache.ledger.leases import LEASE_MAX_S, LEASE_S, Lease, lease_seconds
from assetcache.ledger.session_turn import SessionTurn, TurnLatency


def _wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_lease_holder_takes_the_next_turn_before_threads_that_asked_earlier() -> None:
    turn = SessionTurn()
    order: list[str] = []
    waiting: list[str] = []

    def use(name: str, urgent: bool) -> None:
        def go() -> None:
            assert turn.acquire(timeout=10)
            order.append(name)
            turn.release()

        waiting.append(name)
        if urgent:
            with turn.urgent():
                go()
        else:
            go()

    assert turn.acquire()  # the session is busy
    pollers = [threading.Thread(target=use, args=(f"poll{i}", False)) for i in range(3)]
    for poller in pollers:
        poller.start()
    _wait_until(lambda: len(waiting) == 3)
    time.sleep(0.05)  # the pollers are inside acquire(), queued
    holder = threading.Thread(target=use, args=("renewal", True))
    holder.start()
    _wait_until(lambda: len(waiting) == 4)
    time.sleep(0.05)
    turn.release()
    for thread in [*pollers, holder]:
        thread.join(10)
    assert order[0] == "renewal", order
    assert sorted(order[1:]) == ["poll0", "poll1", "poll2"]


def test_a_turn_not_given_within_its_timeout_is_refused_and_the_waiters_go_on() -> None:
    turn = SessionTurn()
    assert turn.acquire()
    began = time.monotonic()
    with turn.urgent():
        assert turn.acquire(timeout=0.05) is False
    assert time.monotonic() - began >= 0.05
    assert turn.acquire(blocking=False) is False
    turn.release()
    # An urgent waiter that gave up leaves no trace: ordinary threads are served again.
    assert turn.acquire(blocking=False) is True
    turn.release()


def test_urgency_is_per_thread_and_nests() -> None:
    turn = SessionTurn()
    seen: list[bool] = []
    with turn.urgent():
        with turn.urgent():
            assert turn.is_urgent()
        assert turn.is_urgent()
        other = threading.Thread(target=lambda: seen.append(turn.is_urgent()))
        other.start()
        other.join()
    assert not turn.is_urgent()
    assert seen == [False]


def test_the_latency_gauge_rises_at_once_and_falls_slowly() -> None:
    gauge = TurnLatency()
    gauge.add(8.0)
    assert gauge.seconds == 8.0
    gauge.add(0.01)
    assert 7.0 < gauge.seconds < 8.0  # one quick answer in a congested minute is not calm
    for _ in range(200):
        gauge.add(0.01)
    assert gauge.seconds < 0.02


@pytest.mark.parametrize("latency", [0.0, 0.5, 3.0, 10.0, 1e6])
def test_leases_last_longer_while_statements_are_slow_within_a_bound(latency: float) -> None:
    seconds = lease_seconds(latency)
    assert LEASE_S <= seconds <= LEASE_MAX_S
    if latency == 0.0:
        assert seconds == LEASE_S
    if latency >= 3.0:
        # A renewal that waits this long still lands before the lease it renews runs out.
        assert seconds - _leases.RENEW_S > min(latency, LEASE_MAX_S / 2)
    gauge = TurnLatency()
    gauge.add(latency)
    assert Lease("a" * 64, "x@example.com", latency=gauge).params["lease_s"] == seconds


class _FakeLedger:
    def __init__(self, latency: float, scarce: bool = False) -> None:
        self.latency = TurnLatency()
        self.latency.add(latency)
        self._scarce = scarce

    def slots_scarce(self) -> bool:
        return self._scarce


@pytest.mark.parametrize(
    ("latency", "scarce", "expected"),
    [(0.0, False, 0.25), (0.0, True, 1.0), (0.2, False, 0.8), (5.0, False, 2.0), (5.0, True, 2.0)],
)
def test_waiters_poll_less_often_while_statements_are_slow(
    latency: float, scarce: bool, expected: float
) -> None:
    locks = _leases.LeaseLocks(_FakeLedger(latency, scarce))  # type: ignore[arg-type]
    assert locks._poll_max() == pytest.approx(expected)
