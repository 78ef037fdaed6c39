"""Single flight: at most one upload of a given (content, email) at a time on this machine.

Every resolver that needs an upload first takes the key's lock, then looks in the ledger again:
whoever waited finds the row the first one recorded and does not upload. The lock is two
layers:

- an in-process lock per stripe, so threads and asyncio tasks of one process queue cheaply;
- ``flock`` on a lock file per stripe in ``<ledger>.locks/``, so processes queue too. The kernel
  releases an flock when its holder dies, even by SIGKILL, so a crashed process never blocks
  the others: no lease to expire, no stale lock to clean up.

Keys map onto a fixed number of stripes (lock files), so the directory stays bounded whatever
the number of assets; two keys sharing a stripe only means they upload one after the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final

STRIPES: Final = 4096
_POLL_MIN_S: Final = 0.002
_POLL_MAX_S: Final = 0.05


def _open_lock_file(path: str) -> int:
    """Open (creating it, and its directory, as needed) a lock file private to the user."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        # First use, or the directory was removed under a long-running process.
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return os.open(path, flags, 0o600)


@contextlib.contextmanager
def _held(
    thread_lock: contextlib.AbstractContextManager[object], open_fd: Callable[[], int]
) -> Iterator[None]:
    with thread_lock:
        fd = open_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def file_lock(path: str) -> contextlib.AbstractContextManager[None]:
    """An exclusive flock on one named file, outside the key stripes (e.g. for migrations)."""
    # No thread lock: flock already excludes other descriptors, in this process too.
    return _held(contextlib.nullcontext(), lambda: _open_lock_file(path))


class KeyLocks:
    """Per-key mutual exclusion across threads, tasks and processes sharing a ledger."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._thread_locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def _thread_lock(self, stripe: int) -> threading.Lock:
        with self._guard:
            return self._thread_locks.setdefault(stripe, threading.Lock())

    def _stripe(self, key: str) -> int:
        import hashlib  # locks are taken only on the upload path

        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        return int.from_bytes(digest[:4], "big") % STRIPES

    def _open(self, stripe: int) -> int:
        return _open_lock_file(os.path.join(self.directory, f"{stripe:04x}.lock"))

    def hold(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Block until this thread holds the key (the sync path)."""
        stripe = self._stripe(key)
        return _held(self._thread_lock(stripe), lambda: self._open(stripe))

    @contextlib.asynccontextmanager
    async def ahold(self, key: str) -> AsyncIterator[None]:
        """Wait (without blocking the event loop) until this task holds the key.

        Blocking calls are polled with non-blocking attempts instead of being pushed to a
        thread pool: a pool full of waiters could starve the holder that must finish first.
        """
        import asyncio  # only async callers pay for it

        stripe = self._stripe(key)
        thread_lock = self._thread_lock(stripe)
        delay = _POLL_MIN_S
        while not thread_lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)
        try:
            fd = self._open(stripe)
            try:
                delay = _POLL_MIN_S
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, _POLL_MAX_S)
                yield
            finally:
                os.close(fd)
        finally:
            thread_lock.release()
