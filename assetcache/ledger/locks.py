"""Single flight: at most one upload of a given (content, email) at a time on this machine.

Every resolver that needs an upload first takes the key's lock, then looks in the ledger again:
whoever waited finds the row the first one recorded and does not upload. The lock is two
layers: an in-process lock per key, so threads and asyncio tasks of one process queue cheaply,
then a lock in ``<ledger>.locks/``, so processes queue too.

**One byte per key.** Each key is one byte of ``<ledger>.locks/keys.lock``, at an offset taken
from 62 bits of its sha256, locked with a Linux open-file-description lock (``F_OFD_SETLK``).
Such a lock, like ``flock``, belongs to the open file description: two descriptors exclude each
other even in one process, and the kernel drops the lock when the last descriptor closes, even
by SIGKILL, so a crashed process blocks nobody: no lease to expire, no stale lock to clean up.
Unlike classic POSIX locks (``F_SETLK``, ``lockf``) it is not owned by the process, nor dropped
when the process closes some other descriptor of the file. Two keys share a byte only if 62-bit
hashes collide: an unrelated image never waits for another's upload, and the folder holds one
file whatever the number of images. Without OFD locks (other POSIX systems, Linux before 3.15)
each key falls on one of ``STRIPES`` files (``0000.lock`` ... ``0fff.lock``), locked whole with
``flock``: there two keys may share a stripe and upload one after the other.

**Which folder.** ``<ledger>.locks`` is named after the ledger's real path (symlinks resolved),
the name SQLite is given and keeps its WAL beside: every process that shares the ledger's WAL
shares its locks. A ledger with hard links is refused before any lock is taken (each name
would have its own WAL, see ``LedgerFile._open_file``).

**Bounded waits.** A live holder keeps a key for one upload (its RetryPolicy's ``max_elapsed``)
and the re-check and recording around it; a stopped one (Ctrl-Z, SIGSTOP, a debugger) keeps it
for ever. So a waiter gives up after ``KeyLocks.wait_s`` (``LOCK_WAIT_S`` = 300 s: the default
180 s upload budget, plus 120 s for recording under SQLite's 30 s busy timeout and a loaded
machine; longer when the waiter's own policy allows longer uploads, see ``wait_for``) with a
``LedgerError`` naming the holder: its pid, command line, and whether it is stopped, found in
``/proc/*/fdinfo`` (an OFD lock has no owning pid: ``/proc/locks`` and ``F_OFD_GETLK`` say -1,
but each descriptor's fdinfo lists the locks held through it). Waiting is polled with backoff
(2 ms doubling to 50 ms): there is no blocking lock call with a timeout. Opening a ledger
waits at most ``MIGRATION_WAIT_S`` for another process migrating it.

**Whose files.** The lock folder and its files must be the user's own. Anyone who can open a
lock file can hold its locks and stall every upload; anyone who can write the folder can plant
a symlink that ``O_CREAT`` would follow. So the folder is opened without following symlinks and
checked on its descriptor (owned by the user, writable by nobody else), each lock file is opened
relative to that descriptor with ``O_NOFOLLOW`` and checked on its own descriptor, and folders
are created 0700 level by level (``os.makedirs`` gives the parents umask's mode). The ownership
check (``require_own``) and the private folder maker (``make_private_dirs``) live in
``_owner.py``: the ledger applies the same rules to its own files, on every cache hit.

**fork.** A child shares its parent's open lock descriptions until it closes its copies: an
at-fork hook closes them in the child at once, never unlocking (that would release the
parent's lock). A holder unlocks explicitly before closing, so a copy a child still has cannot
keep the key held.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Final, TypeVar

from .._errors import LedgerError
from .._owner import make_private_dirs, require_own
from .busy import KeyBusy

_T = TypeVar("_T")

#: The default RetryPolicy's budget for one upload (``RetryPolicy.max_elapsed``).
DEFAULT_UPLOAD_S: Final = 180.0
#: How long a waiter waits for a key's holder by default: an upload with the default budget,
#: plus 120 s for the re-check and the recording around it (SQLite's 30 s busy timeout, a
#: loaded machine). Read when a ledger is opened (tests shorten it).
LOCK_WAIT_S = DEFAULT_UPLOAD_S + 120.0
#: How long opening a ledger waits for another process migrating it (the whole Alembic
#: upgrade of a large ledger runs under that lock).
MIGRATION_WAIT_S = 600.0
#: Stripe files of the ``flock`` fallback (the same files and hash as before OFD locks, so
#: processes of either version exclude each other there).
STRIPES: Final = 4096
KEYS_FILE: Final = "keys.lock"

_POLL_MIN_S: Final = 0.002
_POLL_MAX_S: Final = 0.05
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: O_NONBLOCK only keeps a planted FIFO from hanging the open: locks wait or not by their call.
_LOCK_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
#: Offsets are 62-bit: a byte there never overflows a signed 64-bit ``off_t``.
_OFFSET_BITS: Final = 62

#: Lock descriptors open now: fd -> (pid that opened it, device, inode). A child forked while
#: one is open shares its open file description, and with it the lock, until the child closes
#: its copy; ``_close_inherited_lock_files`` closes those copies. Plain dict operations are
#: atomic under the GIL, so no lock guards it (a lock here would itself need resetting).
_OPEN_LOCKS: dict[int, tuple[int, int, int]] = {}
#: Whether this kernel has OFD locks; None until first asked (see ``_ofd``). Tests set it.
_OFD: bool | None = None


def wait_for(upload_s: float) -> float:
    """How long a waiter whose own RetryPolicy allows ``upload_s`` per upload waits for a key.

    A holder in another process may have any policy, and the waiter cannot see it: processes
    sharing a ledger usually share their settings, so a waiter whose own uploads may take
    longer than the default waits that much longer too; it never waits less than
    ``LOCK_WAIT_S``, so an impatient waiter does not give up on a holder with the default budget.
    """
    return LOCK_WAIT_S + max(0.0, upload_s - DEFAULT_UPLOAD_S)


def _ofd() -> bool:
    """Whether open-file-description locks work here (Linux 3.15 and later)."""
    global _OFD
    if _OFD is None:
        _OFD = hasattr(fcntl, "F_OFD_GETLK")
        if _OFD:
            # Asked about any file (the root folder is always there); only an older kernel
            # refuses the command itself, with EINVAL.
            try:
                fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
            except OSError:
                return True  # cannot ask: the first lock taken will tell
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock_struct(fcntl.F_WRLCK, 0))
            except OSError as exc:
                _OFD = exc.errno != errno.EINVAL
            finally:
                os.close(fd)
    return _OFD


def _flock_struct(kind: int, offset: int) -> bytes:
    """A ``struct flock`` for one byte at ``offset`` (``l_pid`` must be 0 for OFD locks).

    Native layout (short, short, off_t, off_t, pid_t); the trailing zeros cover the tail
    padding, since the kernel reads the whole struct from the buffer fcntl passes.
    """
    return struct.pack("hhqqi", kind, os.SEEK_SET, offset, 1, 0) + bytes(8)


class _Slot:
    """Where one key is locked: a byte of a lock file (OFD), or a whole file (flock)."""

    __slots__ = ("byte", "offset", "path")

    def __init__(self, path: str, offset: int, *, byte: bool) -> None:
        self.path = path
        self.offset = offset  # the key's hash, which names it in this process too
        self.byte = byte  # lock the byte at ``offset`` (OFD), else the whole file (flock)

    @classmethod
    def of(cls, folder: str, key: str) -> _Slot:
        """Where ``key`` is locked in the lock folder ``folder``."""
        import hashlib  # locks are taken only on the upload path

        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        offset = int.from_bytes(digest[:8], "big") >> (64 - _OFFSET_BITS)
        if _ofd():
            return cls(os.path.join(folder, KEYS_FILE), offset, byte=True)
        stripe = int.from_bytes(digest[:4], "big") % STRIPES
        return cls(os.path.join(folder, f"{stripe:04x}.lock"), offset, byte=False)

    @property
    def held_byte(self) -> int | None:
        """The byte a holder's lock covers, or None for the whole file."""
        return self.offset if self.byte else None

    def try_lock(self, fd: int) -> bool:
        try:
            if not self.byte:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK, self.offset))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def unlock(self, fd: int) -> None:
        # Explicit, so that a copy of the descriptor a forked child has not closed yet cannot
        # keep the key held (closing alone releases only with the last copy).
        if not self.byte:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_struct(fcntl.F_UNLCK, self.offset))


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
    os.close(fd)  # the last descriptor of its description: whatever it held is released


def _close_inherited_lock_files() -> None:
    """Close the copies of lock descriptors a parent process had open when it forked us.

    Never unlock: that would release the parent's lock too. Only a descriptor still naming the
    same file is closed, in case this process reused the number since.
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


# A child that never takes a lock itself must not keep its parent's locks alive either.
os.register_at_fork(after_in_child=_close_inherited_lock_files)


# -- who holds a lock ----------------------------------------------------------------------


def holders(fd: int, offset: int | None) -> list[int]:
    """The pids of processes holding a lock on the file open as ``fd`` that covers byte
    ``offset`` (any lock on it for None), from ``/proc/*/fdinfo``; best effort: [] without
    /proc, and other users' processes are not visible (their locks are not ours anyway)."""
    st = os.fstat(fd)
    file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            numbers = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for number in numbers:
            if _holds(pid, number, (st.st_dev, st.st_ino), file, offset):
                found.append(int(pid))
                break
    return found


def _holds(pid: str, number: str, identity: tuple[int, int], file: str, offset: int | None) -> bool:
    try:
        st = os.stat(f"/proc/{pid}/fd/{number}")
        if (st.st_dev, st.st_ino) != identity:
            return False
        with open(f"/proc/{pid}/fdinfo/{number}", encoding="ascii", errors="replace") as info:
            lines = info.read().splitlines()
    except OSError:
        return False
    for line in lines:
        # lock:	1: OFDLCK ADVISORY  WRITE -1 fe:00:2150003 4611686018427387909 4611686018427387909
        fields = line.split()
        if len(fields) < 5 or fields[0] != "lock:" or "->" in fields or fields[-3] != file:
            continue
        if offset is None:
            return True
        start, end = fields[-2], fields[-1]
        with contextlib.suppress(ValueError):
            if int(start) <= offset and (end == "EOF" or offset <= int(end)):
                return True
    return False


def describe(pid: int) -> tuple[str, bool]:
    """A process's command line (shortened) and whether it is stopped (SIGSTOP, Ctrl-Z, a
    debugger), from /proc; ("", False) where it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return "", False
    # One line: arguments' own newlines and tabs become spaces.
    command = " ".join(" ".join(w.decode("utf-8", "replace").split()) for w in words if w)
    if len(command) > 200:
        command = command[:199] + "…"
    return command, state in (b"T", b"t")


def _timed_out(ledger: str, what: str, waited: float, fd: int | None, slot: _Slot) -> LedgerError:
    """The error of a waiter that gave up: who holds the lock, and what to do about it."""
    pids = [] if fd is None else holders(fd, slot.held_byte)
    me = os.getpid()
    lead = f"ledger {ledger}: gave up after waiting {waited:g} s for {what}"
    if fd is None or pids[:1] == [me]:
        held = (
            f"held by another thread, task or cache of this very process (pid {me}); a live "
            "holder finishes within that time, so it may be stuck: retry, and report it if it "
            "recurs"
        )
    elif not pids:
        held = (
            "held by a process that could not be identified; it may be stopped (Ctrl-Z, "
            "SIGSTOP, a debugger): look for it (ps -o pid,stat,args), resume or end it, then retry"
        )
    else:
        pid = pids[0]
        command, stopped = describe(pid)
        who = f"pid {pid}" + (f" ({command})" if command else "")
        if stopped:
            held = (
                f"held by {who}, which is stopped (Ctrl-Z, SIGSTOP or a debugger), so its "
                f"upload cannot finish: resume it (fg, or kill -CONT {pid}) or end it, then retry"
            )
        else:
            held = (
                f"held by {who}, still running: a live holder finishes within that time with "
                "the same retry policy, so it may be stopped in a way /proc does not show (a "
                "frozen cgroup) or have a longer one; retry once it has finished"
            )
    return LedgerError(f"{lead}, {held}", path=ledger)


# -- holding -------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_held(slot: _Slot, deadline: float | None, on_expiry: _Expiry) -> Iterator[None]:
    """Hold ``slot``, polling with backoff until ``deadline`` (time.monotonic; None: KeyBusy
    at once if another process holds it)."""
    fd = _open_lock_file(slot.path)
    try:
        delay = _POLL_MIN_S
        while not slot.try_lock(fd):
            if deadline is None:
                raise KeyBusy(slot.path)
            left = deadline - time.monotonic()
            if left <= 0:
                raise on_expiry(fd, slot)
            time.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX_S)
        try:
            yield
        finally:
            slot.unlock(fd)
    finally:
        _close_lock_file(fd)


@contextlib.asynccontextmanager
async def _file_aheld(
    slot: _Slot, deadline: float | None, on_expiry: _Expiry
) -> AsyncIterator[None]:
    """As ``_file_held``, waiting on the event loop (never in a worker thread: a pool full of
    waiters could starve the holder that must finish first)."""
    import asyncio  # only async callers pay for it

    fd = _open_lock_file(slot.path)
    try:
        delay = _POLL_MIN_S
        while not slot.try_lock(fd):
            if deadline is None:
                raise KeyBusy(slot.path)
            left = deadline - time.monotonic()
            if left <= 0:
                raise on_expiry(fd, slot)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX_S)
        try:
            yield
        finally:
            slot.unlock(fd)
    finally:
        _close_lock_file(fd)


class _Expiry:
    """What a waiter that gave up raises (a class, for the type of the callbacks above)."""

    __slots__ = ("ledger", "wait_s", "what")

    def __init__(self, ledger: str, what: str, wait_s: float) -> None:
        self.ledger, self.what, self.wait_s = ledger, what, wait_s

    def __call__(self, fd: int | None, slot: _Slot) -> LedgerError:
        return _timed_out(self.ledger, self.what, self.wait_s, fd, slot)


def file_lock(
    path: str, *, ledger: str | None = None, what: str = "another process migrating it"
) -> contextlib.AbstractContextManager[None]:
    """An exclusive ``flock`` on one named file, outside the keys (e.g. for migrations); a
    waiter gives up after MIGRATION_WAIT_S with a LedgerError naming ``ledger`` (default: the
    path) and the holder, saying it waited for ``what``."""
    # No thread lock: flock already excludes other descriptors, in this process too.
    expiry = _Expiry(path if ledger is None else ledger, what, MIGRATION_WAIT_S)
    slot = _Slot(path, 0, byte=False)
    return _file_held(slot, time.monotonic() + MIGRATION_WAIT_S, expiry)


class _Turn:
    """The in-process queue of one key: a lock, and how many threads or tasks want it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class KeyLocks:
    """Per-key mutual exclusion across threads, tasks and processes sharing a ledger.

    ``directory`` is the lock folder (``<ledger>.locks``); ``ledger`` names the ledger in
    messages (default: the folder); ``wait_s`` is how long a waiter waits for a holder
    (default LOCK_WAIT_S, read now).
    """

    def __init__(
        self, directory: str, *, ledger: str | None = None, wait_s: float | None = None
    ) -> None:
        self.directory = directory
        self.ledger = directory if ledger is None else ledger
        self.wait_s = LOCK_WAIT_S if wait_s is None else wait_s
        self._turns: dict[int, _Turn] = {}
        self._guard = threading.Lock()
        self._expiry = _Expiry(self.ledger, "this image's upload lock", self.wait_s)

    def forget_inherited(self) -> None:
        """Call in a child process right after ``fork``: start with fresh locks.

        A thread lock held by a parent thread at fork time would stay held forever here (that
        thread does not exist in the child), and an inherited lock descriptor would keep the
        parent's lock alive if the parent died holding it. Lock descriptors of every KeyLocks
        (and of ``file_lock``) that came from the parent are closed, never unlocked.
        """
        self._turns = {}
        self._guard = threading.Lock()
        _close_inherited_lock_files()

    def slot(self, key: str) -> _Slot:
        """Where ``key`` is locked (tests look at it)."""
        return _Slot.of(self.directory, key)

    @contextlib.contextmanager
    def _turn(self, slot: _Slot) -> Iterator[threading.Lock]:
        """This process's lock for the key, kept in the table only while someone wants it."""
        with self._guard:
            turns = self._turns
            turn = turns.get(slot.offset)
            if turn is None:
                turn = turns[slot.offset] = _Turn()
            turn.users += 1
        try:
            yield turn.lock
        finally:
            with self._guard:
                turn.users -= 1
                if not turn.users and turns.get(slot.offset) is turn:
                    del turns[slot.offset]

    @contextlib.contextmanager
    def hold(
        self, key: str, look: Callable[[], _T | None] | None = None, *, patient: bool = True
    ) -> Iterator[_T | None]:
        """Block until this thread holds the key, or raise LedgerError after ``wait_s``.
        (``look`` is never asked: the kernel queues the waiters, and each looks once it holds
        the key, at the cost of a local read; see ``base.KeyLock``.)"""
        slot = self.slot(key)
        deadline = time.monotonic() + self.wait_s
        with self._turn(slot) as turn:
            if not patient and not turn.acquire(blocking=False):
                raise KeyBusy(key)
            if patient and not turn.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise self._expiry(None, slot)
            try:
                with _file_held(slot, deadline if patient else None, self._expiry):
                    yield None
            finally:
                turn.release()

    @contextlib.asynccontextmanager
    async def ahold(
        self,
        key: str,
        look: Callable[[], Awaitable[_T | None]] | None = None,
        *,
        patient: bool = True,
    ) -> AsyncIterator[_T | None]:
        """Wait (without blocking the event loop) until this task holds the key, or raise
        LedgerError after ``wait_s``. Polled with backoff, thread lock included."""
        import asyncio  # only async callers pay for it

        slot = self.slot(key)
        deadline = time.monotonic() + self.wait_s
        with self._turn(slot) as turn:
            delay = _POLL_MIN_S
            while not turn.acquire(blocking=False):
                if not patient:
                    raise KeyBusy(key)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._expiry(None, slot)
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, _POLL_MAX_S)
            try:
                async with _file_aheld(slot, deadline if patient else None, self._expiry):
                    yield None
            finally:
                turn.release()
