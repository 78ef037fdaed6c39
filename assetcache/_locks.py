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

The lock folder and its files must be the user's own. Anyone who can open a lock file can hold
its flock and stall every upload; anyone who can write the folder can plant a symlink that
``O_CREAT`` would follow. So the folder is opened without following symlinks and checked on
its descriptor (owned by the user, writable by nobody else), each lock file is opened relative
to that descriptor with ``O_NOFOLLOW`` and checked on its own descriptor, and folders are
created 0700 level by level (``os.makedirs`` gives the parents umask's mode).

The ownership check (``require_own``) and the private folder maker (``make_private_dirs``) live
in ``_owner.py``: the ledger applies the same rules to its own files, on every cache hit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final

from ._errors import LedgerError
from ._owner import make_private_dirs, require_own

STRIPES: Final = 4096
_POLL_MIN_S: Final = 0.002
_POLL_MAX_S: Final = 0.05
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: O_NONBLOCK only keeps a planted FIFO from hanging the open: flock waits or not by LOCK_NB.
_LOCK_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC

#: Lock descriptors open now: fd -> (pid that opened it, device, inode). A child forked while
#: one is open shares its open file description, and with it the flock, until the child closes
#: its copy; ``KeyLocks.forget_inherited`` closes those copies. Plain dict operations are
#: atomic under the GIL, so no lock guards it (a lock here would itself need resetting).
_OPEN_LOCKS: dict[int, tuple[int, int, int]] = {}


def _open_lock_dir(directory: str) -> int:
    """A descriptor of the lock folder (created if missing), checked to be the user's own."""
    try:
        try:
            fd = os.open(directory, _DIR_FLAGS)
        except FileNotFoundError:
            # First use, or the folder was removed under a long-running process.
            make_private_dirs(directory)
            fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise LedgerError(
            f"lock folder {directory} is a symbolic link or not a folder: move it aside "
            "(assetcache makes a new one)",
            path=directory,
        ) from None
    try:
        require_own(os.fstat(fd), directory, "lock folder", 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_lock_file(path: str) -> int:
    """Open (creating it, and its folder, as needed) a lock file private to the user."""
    directory, name = os.path.split(path)
    dir_fd = _open_lock_dir(directory)
    try:
        # Relative to the checked folder's descriptor: the folder cannot be swapped meanwhile.
        fd = os.open(name, _LOCK_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise
        raise _not_a_lock_file(path) from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_a_lock_file(path)
        require_own(st, path, "lock file", 0o600)
    except BaseException:
        os.close(fd)
        raise
    _OPEN_LOCKS[fd] = (os.getpid(), st.st_dev, st.st_ino)
    return fd


def _not_a_lock_file(path: str) -> LedgerError:
    return LedgerError(
        f"lock file {path} is a symbolic link or not a regular file, so someone else put it "
        f"there: move the folder {os.path.dirname(path)} aside (assetcache makes a new one)",
        path=path,
    )


def _close_lock_file(fd: int) -> None:
    _OPEN_LOCKS.pop(fd, None)  # first: the number may be reused as soon as it is closed
    os.close(fd)  # closing the descriptor releases the flock


def _close_inherited_lock_files() -> None:
    """Close the copies of lock descriptors a parent process had open when it forked us.

    Never ``LOCK_UN``: that would release the parent's flock too. Only a descriptor still
    naming the same file is closed, in case this process reused the number since.
    """
    me = os.getpid()
    for fd, (pid, device, inode) in list(_OPEN_LOCKS.items()):
        if pid == me:
            continue
        _OPEN_LOCKS.pop(fd, None)
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (device, inode):
                os.close(fd)


# A child that never takes a lock itself must not keep its parent's flocks alive either.
os.register_at_fork(after_in_child=_close_inherited_lock_files)


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
            _close_lock_file(fd)


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

    def forget_inherited(self) -> None:
        """Call in a child process right after ``fork``: start with fresh locks.

        A thread lock held by a parent thread at fork time would stay held forever here (that
        thread does not exist in the child), and an inherited lock descriptor would keep the
        parent's flock alive after the parent lets go. Lock descriptors of every KeyLocks (and
        of ``file_lock``) that came from the parent are closed, never unlocked.
        """
        self._thread_locks = {}
        self._guard = threading.Lock()
        _close_inherited_lock_files()

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
                _close_lock_file(fd)
        finally:
            thread_lock.release()
