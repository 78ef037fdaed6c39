"""Whose turn it is on a process's one database session: upload-lease holders first.

A process shares one server session among its threads (``PostgresLedger``). Most of its
statements come from threads that only wait for another's upload (lease polls); a few come from
threads that hold a lease (renewals, the recording that releases it). When the server or a pooler
in front of it is congested, every statement waits, and a renewal queued behind this process's
own polls could miss its lease's expiry: another machine would then take the key over and upload
the same image again. So holders go first: a thread marked ``urgent`` takes the next turn before
any thread that is not. A plain ``threading.Lock`` promises no order at all.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class SessionTurn:
    """A lock with two classes of waiter: urgent ones (lease holders) are served first."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._busy = False
        self._urgent_waiting = 0
        self._mine = threading.local()

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        """Mark this thread's turns as urgent while inside (nests)."""
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1

    def is_urgent(self) -> bool:
        return getattr(self._mine, "depth", 0) > 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        urgent = self.is_urgent()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        with self._changed:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._busy or (not urgent and self._urgent_waiting):
                    if not blocking:
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._changed.wait(left)
                self._busy = True
                return True
            finally:
                if urgent:
                    self._urgent_waiting -= 1
                    if not self._urgent_waiting:
                        self._changed.notify_all()  # those who stood back may go

    def release(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()


class TurnLatency:
    """How long a statement on the session has taken lately, from asking for the turn to the
    answer: the congestion this process sees (its own queue, a pooler's, the server's).

    It rises at once and falls slowly, so that one quick answer in a congested minute does not
    make lease holders bet on quick answers. Lease waiters poll less often and holders claim
    longer leases while it is high (``leases``)."""

    #: How much of the old value a sample below it keeps.
    _DECAY = 0.9

    def __init__(self) -> None:
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        # A float assignment is atomic under the GIL; a lost sample between two threads is
        # harmless for a gauge.
        old = self.seconds
        self.seconds = seconds if seconds > old else old * self._DECAY + seconds * (1 - self._DECAY)

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.add(time.monotonic() - began)
