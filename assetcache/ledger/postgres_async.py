"""The PostgreSQL ledger through psycopg's asyncio driver: what AsyncAssetCache awaits.

``postgres.PostgresLedger`` owns the ledger (its URL and password, schema, mirror, spool, and
how failures read); this module adds sessions made with ``psycopg.AsyncConnection`` for the
resolve path, so that an asyncio program waits for the server (the newest row, the single-flight
lock, recording an upload) on its event loop rather than in worker threads: a thousand waiting
resolves cost sockets, not threads (the default executor has a handful). What is local (the
mirror and spool, SQLite files) and the bulk commands stay on the sync driver in worker threads.

A session belongs to the event loop that made it (the driver waits for its socket on that loop):
each loop has one session, taken in turns by its tasks (claims, renewals and releases of
single flight's leases included) and closed when idle, and a session is never handed to another
loop. Failures read exactly as on the sync side (``PostgresLedger.session_failure``), the client
deadline (``_deadline``) watches these sessions too, and a pooled session a restart dropped is
asked again once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _rules
from .._deadline import WATCHDOG
from .._errors import LedgerError
from .._shielded import finished_anyway, keep_running
from . import leases, postgres, schema
from .base import asset_from_row, upload_params

if TYPE_CHECKING:
    from .._asset import Asset
    from .leases import Lease
    from .postgres import PostgresLedger

_T = TypeVar("_T")

_CURSOR: list[Any] = []
#: What children inherited at fork and must neither use nor close.
_INHERITED: list[object] = []


def _watched_cursor(psycopg: Any) -> Any:
    """psycopg's async client-side-binding cursor, telling the watchdog each statement is new."""
    if not _CURSOR:

        class WatchedAsyncCursor(psycopg.AsyncClientCursor):  # type: ignore[misc]
            async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                WATCHDOG.progress(self.connection)
                return await super().execute(query, params, **kwargs)

        _CURSOR.append(WatchedAsyncCursor)
    return _CURSOR[0]


def _finish(conn: Any) -> None:
    """Close a session from any thread or loop: ``AsyncConnection.close`` only finishes the
    libpq connection, which needs no event loop."""
    with contextlib.suppress(Exception):
        conn.pgconn.finish()


class AsyncSessions:
    """One PostgreSQL ledger's asyncio sessions: one per event loop, taken in turns."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self._ledger = ledger
        self._guard = threading.Lock()
        #: Each loop's session while it is open, and whether a task is using it now.
        self._sessions: dict[asyncio.AbstractEventLoop, Any] = {}
        self._busy: set[asyncio.AbstractEventLoop] = set()
        self._turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    # -- sessions ------------------------------------------------------------------------

    async def _connect(self) -> Any:
        ledger = self._ledger
        psycopg = ledger.driver()
        began, delay = time.monotonic(), 0.0
        while True:
            problem: Exception | None = None
            try:
                return await psycopg.AsyncConnection.connect(
                    ledger.conninfo(None),
                    autocommit=True,
                    cursor_factory=_watched_cursor(psycopg),
                    connect_timeout=postgres.CONNECT_TIMEOUT_S,
                    prepare_threshold=None,  # nothing kept in a server session (poolers)
                )
            except psycopg.Error as exc:
                problem = exc
            delay = ledger.slot_wait(problem, began, delay)
            if not delay:
                # Outside the except block: no traceback keeps a frame holding the password.
                raise ledger.unreachable(problem)
            await asyncio.sleep(delay)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        with self._guard:
            if self._ledger.closed:
                raise self._ledger.closed_error()
            self._forget_finished_loops()
            return self._turns.setdefault(loop, asyncio.Lock())

    def _checkout(self, loop: asyncio.AbstractEventLoop) -> Any | None:
        with self._guard:
            if self._ledger.closed:
                raise self._ledger.closed_error()
            self._busy.add(loop)
            conn = self._sessions.get(loop)
            return None if conn is None or conn.closed else conn

    def _checkin(self, loop: asyncio.AbstractEventLoop, conn: Any, *, keep: bool) -> None:
        with self._guard:
            self._busy.discard(loop)
            keep = keep and not self._ledger.closed and not conn.closed
            keep = keep and not WATCHDOG.was_cut(conn)
            if keep:
                self._sessions[loop] = conn
            elif self._sessions.get(loop) is conn:
                del self._sessions[loop]
        if keep:
            closer = functools.partial(self._close_idle, loop, conn)
            WATCHDOG.close_when_idle(conn, postgres.IDLE_CLOSE_S, closer)
        else:
            _finish(conn)

    def _close_idle(self, loop: asyncio.AbstractEventLoop, conn: Any) -> None:
        """The watchdog's call (from its thread) once a loop's session sat idle."""
        with self._guard:
            if loop in self._busy or self._sessions.get(loop) is not conn:
                return  # in use again: its user schedules the next idle close
            del self._sessions[loop]
        _finish(conn)

    def _forget_finished_loops(self) -> None:
        """A closed loop's session can never be used again: close it, under the guard."""
        for loop in [loop for loop in self._sessions if loop.is_closed()]:
            _finish(self._sessions.pop(loop))
        for loop in [loop for loop in self._turns if loop.is_closed()]:
            del self._turns[loop]

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """This loop's one session, for this task's turn (opened if need be)."""
        ledger = self._ledger
        if not ledger.ready:
            await asyncio.to_thread(ledger.ensure_ready)  # schema (once), spool: sync
        psycopg = ledger.driver()
        loop = asyncio.get_running_loop()
        async with self._turn(loop):
            conn = self._checkout(loop)
            pooled = conn is not None
            try:
                if conn is None:
                    conn = await self._connect()
            except BaseException:
                with self._guard:
                    self._busy.discard(loop)
                raise
            WATCHDOG.in_use(conn)
            failure: BaseException | None = None
            try:
                with WATCHDOG.watching(conn, conn.fileno, postgres.SESSION_DEADLINE_S):
                    yield conn
            except psycopg.Error as exc:
                failure = exc  # a session that failed may be broken: never used again
                self._checkin(loop, conn, keep=False)
            except BaseException:
                self._checkin(loop, conn, keep=False)
                raise
            else:
                self._checkin(loop, conn, keep=True)
        if failure is not None:
            raise ledger.session_failure(failure, pooled=pooled, cut=WATCHDOG.was_cut(conn))

    async def _run(self, work: Callable[[Any], Awaitable[_T]]) -> _T:
        """As ``PostgresLedger.run``: once more on a new session after a restart. Timed, as
        the sync session's turns are: the loop's tasks queue on one session too."""
        with self._ledger.latency.timing():
            try:
                async with self.session() as conn:
                    return await work(conn)
            except postgres.StaleSession:
                async with self.session() as conn:
                    return await work(conn)

    # -- the resolve path ----------------------------------------------------------------

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Asset]:
        return await self._run(functools.partial(_read, sql=sql, params=params))

    async def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None:
        """As ``PostgresLedger.newest``: what this machine knows (its mirror and spool, a
        local file read in a worker thread) unless ``fresh``, else the server, whose answer is
        then mirrored and weighed against the spool."""
        ledger = self._ledger
        moment = datetime.now(UTC) if now is None else now
        if not fresh:
            known = await asyncio.to_thread(ledger.from_mirror, sha256, email, moment)
            if known is not None:
                return known
        spooled = None  # the spool before the server, as PostgresLedger.newest
        if fresh:
            spooled = await asyncio.to_thread(ledger.spooled_newest, sha256, email, moment)
        began = _rules.machine_ns()
        params = postgres.newest_params(sha256, email, moment)
        rows = await self._rows(schema.SELECT_NEWEST, params)
        answer = rows[0] if rows else None
        return await asyncio.to_thread(
            ledger.answered, sha256, email, answer, spooled, moment, began
        )

    async def record(self, asset: Asset) -> Asset:
        """As ``PostgresLedger.record``: the lease released with the row, retried for
        RECORD_RETRY_S, then spooled."""
        locks = self._ledger.locks
        lease = locks.held(asset.sha256, asset.email)
        if lease is None:
            return await self._record(asset, None)
        locks.recording.add(lease.holder)
        try:
            return await self._record(asset, lease)
        finally:
            locks.recording.discard(lease.holder)

    async def _record(self, asset: Asset, lease: Lease | None) -> Asset:
        deadline = time.monotonic() + postgres.RECORD_RETRY_S
        delay = 0.2
        while True:
            began = _rules.machine_ns()
            try:
                async with self.session() as conn, conn.transaction():
                    written = await _write_upload(conn, asset, lease)
            except LedgerError as exc:
                if self._ledger.give_up_recording(deadline, delay):
                    return await asyncio.to_thread(self._ledger.spool, asset, exc)
                await asyncio.sleep(delay)
                delay = postgres.next_delay(delay)
                continue
            # Rare (a taken-over lease), so the sync side's wait in a worker thread will do.
            written = await asyncio.to_thread(self._ledger.with_takers_answer, written)
            return await asyncio.to_thread(self._ledger.recorded, written, began)

    # -- single flight (see leases) ------------------------------------------------------

    async def claim(self, lease: Lease) -> tuple[bool, str | None]:
        """The lease's claim statement: whether the key is ours, and who holds it. A caller
        cancelled while it is in flight must not cut it short: the server may already have
        given us the key, which nobody would then release for LEASE_S. So it finishes in a task
        of its own, and a key it took for a cancelled caller is given back."""

        async def claim(conn: Any) -> tuple[bool, str | None]:
            cursor = await conn.execute(leases.CLAIM, lease.params)
            return leases.claim_outcome(await cursor.fetchone())

        give_back = functools.partial(self._give_back, lease, lambda outcome: outcome[0])
        return await finished_anyway(self._run(claim), after_cancel=give_back)

    async def take_from(self, lease: Lease, dead: str) -> bool:
        """Take the key from ``dead``, a dead process of this machine (``leases.Waiting``);
        finished and given back for a cancelled caller, as ``claim``."""

        async def take(conn: Any) -> bool:
            params = {**lease.params, "dead": dead}
            return await (await conn.execute(leases.TAKE_FROM, params)).fetchone() is not None

        give_back = functools.partial(self._give_back, lease, bool)
        return await finished_anyway(self._run(take), after_cancel=give_back)

    async def held_by(self, lease: Lease) -> str | None:
        """Who holds the key now (``leases.Waiting``): a read, nothing to give back."""

        async def held_by(conn: Any) -> str | None:
            return leases.holder_now(
                await (await conn.execute(leases.HELD_BY, lease.params)).fetchone()
            )

        return await self._run(held_by)

    def _give_back(
        self, lease: Lease, taken: Callable[[Any], bool], attempt: asyncio.Future[Any]
    ) -> None:
        if attempt.cancelled() or attempt.exception() is not None or not taken(attempt.result()):
            return  # nothing taken
        keep_running(asyncio.ensure_future(self.release(lease)))

    async def release(self, lease: Lease) -> None:
        async def release(conn: Any) -> None:
            await conn.execute(leases.RELEASE, lease.params)

        await self._run(release)

    async def keep_renewing(self, lease: Lease) -> None:
        """Renew every RENEW_S until cancelled, or until the lease turns out taken over."""

        async def renew(conn: Any) -> bool:
            return bool((await conn.execute(leases.RENEW, lease.params)).rowcount)

        while True:
            await asyncio.sleep(leases.RENEW_S)
            try:
                if not await self._run(renew):
                    return  # taken over: recording will find out and act on it
            except LedgerError:
                continue  # the next renewal may reach the server

    # -- lifetime ------------------------------------------------------------------------

    def drop_idle(self) -> None:
        """The server dropped its sessions (a restart): close every loop's idle one."""
        with self._guard:
            idle = {loop: c for loop, c in self._sessions.items() if loop not in self._busy}
            for loop in idle:
                del self._sessions[loop]
        for conn in idle.values():
            _finish(conn)

    def close(self) -> None:
        self.drop_idle()  # a session in use is closed by its user on the way out

    def forget_inherited(self) -> None:
        """In a forked child: the parent's sockets are shared, so drop them, never close."""
        _INHERITED.append(self._sessions)
        self._guard = threading.Lock()
        self._sessions, self._busy, self._turns = {}, set(), {}


async def _write_upload(conn: Any, asset: Asset, lease: Lease | None) -> postgres.Written:
    """``postgres._write_upload``, awaited."""
    answer = None
    if lease is not None and not (await conn.execute(leases.RELEASE, lease.params)).rowcount:
        params = postgres.newest_params(asset.sha256, asset.email, postgres.taken_over_at(asset))
        rows = await _read(conn, sql=schema.SELECT_NEWEST, params=params)
        answer = rows[0] if rows else None
        asset = postgres.superseded(asset)
    cursor = await conn.execute(postgres.as_psycopg(schema.RECORD_UPLOAD), upload_params(asset))
    row = await cursor.fetchone()
    return asset, (row[0], row[1]), answer


async def _read(conn: Any, *, sql: str, params: dict[str, Any]) -> list[Asset]:
    cursor = await conn.execute(postgres.as_psycopg(sql), params)
    return [asset_from_row(row) for row in await cursor.fetchall()]
