"""A client-side deadline for sessions with a database server that may stop answering.

A server whose processes are stopped (SIGSTOP, a VM paused, a host wedged in swap) while its
kernel is alive keeps acknowledging TCP: keepalives and ``tcp_user_timeout`` see a healthy
peer, ``statement_timeout`` is never evaluated, and a client blocked in a read waits forever,
holding every waiter behind it. So this client keeps its own clock: a session is *watched*
while it is in use, each statement restarts its clock (``progress``), and a session that has
waited longer than its deadline gets its socket shut down. The blocked read then fails at once
with the driver's own connection error, the session is discarded, and the caller gets a
LedgerError, as for a server that went away.

``shutdown`` (not ``close``) is used because the driver still owns the descriptor: the socket
is cut for both, and the number cannot be reused by another file before the driver closes it.

One daemon thread per process checks the watched sessions once per ``_TICK_S``; arming and
disarming are dictionary operations, so a statement pays nanoseconds, not a thread. The same
thread closes sessions left idle (``close_when_idle``): a server's connection slots are shared
by every process of a farm, and one held by a process that has nothing to ask is one another
process cannot have.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

#: How often the watchdog looks: the deadline is honoured to within this.
_TICK_S: Final = 0.25


class Watchdog:
    """Cuts the socket of a watched session that has waited past its deadline."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._watched: dict[int, tuple[float, float, Callable[[], int]]] = {}
        self._cut: set[int] = set()
        #: Idle sessions: id -> (when to close, the closer). The closer decides under its own
        #: lock whether the session is still idle; it runs outside this one.
        self._idle: dict[int, tuple[float, Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @contextlib.contextmanager
    def watching(
        self, key: object, socket_of: Callable[[], int], deadline_s: float
    ) -> Iterator[None]:
        """Watch ``key``'s session (``socket_of()`` gives its descriptor) while in the block."""
        ident = id(key)
        self._start()
        with self._guard:
            self._cut.discard(ident)
            self._watched[ident] = (time.monotonic() + deadline_s, deadline_s, socket_of)
        try:
            yield
        finally:
            with self._guard:
                self._watched.pop(ident, None)

    def progress(self, key: object) -> None:
        """A new statement on ``key``'s session: its clock starts again."""
        ident = id(key)
        with self._guard:
            entry = self._watched.get(ident)
            if entry is not None:
                self._watched[ident] = (time.monotonic() + entry[1], entry[1], entry[2])

    def was_cut(self, key: object) -> bool:
        """Whether ``key``'s session failed because the watchdog cut it (asked once)."""
        with self._guard:
            if id(key) in self._cut:
                self._cut.discard(id(key))
                return True
            return False

    def close_when_idle(self, key: object, after_s: float, close: Callable[[], None]) -> None:
        """Call ``close()`` once ``key``'s session has been idle for ``after_s`` (unless it is
        used again first: ``in_use``)."""
        self._start()
        with self._guard:
            self._idle[id(key)] = (time.monotonic() + after_s, close)

    def in_use(self, key: object) -> None:
        """``key``'s session is busy again: no idle close is due."""
        self._start()  # in a forked child, first a guard of its own (the parent's may be held)
        with self._guard:
            self._idle.pop(id(key), None)

    def _start(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread did not come along
            self._guard = threading.Lock()
            self._watched, self._cut, self._idle, self._thread = {}, set(), {}, None
            self._pid = os.getpid()
        if self._thread is not None:
            return
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="assetcache-session-deadline", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(_TICK_S)
            now = time.monotonic()
            # Cut under the lock: a session leaving ``watching`` meanwhile is either cut before
            # it leaves (and ``was_cut`` says so) or not at all, never after it was pooled.
            with self._guard:
                due = [(i, e[2]) for i, e in self._watched.items() if e[0] <= now]
                for ident, socket_of in due:
                    del self._watched[ident]
                    self._cut.add(ident)
                    _shut_down(socket_of)
                idle = [(i, e[1]) for i, e in self._idle.items() if e[0] <= now]
                for ident, _ in idle:
                    del self._idle[ident]
            for _, close in idle:
                with contextlib.suppress(Exception):  # a closer that fails leaves a session open
                    close()


def _shut_down(socket_of: Callable[[], int]) -> None:
    with contextlib.suppress(Exception):  # already closed, or never connected: nothing to cut
        duplicate = os.dup(socket_of())
        with socket.socket(fileno=duplicate) as sock:
            sock.shutdown(socket.SHUT_RDWR)


WATCHDOG: Final = Watchdog()
