"""The PostgreSQL ledger through psycopg's asyncio driver: what AsyncAssetCache awaits.

``_postgres.PostgresLedger`` owns the ledger (its URL and password, schema, mirror, spool, and
how failures read); this module adds sessions made with ``psycopg.AsyncConnection`` for the
resolve path, so that an asyncio program waits for the server (the newest row, the single-flight
lock, recording an upload) on its event loop rather than in worker threads: a thousand waiting
resolves cost sockets, not threads (the default executor has a handful). What is local (the
mirror and spool, SQLite files) and the bulk commands stay on the sync driver in worker threads.

A session belongs to the event loop that made it (the driver waits for its socket on that loop):
each loop has its own pool and its own lock session, and a session is never handed to another
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
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import _hit, _postgres, _schema
from ._deadline import WATCHDOG
from ._errors import LedgerError
from ._shielded import finished_anyway, keep_running
from ._sqlite_ledger import asset_from_row

if TYPE_CHECKING:
    from ._asset import Asset
    from ._postgres import PostgresLedger

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
    """One PostgreSQL ledger's asyncio sessions: a small pool and a lock session per loop."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self._ledger = ledger
        self._guard = threading.Lock()
        self._idle: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._lock_sessions: dict[asyncio.AbstractEventLoop, Any] = {}
        self._lock_turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        #: Lock statements running on for cancelled callers (see ``try_lock``).

    # -- sessions ------------------------------------------------------------------------

    async def _connect(self, options: str | None = None) -> Any:
        ledger = self._ledger
        psycopg = ledger.driver()
        problem: Exception | None = None
        try:
            return await psycopg.AsyncConnection.connect(
                ledger.conninfo(options),
                autocommit=True,
                cursor_factory=_watched_cursor(psycopg),
                connect_timeout=_postgres.CONNECT_TIMEOUT_S,
            )
        except psycopg.Error as exc:
            problem = exc
        # Raised outside the except block: no traceback keeps a frame holding the password.
        raise ledger.unreachable(problem)

    def _checkout(self, loop: asyncio.AbstractEventLoop) -> Any | None:
        with self._guard:
            if self._ledger.closed:
                raise self._ledger.closed_error()
            self._forget_finished_loops()
            pool = self._idle.get(loop)
            return pool.pop() if pool else None

    def _forget_finished_loops(self) -> None:
        """A closed loop's sessions can never be used again (nor its lock session's locks be
        released): close them, under the guard."""
        for loop in [loop for loop in self._idle if loop.is_closed()]:
            for conn in self._idle.pop(loop):
                _finish(conn)
        for loop in [loop for loop in self._lock_sessions if loop.is_closed()]:
            _finish(self._lock_sessions.pop(loop))
            self._lock_turns.pop(loop, None)

    def _keep(self, loop: asyncio.AbstractEventLoop, conn: Any) -> bool:
        with self._guard:
            pool = self._idle.setdefault(loop, [])
            keep = not self._ledger.closed and len(pool) < 8 and not conn.closed
            keep = keep and not WATCHDOG.was_cut(conn)
            if keep:
                pool.append(conn)
        return keep

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        ledger = self._ledger
        if not ledger.ready:
            await asyncio.to_thread(ledger.ensure_ready)  # schema (once), spool: sync
        psycopg = ledger.driver()
        loop = asyncio.get_running_loop()
        conn = self._checkout(loop)
        pooled = conn is not None
        if conn is None:
            conn = await self._connect()
        try:
            with WATCHDOG.watching(conn, conn.fileno, _postgres.SESSION_DEADLINE_S):
                yield conn
        except psycopg.Error as exc:
            _finish(conn)  # a session that failed may be broken: never pooled again
            failure: BaseException = exc
        except BaseException:
            _finish(conn)
            raise
        else:
            if not self._keep(loop, conn):
                _finish(conn)
            return
        raise ledger.session_failure(failure, pooled=pooled, cut=WATCHDOG.was_cut(conn))

    # -- the resolve path ----------------------------------------------------------------

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Asset]:
        try:
            async with self.session() as conn:
                return await _read(conn, sql, params)
        except _postgres.StaleSession:  # a read is safe to repeat, once, on a new session
            async with self.session() as conn:
                return await _read(conn, sql, params)

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
        began = _hit.machine_ns()
        params = _postgres.newest_params(sha256, email, moment)
        rows = await self._rows(_schema.SELECT_NEWEST, params)
        answer = rows[0] if rows else None
        return await asyncio.to_thread(
            ledger.answered, sha256, email, answer, spooled, moment, began
        )

    async def record(self, asset: Asset) -> Asset:
        """As ``PostgresLedger.record``: retried for RECORD_RETRY_S, then spooled."""
        deadline = time.monotonic() + _postgres.RECORD_RETRY_S
        delay = 0.2
        while True:
            began = _hit.machine_ns()
            try:
                async with self.session() as conn, conn.transaction():
                    cursor = await conn.execute(
                        _postgres.as_psycopg(_schema.RECORD_UPLOAD), _postgres.upload_params(asset)
                    )
                    row = await cursor.fetchone()
            except LedgerError as exc:
                if self._ledger.give_up_recording(deadline, delay):
                    return await asyncio.to_thread(self._ledger.spool, asset, exc)
                await asyncio.sleep(delay)
                delay = _postgres.next_delay(delay)
                continue
            recorded = self._ledger.recorded
            return await asyncio.to_thread(recorded, asset, row[0], row[1], began)

    # -- single flight -------------------------------------------------------------------

    async def try_lock(self, ident: int, *, release: bool = False) -> bool:
        """``pg_try_advisory_lock`` (or the unlock) on this loop's lock session; as the sync
        ``AdvisoryLocks._try``, an idle lock session a restart dropped is replaced once.

        A caller cancelled while the statement is in flight (``asyncio.wait_for``, a task
        group) must not cut it short: the server may already have taken the lock, and a lock
        nobody knows it holds stays held by this loop's long-lived session, stalling every other
        machine's waiters for LOCK_WAIT_S. So the statement finishes in a task of its own, and
        a lock it took for a cancelled caller is given back."""
        give_back = None if release else functools.partial(self._give_back, ident)
        return await finished_anyway(self._try_lock(ident, release=release), after_cancel=give_back)

    def _give_back(self, ident: int, attempt: asyncio.Future[bool]) -> None:
        """After a cancelled caller's attempt: release the lock if the attempt took it."""
        if attempt.cancelled() or attempt.exception() is not None or not attempt.result():
            return  # nothing taken
        keep_running(asyncio.ensure_future(self._try_lock(ident, release=True)))

    async def _try_lock(self, ident: int, *, release: bool) -> bool:
        sql = "SELECT pg_advisory_unlock(%s)" if release else "SELECT pg_try_advisory_lock(%s)"
        psycopg = self._ledger.driver()
        loop = asyncio.get_running_loop()
        with self._guard:
            self._forget_finished_loops()
            turn = self._lock_turns.setdefault(loop, asyncio.Lock())
        async with turn:  # one statement at a time on the session (and one reconnect)
            for _ in range(2):
                session: Any = self._lock_sessions.get(loop)
                fresh = session is None or session.closed
                if fresh:
                    session = await self._connect(_postgres.LOCK_SESSION_OPTIONS)
                    with self._guard:
                        self._lock_sessions[loop] = session
                try:
                    with WATCHDOG.watching(session, session.fileno, _postgres.SESSION_DEADLINE_S):
                        cursor = await session.execute(sql, (ident,))
                        took = bool((await cursor.fetchone())[0])
                    if not WATCHDOG.was_cut(session):
                        return took
                    # Cut as the answer came: the session (and any lock it held) is gone.
                    _finish(session)
                    raise self._ledger.not_answering()
                except psycopg.Error as exc:
                    _finish(session)  # a lost session has lost its locks too
                    failure = exc
                cut = WATCHDOG.was_cut(session)
                if release or fresh or cut:
                    break
        if cut:
            raise self._ledger.not_answering()
        raise self._ledger.lost_lock_session(failure)

    # -- lifetime ------------------------------------------------------------------------

    def drop_idle(self) -> None:
        """The server dropped its sessions (a restart): close the idle ones of every loop."""
        with self._guard:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for conn in pool:
                _finish(conn)

    def close(self) -> None:
        self.drop_idle()
        with self._guard:
            sessions, self._lock_sessions = self._lock_sessions, {}
        for session in sessions.values():
            _finish(session)

    def forget_inherited(self) -> None:
        """In a forked child: the parent's sockets are shared, so drop them, never close."""
        _INHERITED.append((self._idle, self._lock_sessions))
        self._guard = threading.Lock()
        self._idle, self._lock_sessions, self._lock_turns = {}, {}, {}


async def _read(conn: Any, sql: str, params: dict[str, Any]) -> list[Asset]:
    cursor = await conn.execute(_postgres.as_psycopg(sql), params)
    return [asset_from_row(row) for row in await cursor.fetchall()]
