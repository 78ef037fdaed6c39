"""Single flight across machines on a shared ledger: a lease row per (content, account) key.

A resolver about to upload *claims* its key: one autocommit statement inserts a row in
``upload_leases`` holding a token of its own and an expiry ``LEASE_S`` ahead on the **server's
clock**, or takes over a row whose expiry has passed. While the upload runs the holder renews
the expiry every ``RENEW_S``; the transaction that records the upload deletes the lease, so a
waiter that finds the key free finds the row too. Waiters poll with backoff (``Waiting``): a
refused claim names the holder; later polls read the lease row (a read queues behind no lock)
and tell whether the holder died (below) or finished: when the holder changes or leaves, the
one the waiter waited for is done, and the waiter asks the caller's ``look`` for the answer
before it claims. Without that, the waiters of a popular key would each claim its row at every
poll (queueing on the row's lock behind each other and the holder's renewals), then take the
key one after another only to find the row and let go.

Why rows and not ``pg_advisory_lock``: an advisory lock lives in a server session, so a process
waiting on one needs a session of its own for as long as it waits, a transaction-pooling
PgBouncer hands that session to someone else between statements (breaking single flight), and
the lock cannot say who holds it. A lease is plain data: every statement may run on any
session (one short-lived session per process serves claims, renewals and reads alike), it works
through any pooler, and a waiter can name the holder.

The bounds, all on the server's clock (no machine's clock matters):

- a holder of this machine killed (``kill -9``) is taken over within one poll: its token
  names its host, pid and pid namespace, and a waiter of the same machine that finds that
  process gone takes the key from that exact token;
- a holder of another machine killed, stopped (``SIGSTOP``, a debugger, a paused VM) or cut off
  stops renewing; its key is taken over at most ``LEASE_S`` (20 s) after its last renewal,
  plus one poll. While the ledger is congested (a busy pooler or server: every statement
  waits) leases are longer, ``LEASE_S`` plus ``_LATENCY_FACTOR`` times the holder's recent
  statement latency, at most ``LEASE_MAX_S``: a renewal that must queue still lands in time;
- a holder that comes back after that records its upload as its own row, but marked revoked at
  once (``PostgresLedger.record``): others were given the taker's ref, and a ref nobody else was
  given must never become anyone's answer. That costs one extra upload;
- a healthy holder whose renewals cannot reach the database for ``LEASE_S`` (the server
  restarted, the network blinked) may be taken over the same way, with the same cost.

Threads and asyncio tasks of one process queue on an in-process lock per key first, so a
process never polls the server for a key it is already uploading. A holder's statements go before
its process's waiters' on the process's session (``SessionTurn``), and waiters poll less often
while statements are slow (``TurnLatency``): under congestion the polls of those who only wait
must not starve the renewals of the one who uploads. Processes of one machine
do not take a machine-wide lock: a stopped local holder must be taken over like any other, and
waiting costs statements, not sessions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from .._errors import LedgerError
from .busy import KeyBusy

_T = TypeVar("_T")

if TYPE_CHECKING:
    from .session_turn import TurnLatency

#: How long a claim lasts without renewal: the takeover bound for a holder that died, stopped
#: or vanished. Long enough that a database blinking for a few seconds costs nothing.
LEASE_S: Final = 20.0
#: How often a holder renews: four chances before its lease runs out.
RENEW_S: Final = 5.0
#: The longest lease: the takeover bound for a dead holder even on a congested ledger.
LEASE_MAX_S: Final = 120.0
#: Under congestion a lease lasts LEASE_S plus this many statement latencies, and a waiter
#: polls at most once per this many (so that waiters keep a small share of the queue).
_LATENCY_FACTOR: Final = 4.0
#: How long a waiter polls for a key held elsewhere before giving up: longer than any upload
#: can take (RetryPolicy's default budget is 180 s), so a live holder always finishes.
LOCK_WAIT_S: Final = 600.0
_POLL_MIN_S: Final = 0.01
#: The slowest poll: a waiter learns of a finished upload within this (plus the statement);
#: slower while the server is short of slots (fewer statements from those who only wait).
_POLL_MAX_S: Final = 0.25
_SCARCE_POLL_MAX_S: Final = 1.0
#: The slowest poll on a congested ledger.
_CONGESTED_POLL_MAX_S: Final = 2.0

_LEASES: Final = "upload_leases"
#: Take the key if it is free, expired, or already ours (a claim repeated after a lost answer);
#: either way, say who holds it now: ``(true, us)`` or ``(false, holder)``, so that a waiter
#: learns the holder (alive? changed?) from the poll itself. No row: the holder's row went or
#: came between the insert's look and the select's snapshot; ask again.
CLAIM: Final = (
    f"WITH claimed AS (INSERT INTO {_LEASES} AS held (sha256, email, holder, expires_at) "
    "VALUES (%(sha256)s, %(email)s, %(holder)s, "
    "clock_timestamp() + %(lease_s)s * interval '1 second') "
    "ON CONFLICT (sha256, email) DO UPDATE SET holder = excluded.holder, "
    "expires_at = excluded.expires_at "
    "WHERE held.expires_at < clock_timestamp() OR held.holder = excluded.holder "
    "RETURNING holder) "
    "SELECT true, holder FROM claimed "
    f"UNION ALL SELECT false, holder FROM {_LEASES} "
    "WHERE sha256 = %(sha256)s AND email = %(email)s AND NOT EXISTS (SELECT FROM claimed)"
)
RENEW: Final = (
    f"UPDATE {_LEASES} SET expires_at = clock_timestamp() + %(lease_s)s * interval '1 second' "
    "WHERE sha256 = %(sha256)s AND email = %(email)s AND holder = %(holder)s"
)
RELEASE: Final = (
    f"DELETE FROM {_LEASES} WHERE sha256 = %(sha256)s AND email = %(email)s AND holder = %(holder)s"
)
#: Take the key from a holder known to be dead (its exact token: never a later claim's), or
#: keep it if this very take already did (asked again after a lost answer: see ``run``).
TAKE_FROM: Final = (
    f"UPDATE {_LEASES} SET holder = %(holder)s, "
    "expires_at = clock_timestamp() + %(lease_s)s * interval '1 second' "
    "WHERE sha256 = %(sha256)s AND email = %(email)s AND holder IN (%(dead)s, %(holder)s) "
    "RETURNING holder"
)
HELD_BY: Final = (
    f"SELECT holder, extract(epoch FROM expires_at - clock_timestamp()) FROM {_LEASES} "
    "WHERE sha256 = %(sha256)s AND email = %(email)s"
)


@dataclass(frozen=True)
class Lease:
    """One claim: the key, and a token no other claim (even this process's next) shares."""

    sha256: str
    email: str
    holder: str = field(default_factory=lambda: _holder_token())
    #: The congestion its claims and renewals see, which sets how long they last.
    latency: TurnLatency | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, key: str, latency: TurnLatency | None = None) -> Lease:
        sha256, _, email = key.partition(":")  # "sha256:email"; a hex digest has no colon
        return cls(sha256, email, latency=latency)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "email": self.email,
            "holder": self.holder,
            "lease_s": lease_seconds(self.latency.seconds if self.latency else 0.0),
        }


def lease_seconds(latency_s: float) -> float:
    """How long a claim or renewal lasts when statements take ``latency_s``."""
    return min(LEASE_MAX_S, LEASE_S + _LATENCY_FACTOR * latency_s)


def _holder_token() -> str:
    """Who holds a lease: host, pid and pid namespace (so that a waiter of the same machine
    can tell a dead holder), and a nonce (so that no two claims share a token)."""
    return f"{_this_process()} {uuid.uuid4().hex[:16]}"


def _this_process() -> str:
    """``host pid N ns M``: M names this kernel's boot and this process's pid namespace, so
    that only a process that shares both can judge whether pid N is alive. Host names say
    nothing (machines cloned from one image share one; so do the initial pid namespaces of
    every Linux machine), so they are only for people to read."""
    import socket

    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            booted = boot.read().strip().replace("-", "")
        namespace = f"{booted}.{os.stat('/proc/self/ns/pid').st_ino}"
    except (OSError, UnicodeDecodeError):
        namespace = "0"  # unknowable: no holder is ever judged dead by its pid
    return f"{socket.gethostname()[:120]} pid {os.getpid()} ns {namespace}"


def holder_named(holder: str) -> str:
    """``host pid N ns M nonce`` -> ``host pid N``."""
    return holder.rsplit(" ", 3)[0]


def is_dead_here(holder: str) -> bool:
    """Whether ``holder`` was a process of this machine (host and pid namespace) that no longer
    exists: killed with SIGKILL, it never released its lease, and nobody need wait out LEASE_S.
    A pid reused since makes it look alive: then the lease expires as usual."""
    parts = holder.rsplit(" ", 5)  # host, "pid", N, "ns", M, nonce
    if len(parts) != 6 or not parts[2].isdigit():
        return False
    _, _, pid, _, namespace, _ = parts
    if namespace == "0" or namespace != _this_process().rsplit(" ", 1)[1]:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive (another user's), or unknowable
    return False


def claim_outcome(row: Any) -> tuple[bool, str | None]:
    """CLAIM's answer: whether the key is ours, and who holds it (None: unknown)."""
    if row is None:
        return False, None
    return bool(row[0]), str(row[1])


def holder_now(row: Any) -> str | None:
    """HELD_BY's answer: who holds the key now (None: nobody, or a lease that ran out)."""
    if row is None or float(row[1]) <= 0:
        return None
    return str(row[0])


class Waiting:
    """What a waiter makes of the key's holder at each poll (the sync and asyncio paths share
    it): the first claim tells who holds the key; then polls read the lease row, without
    taking it (a read waits for no one, where 99 claims of one row would queue on its lock
    behind each other and the holder's renewals). The key is claimed again only once nobody
    holds it, and the caller's look comes first: the holder that left likely left its row."""

    #: Take the key from its holder, a dead process of this machine.
    TAKE: Final = "take"
    #: The holder changed or left: the one waited for is done; its answer may be in.
    LOOK: Final = "look"
    #: The same holder, still at it: poll again.
    WAIT: Final = "wait"
    #: The lease is ours already: a claim or take whose answer was lost (the session dropped
    #: after the server committed it).
    MINE: Final = "mine"

    def __init__(self, lease: Lease, holder: str | None, *, patient: bool = True) -> None:
        """``holder``: who has the key, as the first claim said. An impatient waiter never
        waits for a live holder: KeyBusy, here or at any later poll (a dead holder's key it
        may take)."""
        self._mine = lease.holder
        self._patient = patient
        self._seen = holder
        if holder != self._mine:
            self._busy_unless_free(holder, unknown_is_busy=True)

    def _busy_unless_free(self, holder: str | None, *, unknown_is_busy: bool = False) -> None:
        if self._patient or holder == self._mine:
            return
        if holder is None and unknown_is_busy:
            raise KeyBusy("")
        Waiting.busy_unless_free(holder)

    @staticmethod
    def busy_unless_free(holder: str | None) -> None:
        """An impatient waiter's first look, a read: KeyBusy if a live holder has the key
        (a farm's processes try every key of their batch once; a claim would lock the row)."""
        if holder is not None and not is_dead_here(holder):
            raise KeyBusy(holder)

    def polled(self, holder: str | None) -> str:
        """The step after a poll found ``holder`` (None: nobody holds the key)."""
        if holder == self._mine:
            return self.MINE
        if holder is not None and is_dead_here(holder):
            return self.TAKE
        self._busy_unless_free(holder)
        changed = holder != self._seen
        self._seen = holder
        return self.LOOK if changed else self.WAIT

    def refused_by(self, holder: str | None) -> None:
        """A claim just failed: ``holder`` has the key (so a later change is news)."""
        self._busy_unless_free(holder)
        self._seen = holder


class KeyTurns:
    """Per-key thread locks of one process, kept only while someone holds or waits for them."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def _enter(self, key: str) -> threading.Lock:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
            return lock

    def _leave(self, key: str) -> None:
        with self._guard:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @contextlib.contextmanager
    def hold(
        self,
        key: str,
        wait_s: float,
        timed_out: Callable[[], LedgerError],
        *,
        patient: bool = True,
    ) -> Iterator[bool]:
        """This thread's turn on ``key``; yields whether it had to wait for it (then the
        thread before it likely left the answer: look before claiming)."""
        lock = self._enter(key)
        try:
            waited = not lock.acquire(blocking=False)
            if waited and not patient:
                raise KeyBusy(key)
            if waited and not lock.acquire(timeout=wait_s):
                raise timed_out()
            try:
                yield waited
            finally:
                lock.release()
        finally:
            self._leave(key)

    @contextlib.asynccontextmanager
    async def ahold(
        self,
        key: str,
        wait_s: float,
        timed_out: Callable[[], LedgerError],
        *,
        patient: bool = True,
    ) -> AsyncIterator[bool]:
        """As ``hold``, polling: a blocking acquire would stall the event loop."""
        import asyncio

        lock = self._enter(key)
        try:
            began, delay = time.monotonic(), _POLL_MIN_S
            waited = False
            while not lock.acquire(blocking=False):
                waited = True
                if not patient:
                    raise KeyBusy(key)
                if time.monotonic() - began > wait_s:
                    raise timed_out()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
            try:
                yield waited
            finally:
                lock.release()
        finally:
            self._leave(key)

    def forget_inherited(self) -> None:
        """In a forked child: a lock a parent thread held would stay held forever here."""
        self._guard = threading.Lock()
        self._locks = {}


class LeaseSessions(Protocol):
    """The lease statements awaited on an event loop (``postgres_async.AsyncSessions``)."""

    async def claim(self, lease: Lease) -> tuple[bool, str | None]: ...

    async def take_from(self, lease: Lease, dead: str) -> bool: ...

    async def held_by(self, lease: Lease) -> str | None: ...

    async def release(self, lease: Lease) -> None: ...

    async def keep_renewing(self, lease: Lease) -> None: ...


class LeaseLedger(Protocol):
    """What leases ask of the shared ledger they live in (``postgres.PostgresLedger``): this
    module names neither engine, so that both may import it."""

    #: How long a turn on its session takes lately: leases last longer and waiters poll less
    #: while it is high.
    latency: TurnLatency

    def run(self, work: Callable[[Any], _T]) -> _T: ...

    def urgently(self) -> contextlib.AbstractContextManager[None]:
        """This thread's statements go before those of threads that only wait (a holder's)."""

    def fail(self, what: str, exc: BaseException | None = None, hint: str = "") -> LedgerError: ...

    def slots_scarce(self) -> bool: ...

    def async_sessions(self) -> LeaseSessions: ...


class LeaseLocks:
    """The shared ledger's KeyLock: an in-process turn per key, then the key's lease."""

    def __init__(self, ledger: LeaseLedger, *, wait_s: float | None = None) -> None:
        self._ledger = ledger
        #: How long waiters poll: LOCK_WAIT_S, or longer when this process's uploads may take
        #: longer (its RetryPolicy), since other processes likely share that policy.
        self.wait_s = max(LOCK_WAIT_S, wait_s or 0.0)
        self._turns = KeyTurns()
        #: The leases this process holds now, by key: recording an upload releases its lease
        #: in the same transaction (and learns whether it was taken over meanwhile).
        self._held: dict[tuple[str, str], Lease] = {}
        #: Holders (tokens) whose upload is being recorded now, on the asyncio path.
        self.recording: set[str] = set()

    def held(self, sha256: str, email: str) -> Lease | None:
        """The lease this process holds on the key, if any (taken by the recording)."""
        return self._held.get((sha256, email))

    # -- the sync path -------------------------------------------------------------------

    def _claim(self, lease: Lease) -> tuple[bool, str | None]:
        return claim_outcome(
            self._ledger.run(lambda conn: conn.execute(CLAIM, lease.params).fetchone())
        )

    def _release(self, lease: Lease) -> None:
        with contextlib.suppress(LedgerError):  # unreleased, it expires within LEASE_S
            self._ledger.run(lambda conn: conn.execute(RELEASE, lease.params))

    def _take_from(self, lease: Lease, dead: str) -> bool:
        """Whether the key, held by ``dead`` (a dead process of this machine), is now ours."""
        params = {**lease.params, "dead": dead}
        return self._ledger.run(lambda conn: conn.execute(TAKE_FROM, params).fetchone()) is not None

    def renew(self, lease: Lease) -> bool:
        """Whether the lease is still ours (renewed); a failure to ask counts as yes: the
        next renewal may reach the server, and recording finds out for certain."""
        try:
            return bool(self._ledger.run(lambda conn: conn.execute(RENEW, lease.params).rowcount))
        except LedgerError:
            return True

    def holder_of(self, lease: Lease, *, strict: bool = False) -> tuple[str, float] | None:
        """Who holds the key now, and for how many more seconds, if anyone (``strict``: a
        LedgerError if the ledger cannot say, rather than None)."""
        try:
            row = self._ledger.run(lambda conn: conn.execute(HELD_BY, lease.params).fetchone())
        except LedgerError:
            if strict:
                raise
            return None
        return None if row is None else (holder_named(str(row[0])), float(row[1]))

    def holding(self) -> bool:
        """Whether this process holds any lease now."""
        return bool(self._held)

    @contextlib.contextmanager
    def hold(
        self, key: str, look: Callable[[], _T | None] | None = None, *, patient: bool = True
    ) -> Iterator[_T | None]:
        """Hold the key (yielding None) until the block ends; or yield what ``look`` found
        while waiting, once another holder finished (then nothing is held). See
        ``base.KeyLock`` for ``patient``."""
        lease = Lease.of(key, self._ledger.latency)
        timed_out = functools.partial(self._timed_out, lease)
        with self._turns.hold(key, self.wait_s, timed_out, patient=patient) as waited:
            if waited and look is not None and (found := look()) is not None:
                yield found  # the thread before us here left the answer: nothing to claim
                return
            try:
                found = self._claimed(lease, look, patient)
            except (LedgerError, KeyBusy):
                raise  # the ledger cannot be asked: a claim it granted unseen lapses in LEASE_S
            except BaseException:
                self._release(lease)  # an interrupt may have come after the claim was granted
                raise
            if found is not None:
                yield found
                return
            with self._ledger.urgently():  # the holder's recording and release go first
                yield from self._held_while_renewed(lease)

    def _held_while_renewed(self, lease: Lease) -> Iterator[_T | None]:
        """Inside ``hold``, once claimed: renewed by a thread until the caller is done."""
        stop, renewer = threading.Event(), None
        try:
            self._held[(lease.sha256, lease.email)] = lease
            renewer = threading.Thread(
                target=self._keep_renewing, args=(lease, stop), name="assetcache-lease"
            )
            renewer.daemon = True
            renewer.start()
            yield None
        finally:
            stop.set()
            self._held.pop((lease.sha256, lease.email), None)
            if renewer is not None:
                renewer.join()
            self._release(lease)

    def _held_by(self, lease: Lease) -> str | None:
        return holder_now(
            self._ledger.run(lambda conn: conn.execute(HELD_BY, lease.params).fetchone())
        )

    def _claimed(
        self, lease: Lease, look: Callable[[], _T | None] | None, patient: bool
    ) -> _T | None:
        """Poll until the key is ours (None), or ``look`` finds the answer once a holder is
        done (what it found); LedgerError past ``wait_s``. See ``Waiting``."""
        began, delay = time.monotonic(), _POLL_MIN_S
        if not patient:
            Waiting.busy_unless_free(self._held_by(lease))
        claimed, holder = self._claim(lease)
        waiting = Waiting(lease, holder, patient=patient or claimed)
        while not claimed:
            if time.monotonic() - began > self.wait_s:
                raise self._timed_out(lease)
            time.sleep(delay)
            delay = min(delay * 2, self._poll_max())
            holder = self._held_by(lease)
            step = waiting.polled(holder)
            if step is Waiting.MINE:
                return None
            if step is Waiting.TAKE and holder is not None:
                claimed = self._take_from(lease, holder)
                continue
            if step is Waiting.LOOK and look is not None and (found := look()) is not None:
                return found
            if holder is None:
                claimed, holder = self._claim(lease)
                waiting.refused_by(holder)
        return None

    def _keep_renewing(self, lease: Lease, stop: threading.Event) -> None:
        with self._ledger.urgently():
            while not stop.wait(RENEW_S):
                if not self.renew(lease):
                    return  # taken over: recording will find out and act on it

    # -- the asyncio path ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def ahold(
        self,
        key: str,
        look: Callable[[], Awaitable[_T | None]] | None = None,
        *,
        patient: bool = True,
    ) -> AsyncIterator[_T | None]:
        """As ``hold``, on the event loop through psycopg's asyncio driver: claims, renewals
        and the release are statements on the loop's one session; waiters cost no thread."""
        import asyncio

        from .._shielded import finished_anyway

        sessions = self._ledger.async_sessions()
        lease = Lease.of(key, self._ledger.latency)
        timed_out = functools.partial(self._timed_out, lease)
        async with self._turns.ahold(key, self.wait_s, timed_out, patient=patient) as waited:
            if waited and look is not None and (found := await look()) is not None:
                yield found  # the task before us here left the answer: nothing to claim
                return
            renewal = None
            try:
                found = await self._aclaimed(lease, sessions, look, patient)
            except (LedgerError, KeyBusy, asyncio.CancelledError):
                raise  # cannot be asked, or claim() gave back what it took for a cancelled caller
            except BaseException:
                with contextlib.suppress(LedgerError):
                    await finished_anyway(sessions.release(lease))
                raise
            if found is not None:
                yield found
                return
            try:
                self._held[(lease.sha256, lease.email)] = lease
                renewal = asyncio.ensure_future(sessions.keep_renewing(lease))
                yield None
            finally:
                if renewal is not None:
                    renewal.cancel()
                self._held.pop((lease.sha256, lease.email), None)
                # A caller cancelled while its upload is being recorded: the recording (which
                # runs on) releases the lease with the row; released now, another resolver
                # could claim the key and upload again before the row is in.
                if lease.holder not in self.recording:
                    # Released even for a cancelled caller: else the key waits out LEASE_S.
                    with contextlib.suppress(LedgerError, asyncio.CancelledError):
                        await finished_anyway(sessions.release(lease))

    async def _aclaimed(
        self,
        lease: Lease,
        sessions: LeaseSessions,
        look: Callable[[], Awaitable[_T | None]] | None,
        patient: bool,
    ) -> _T | None:
        """As ``_claimed``, awaited."""
        import asyncio

        began, delay = time.monotonic(), _POLL_MIN_S
        if not patient:
            Waiting.busy_unless_free(await sessions.held_by(lease))
        claimed, holder = await sessions.claim(lease)
        waiting = Waiting(lease, holder, patient=patient or claimed)
        while not claimed:
            if time.monotonic() - began > self.wait_s:
                raise await asyncio.to_thread(self._timed_out, lease)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._poll_max())
            holder = await sessions.held_by(lease)
            step = waiting.polled(holder)
            if step is Waiting.MINE:
                return None
            if step is Waiting.TAKE and holder is not None:
                claimed = await sessions.take_from(lease, holder)
                continue
            if step is Waiting.LOOK and look is not None and (found := await look()) is not None:
                return found
            if holder is None:
                claimed, holder = await sessions.claim(lease)
                waiting.refused_by(holder)
        return None

    # -- both ----------------------------------------------------------------------------

    def _poll_max(self) -> float:
        """The slowest poll now: slower while the server is short of slots or statements
        are slow, so that those who only wait leave the queue to those who upload."""
        usual = _SCARCE_POLL_MAX_S if self._ledger.slots_scarce() else _POLL_MAX_S
        congested = _LATENCY_FACTOR * self._ledger.latency.seconds
        return max(usual, min(_CONGESTED_POLL_MAX_S, congested))

    def _timed_out(self, lease: Lease) -> LedgerError:
        holder = self.holder_of(lease)
        who = f" ({holder[0]}, lease renewed until {holder[1]:.0f} s from now)" if holder else ""
        return self._ledger.fail(
            f"another process{who} has held this image's upload lease for {self.wait_s:.0f} s",
            hint="; retry later",
        )

    def close(self) -> None:
        """Nothing to close: leases live in rows, renewed by the holds themselves."""

    def forget_inherited(self) -> None:
        """In a forked child: the parent's holds are the parent's (its renewers did not come
        along); the child starts with none."""
        self._turns.forget_inherited()
        self._held = {}
