"""The ledger in PostgreSQL: one ledger shared by every machine of a team.

Chosen by ``ledger.open_engine`` for ``postgresql://`` URLs; imported only then, so the SQLite
path never imports psycopg. The same Alembic revisions and the same queries (``schema.py``)
serve both engines; what differs is here:

- **Client-side binding** (``psycopg.ClientCursor``): the shared queries pass ``NULL`` for
  filters they do not use (``:email IS NULL OR ...``), whose type PostgreSQL cannot infer from
  a server-side parameter. Times are bound as aware datetimes, never as strings (a string would
  be read in the server's time zone).
- **Autocommit sessions, explicit transactions for writes**: a read is one statement; a write
  is one short transaction, never open across the network call to useapi.net.
- **Migrations under an advisory lock**: the whole upgrade runs in one transaction that first
  takes ``pg_advisory_xact_lock``; processes opening a new database at once queue there, and
  each after the first finds the schema at head (PostgreSQL's DDL is transactional).
- **One session per process, none while idle**: every statement of this ledger (reads, writes,
  single flight's claims) runs on one session, taken in turn by the process's threads; it is
  closed after ``IDLE_CLOSE_S`` without use. A farm of hundreds of processes then needs as many
  server slots as processes *asking at that moment*, not a pool per process. Nothing lives in
  the session between statements (no advisory lock, no ``SET``, no prepared statement), so a
  transaction-pooling PgBouncer may hand each transaction to any server connection.
- **A server out of slots** (``53300``) **or starting up** (``57P03``) is asked again with
  backoff within ``SLOT_WAIT_S`` (logged at ``-v``), then named for what it is.
- **Single flight across machines**: a lease row per key on the server's clock (``leases``).
- **What is per machine stays local**: the stat cache lives in a SQLite file in the user cache
  dir (named for the database the URL connects to), never in the shared database.
- **A mirror for fast hits**: that same local file mirrors the rows this machine has read from
  the shared ledger, each stamped when its read began by the wall clock and by the machine
  clock (``_rules.machine_ns``: since boot, never set). A lookup answers from the mirror when
  the key's row was read within ``MIRROR_TTL`` by both (``sqlite_file.mirror_window``), without
  opening a session or importing psycopg (which alone costs more than a whole SQLite hit). Why
  that is safe: a mirrored row passes the same checks as any row (live, credible, unrevoked, with
  ``min_remaining`` left), and the shared ledger never shortens a row's life; the only news the
  mirror can miss is a ``forget`` made on another machine, which reaches this one within
  ``MIRROR_TTL`` of real time: a row stamped before the read's snapshot answers no longer than
  that after it, however the wall clock jumped (a stamp "in the future" answers nothing). Two
  reads of a key are ordered by the machine clock alone (``Ledger.mirror``): an answer read now
  replaces the mirror's, unless a read that began later has written. A forget made here
  updates the mirror at once, stamped after its commit.
- **The spool**: uploads the shared ledger could not record (``record``) wait in the same file
  for a session to merge them; until then they are this machine's knowledge: ``newest`` weighs
  them against the server's answer, ``revoke`` revokes them there and writes them to the shared
  ledger revoked, ``assets`` and ``export`` list them.

- **asyncio**: ``postgres_async.AsyncSessions`` is this ledger through psycopg's
  ``AsyncConnection``, for AsyncAssetCache's resolve path; everything above applies to it. That
  module imports this one, never the reverse: ``ledger.open_engine`` hands the ledger a factory
  for it (``async_driver``).
- **A stopped server** (processes stopped, kernel alive: TCP still acknowledged) is noticed by
  this client's clock (``_deadline``): a statement waiting past ``SESSION_DEADLINE_S`` has its
  session cut. A pooled session a restart dropped is asked again once (``StaleSession``).
- **A paid upload is never lost**: recording retries for RECORD_RETRY_S, then spools the row in
  the local file until a session can merge it (see the spool above).

The URL's password is a secret like the API token: it is kept in a ``Secret``, never in a
message, a repr or ``path`` (which shows the URL with ``***``).
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from .. import _rules
from .._asset import Asset
from .._config import Secret
from .._deadline import WATCHDOG
from .._errors import LedgerError
from . import schema
from .base import (
    AsyncLedgerSide,
    MergeOutcome,
    asset_from_row,
    in_id_order,
    merge_outcome,
    upload_params,
)
from .leases import RELEASE, Lease, LeaseLocks, LeaseSessions
from .machine import open_machine_file
from .pgurl import Secrets
from .pgurl import hint as url_hint
from .session_turn import SessionTurn, TurnLatency
from .sqlite_file import without_password

if TYPE_CHECKING:
    from ..content.stat_cache import FileStat

_T = TypeVar("_T")
#: The shared queries are written with ``:name`` parameters (sqlite3's style).
_PARAM: Final = re.compile(r":([a-z_][a-z0-9_]*)")
#: The client's side of the same bound: a server that vanished (not one that stopped) is noticed
#: within ~25 s instead of the kernel's two hours.
CLIENT_KEEPALIVES: Final = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "25000",
}
#: How long one statement may wait for the server before this client cuts the session (see
#: ``_deadline``): far beyond any of these indexed statements on a healthy server, and well
#: inside LOCK_WAIT_S, so a stopped server fails waiters instead of holding them.
SESSION_DEADLINE_S: Final = 30.0
#: libpq's bound on establishing a session (TCP, TLS, authentication).
CONNECT_TIMEOUT_S: Final = 10
#: A session unused this long is closed: its server slot goes back to the farm. A busy process
#: (resolving, polling a lease every 250 ms at most) keeps it; a long upload's renewals (every
#: leases.RENEW_S) open one each, which is cheaper for a farm than a slot held meanwhile.
IDLE_CLOSE_S: Final = 3.0
#: How long a thread waits for its turn on the process's session. Each statement on it is
#: bounded by SESSION_DEADLINE_S; this covers a queue of them.
SESSION_TURN_S: Final = 4 * SESSION_DEADLINE_S
#: How long after a refusal for lack of slots this process behaves as one of too many.
SCARCE_S: Final = 60.0
#: SQLSTATEs of a server that refuses a session for now: no free slot, still starting up.
_NO_SLOT: Final = "53300"
_STARTING: Final = "57P03"
#: libpq reports a refused start-up as text (there is no result to carry a SQLSTATE), in the
#: server's words, or PgBouncer's.
_NO_SLOT_TEXTS: Final = (
    "too many clients already",
    "remaining connection slots are reserved",
    "too many connections for role",
    "too many connections for database",
    "no more connections allowed",
)
_STARTING_TEXTS: Final = (
    "the database system is starting up",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)
#: How long a process asks again for a session that a full (or starting) server refuses before
#: it gives up. Longer than a statement's deadline: in a farm with fewer slots than processes,
#: waiting for one is the normal case, and on a busy machine the sessions ahead of a process
#: may take a minute to end; a server that stays full is still named within this bound.
SLOT_WAIT_S: Final = 120.0
#: Backoff between attempts to get a slot: doubling from the first, at most the last.
_SLOT_WAIT_FIRST_S: Final = 0.1
_SLOT_WAIT_MAX_S: Final = 2.0
#: The migration's advisory lock key (any constant no other key can hash to in practice).
_MIGRATION_LOCK: Final = 0x6173_7365_7463_6163  # "assetcac"
#: How long recording an upload that succeeded keeps retrying a database that blinked: the
#: default retry budget (RetryPolicy.max_elapsed), since the upload was paid for.
RECORD_RETRY_S: Final = 180.0
#: How many spooled uploads (see ``record``) one merge sends to the shared ledger.
SPOOL_BATCH: Final = 500
#: How long after a failed merge of the spool sessions skip trying it again.
SPOOL_RETRY_S: Final = 30.0
_INHERITED: list[object] = []
#: How long a row read from the shared ledger answers lookups from this machine's mirror: the
#: bound on how late a forget made on another machine reaches this one.
MIRROR_TTL: Final = _rules.MIRROR_TTL


def _driver() -> Any:
    """psycopg, imported on first use: a hit answered by the mirror never pays for it."""
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg


_CURSOR: list[Any] = []


def _watched_cursor(psycopg: Any) -> Any:
    """psycopg's client-side-binding cursor, telling the watchdog that each statement is new."""
    if not _CURSOR:

        class WatchedCursor(psycopg.ClientCursor):  # type: ignore[misc]
            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                WATCHDOG.progress(self.connection)
                return super().execute(query, params, **kwargs)

        _CURSOR.append(WatchedCursor)
    return _CURSOR[0]


class StaleSession(LedgerError):
    """A pooled session failed on the connection itself: the server restarted or dropped it
    while the session sat idle. Nothing was done; an idempotent statement may be retried once
    on a new session."""


def as_psycopg(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql)


def _conninfo(url: str) -> str:
    """The libpq URL psycopg takes: SQLAlchemy's ``postgresql+psycopg://`` spelled plainly."""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme.lower().startswith("postgres") else url


class AsyncDriver(AsyncLedgerSide, LeaseSessions, Protocol):
    """This ledger through an asyncio driver (``postgres_async.AsyncSessions``): what
    AsyncAssetCache awaits on its resolve path, what lease holders and waiters await, and what
    the ledger tells it about its sessions. That module imports this one, never the reverse:
    ``ledger.open_engine`` hands the ledger a factory for it."""

    def drop_idle(self) -> None: ...

    def close(self) -> None: ...

    def forget_inherited(self) -> None: ...


class PostgresLedger:
    """A ledger in a PostgreSQL database. Thread-safe: one session, taken in turns.

    ``async_driver`` makes its asyncio driver when first awaited (``ledger.open_engine`` passes
    ``postgres_async.AsyncSessions``); without one the ledger serves the sync API only."""

    def __init__(
        self,
        url: str,
        *,
        lock_wait_s: float | None = None,
        async_driver: Callable[[PostgresLedger], AsyncDriver] | None = None,
    ) -> None:
        self.path = without_password(url)
        self._secret = Secret(_conninfo(url))
        self._conn: Any = None  # the process's one session, while it is open
        self._turn = SessionTurn()  # held by whoever uses the session; lease holders first
        #: How long a turn on the session takes lately (the congestion leases adapt to).
        self.latency = TurnLatency()
        self._schema_guard = threading.Lock()
        self._guard = threading.Lock()
        self._closed = False
        self._ready = False  # schema checked (and migrated) by the first session
        # The local spool may hold uploads not yet merged (this process's or an earlier one's):
        # looked at by the first session, and again after each upload spooled.
        self._spool_waiting = True
        self._spool_retry_at = 0.0  # after a failed merge: when to try again (monotonic)
        self._scarce_until = 0.0  # after the server refused us a slot (monotonic)
        # This machine's stat cache, mirror and spool.
        self._local = open_machine_file(url)
        # Waiters for a lease allow for the longest upload this process's policy allows.
        self.locks = LeaseLocks(self, wait_s=lock_wait_s)
        self._async_driver = async_driver
        self._async: AsyncDriver | None = None

    def __repr__(self) -> str:
        return f"PostgresLedger({self.path!r})"

    # -- sessions ------------------------------------------------------------------------

    def fail(self, what: str, exc: BaseException | None = None, hint: str = "") -> LedgerError:
        detail = f" ({_one_line(exc)})" if exc is not None else ""
        # libpq quotes what it cannot parse, password and all, and a host holding a piece of a
        # password split at a raw "@": scrub each, as written and decoded (see pgurl.Secrets).
        detail = Secrets(self._secret.reveal()).mask(detail)
        return LedgerError(f"ledger {self.path}: {what}{detail}{hint}", path=self.path)

    def driver(self) -> Any:
        """psycopg, or the LedgerError naming the extra that brings it."""
        psycopg = _driver()
        if psycopg is None:
            raise self.fail(
                "a PostgreSQL ledger needs psycopg, which is not installed",
                hint="; install assetcache with its postgres extra (assetcache[postgres])",
            )
        return psycopg

    def conninfo(self, options: str | None) -> str:
        """The connection string, password included: pass it straight to the driver, never
        keep it in a variable (frames are shown by tracebacks and debuggers)."""
        return str(
            self.driver().conninfo.make_conninfo(
                self._secret.reveal(),
                options=options,
                # How an operator tells assetcache's sessions apart (pg_stat_activity, PgBouncer's
                # SHOW CLIENTS); an application_name in the URL wins.
                fallback_application_name="assetcache",
                **CLIENT_KEEPALIVES,
            )
        )

    def unreachable(self, problem: BaseException) -> LedgerError:
        reason = _refused_for_now(problem)
        if reason is not None:
            return self.fail(
                f"{reason} for {SLOT_WAIT_S:.0f} s",
                problem,
                "; the server's max_connections are all in use: use fewer processes, or put a "
                "pooler such as PgBouncer (transaction pooling) in front of it"
                if reason == _NO_SLOT_REASON
                else "; wait until the server has started, then retry",
            )
        hint = _hint(problem) + url_hint(self._secret.reveal())
        return self.fail("cannot be reached", problem, hint)

    def connect(self) -> Any:
        """A new autocommit session with client-side binding, or LedgerError."""
        psycopg = self.driver()
        return self._connected(
            lambda: psycopg.connect(
                self.conninfo(None),
                autocommit=True,
                cursor_factory=_watched_cursor(psycopg),
                connect_timeout=CONNECT_TIMEOUT_S,
                prepare_threshold=None,  # nothing kept in a server session (poolers)
            )
        )

    def _connected(self, open_session: Callable[[], _T]) -> _T:
        """``open_session()``; a server out of slots or starting up is asked again with
        backoff (``slot_wait``), anything else is a LedgerError at once."""
        psycopg = self.driver()
        began, delay = time.monotonic(), 0.0
        while True:
            problem: Exception | None = None
            try:
                return open_session()
            except psycopg.Error as exc:
                # Without its traceback: the driver's frames hold the conninfo, password and all.
                problem = exc.with_traceback(None)
                problem.__context__ = None
            delay = self.slot_wait(problem, began, delay)
            if not delay:
                # Outside the except block: no traceback keeps a frame holding the password.
                raise self.unreachable(problem)
            time.sleep(delay)

    def slot_wait(self, problem: BaseException, began: float, delay: float) -> float:
        """How long to wait before asking a server that refused a session again; 0 when the
        refusal is not one that passes (a wrong password) or the budget is spent."""
        reason = _refused_for_now(problem)
        if reason is None:
            return 0.0
        if reason == _NO_SLOT_REASON:
            self._scarce_until = time.monotonic() + SCARCE_S
        import random

        delay = min(delay * 2, _SLOT_WAIT_MAX_S) if delay else _SLOT_WAIT_FIRST_S
        if time.monotonic() + delay - began > SLOT_WAIT_S:
            return 0.0
        import logging

        logging.getLogger("assetcache").info(
            "ledger %s: %s; asking again in %.1f s", self.path, reason, delay
        )
        return delay * random.uniform(0.5, 1.0)  # jitter: a farm must not retry in step

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        self.ensure_ready()
        with self._raw_session() as conn:
            yield conn

    def ensure_ready(self) -> None:
        """Before a session: the schema checked (migrated if need be) on the first, and the
        spool merged whenever it holds uploads (not only before the next recording: until then
        a lookup in this process would not find its own paid upload and pay again, and a forget
        of it would miss it and be undone by the merge)."""
        if not self._ready:
            with self._schema_guard:  # one migration (one Alembic session) per process
                if not self._ready:
                    self._ensure_schema()
                    self._ready = True
        if self._spool_due():
            self._merge_spool()

    @property
    def ready(self) -> bool:
        """Whether a session may begin without ``ensure_ready`` doing anything first."""
        return self._ready and not self._spool_due()

    def _spool_due(self) -> bool:
        # After a failed merge, sessions go straight to their own work for SPOOL_RETRY_S: a
        # server that does not answer would otherwise cost each of them two connect timeouts.
        return self._spool_waiting and time.monotonic() >= self._spool_retry_at

    @property
    def closed(self) -> bool:
        return self._closed

    def closed_error(self) -> LedgerError:
        return self.fail("is closed")

    @contextlib.contextmanager
    def _raw_session(self) -> Iterator[Any]:
        """The process's one session, for this thread's turn (opened if need be)."""
        with self.latency.timing(), self._turn_on_session() as conn:
            yield conn

    def urgently(self) -> contextlib.AbstractContextManager[None]:
        """This thread's statements go before those of threads that only wait (a holder's)."""
        return self._turn.urgent()

    @contextlib.contextmanager
    def _turn_on_session(self) -> Iterator[Any]:
        if not self._turn.acquire(timeout=SESSION_TURN_S):
            raise self.fail(
                f"was busy: this process's session stayed in use for {SESSION_TURN_S:.0f} s",
                hint="; the server may be overloaded: check it, then retry",
            )
        failure: BaseException | None = None
        try:
            if self._closed:
                raise self.closed_error()
            conn, pooled = self._conn, self._conn is not None and not self._conn.closed
            if not pooled:
                conn = self._conn = self.connect()
            WATCHDOG.in_use(conn)
            try:
                with WATCHDOG.watching(conn, conn.fileno, SESSION_DEADLINE_S):
                    yield conn
            except _driver().Error as exc:
                self._drop(conn)  # a session that failed may be broken: never used again
                failure = exc
            except BaseException:
                self._drop(conn)
                raise
            else:
                if self._closed or conn.closed or WATCHDOG.was_cut(conn):
                    self._drop(conn)
                else:
                    closer = functools.partial(self._close_idle, conn)
                    WATCHDOG.close_when_idle(conn, IDLE_CLOSE_S, closer)
        finally:
            self._turn.release()
        if failure is not None:
            raise self.session_failure(failure, pooled=pooled, cut=WATCHDOG.was_cut(conn))

    def slots_scarce(self) -> bool:
        """Whether the server refused this process a slot lately: then lease waiters poll less
        often (``leases``), leaving the server's time to those who record."""
        return time.monotonic() < self._scarce_until

    def _drop(self, conn: Any) -> None:
        """Close ``conn`` (under the caller's turn) and forget it if it is the session."""
        if self._conn is conn:
            self._conn = None
        with contextlib.suppress(Exception):
            conn.close()

    def _close_idle(self, conn: Any) -> None:
        """The watchdog's call once the session sat idle for IDLE_CLOSE_S: close it, unless
        someone is using it right now (they schedule the next idle close when done)."""
        if self.locks.holding():
            # A holder's renewals and recording are what every waiter waits for: it keeps
            # its slot rather than queue for one behind them.
            WATCHDOG.close_when_idle(conn, IDLE_CLOSE_S, functools.partial(self._close_idle, conn))
            return
        if self._turn.acquire(blocking=False):
            try:
                if self._conn is conn:
                    self._drop(conn)
            finally:
                self._turn.release()

    def run(self, work: Callable[[Any], _T]) -> _T:
        """``work(session)`` on the process's session; asked once more on a new session when a
        restart dropped the idle one (``work`` must be safe to repeat)."""
        try:
            with self._session() as conn:
                return work(conn)
        except StaleSession:
            with self._session() as conn:
                return work(conn)

    def not_answering(self) -> LedgerError:
        return self.fail(
            f"did not answer within {SESSION_DEADLINE_S:.0f} s",
            hint="; the server is stopped or overloaded: check it, then retry",
        )

    def session_failure(self, exc: BaseException, *, pooled: bool, cut: bool) -> LedgerError:
        if cut:
            return self.not_answering()
        if pooled and isinstance(exc, _driver().OperationalError):
            # Likely every idle session died with it (a restart): the asyncio ones too.
            if self._async is not None:
                self._async.drop_idle()
            error = self.fail("cannot be read or written", exc)
            return StaleSession(str(error), path=self.path)
        return self.fail("cannot be read or written", exc)

    def close(self) -> None:
        with self._guard:
            self._closed = True
        if self._conn is not None:
            # A session in use now is closed by its user on the way out (it sees _closed).
            self._close_idle(self._conn)
        if self._async is not None:
            self._async.close()
        self.locks.close()
        self._local.close()

    def forget_inherited(self) -> None:
        """In a forked child: the parent's sockets are shared, so drop them, never close."""
        _INHERITED.append(self._conn)
        self._conn = None
        self._turn = SessionTurn()
        self._schema_guard = threading.Lock()
        self._guard = threading.Lock()
        if self._async is not None:
            self._async.forget_inherited()
        self.locks.forget_inherited()
        self._local.forget_inherited()

    # -- schema --------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        version = self._schema_version()
        if version == schema.HEAD:
            return
        if version is not None and version not in schema.REVISIONS:
            raise self.fail(
                f"was written by a newer assetcache (schema {version})",
                hint="; upgrade assetcache or use another ledger",
            )
        if self._conn is not None:
            self._close_idle(self._conn)  # Alembic brings its own session: one at a time
        self._migrate()
        if self._schema_version() != schema.HEAD:
            raise self.fail("migration did not reach the current schema")

    def _schema_version(self) -> str | None:
        with self._raw_session() as conn:
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            }
            if "alembic_version" not in tables:
                if tables:
                    raise self.fail(
                        "is a PostgreSQL database with other tables, not an assetcache ledger",
                        hint="; give a database of its own",
                    )
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])

    def _migrate(self) -> None:
        # Imported here: a current ledger never pays for Alembic and SQLAlchemy.
        from .migrate import upgrade_to_head

        # The advisory lock first: processes opening a new database at once queue there, and
        # each after the first finds the schema at head (PostgreSQL's DDL is transactional).
        first = ("SELECT pg_advisory_xact_lock(:key)", {"key": _MIGRATION_LOCK})
        problem: Exception | None = None
        try:
            upgrade_to_head("postgresql+psycopg://", self._plain_connection, first=first)
        except Exception as exc:
            problem = exc
        if problem is not None:
            raise self.fail("could not be migrated to the current schema", problem)

    def _plain_connection(self) -> Any:
        """Alembic's session: it waits for a free slot like any other (a farm's first
        processes all open a new database at once)."""
        psycopg = self.driver()
        return self._connected(
            lambda: psycopg.connect(
                self._secret.reveal(), connect_timeout=CONNECT_TIMEOUT_S, prepare_threshold=None
            )
        )

    # -- queries -------------------------------------------------------------------------

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Asset]:
        statement = as_psycopg(sql)
        return self.run(lambda conn: [asset_from_row(r) for r in conn.execute(statement, params)])

    def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None:
        """From what this machine knows (its mirror, when it read the key recently, and its
        spool) unless ``fresh``; else from the server (then mirrored), weighed against the
        spool: an upload this machine paid for is an answer whether or not merged yet."""
        moment = datetime.now(UTC) if now is None else now
        if not fresh and (known := self.from_mirror(sha256, email, moment)) is not None:
            return known
        # The spool before the server: a merge moves a row from the spool to the server, never
        # out of sight of a read that looks there first. (Not fresh, ``from_mirror`` has just
        # looked at the spool and found no candidate.)
        spooled = self.spooled_newest(sha256, email, moment) if fresh else None
        began = _rules.machine_ns()
        rows = self._rows(schema.SELECT_NEWEST, newest_params(sha256, email, moment))
        return self.answered(sha256, email, rows[0] if rows else None, spooled, moment, began)

    def from_mirror(self, sha256: str, email: str, now: datetime) -> Asset | None:
        """What this machine knows of a key: its mirror's row, if read within the mirror's
        window (``sqlite_file.mirror_window``), or its spool's, whichever expires later."""
        return self._local.mirrored(sha256, email, now=now)

    def spooled_newest(self, sha256: str, email: str, now: datetime) -> Asset | None:
        """The spool's candidate for a key: its newest credible, unrevoked upload."""
        return self._local.spooled_newest(sha256, email, now=now)

    def answered(
        self,
        sha256: str,
        email: str,
        answer: Asset | None,
        spooled: Asset | None,
        seen_at: datetime,
        seen_ns: int,
    ) -> Asset | None:
        """After the server answered a read that began at ``seen_at`` (``seen_ns`` by the
        machine clock): mirror its answer, and return it or the spool's candidate, whichever
        expires later (the server's on a tie)."""
        self.remember(sha256, email, answer, seen_at, seen_ns)
        if spooled is not None and (answer is None or spooled.expires_at > answer.expires_at):
            return spooled
        return answer

    def async_side(self) -> AsyncDriver:
        return self.async_sessions()

    def async_sessions(self) -> AsyncDriver:
        """This ledger through psycopg's asyncio driver (AsyncAssetCache's resolve path, and
        the leases it holds and waits for), made on first use."""
        with self._guard:
            if self._async is None:
                if self._async_driver is None:
                    raise self.fail(
                        "was opened without an asyncio driver",
                        hint="; open it with assetcache.ledger.open_engine",
                    )
                self._async = self._async_driver(self)
            return self._async

    def remember(
        self, sha256: str, email: str, asset: Asset | None, seen_at: datetime, seen_ns: int
    ) -> None:
        """Mirror what the shared ledger held for a key at a moment (``Ledger.mirror``)."""
        with contextlib.suppress(LedgerError):  # a mirror that cannot be written only costs speed
            self._local.mirror(sha256, email, asset, seen_at=seen_at, seen_ns=seen_ns)

    def record(self, asset: Asset) -> Asset:
        """Insert the row and release the key's lease in one transaction; the answer (see
        ``recorded``). A database that blinks is retried: the upload was paid for. Past
        RECORD_RETRY_S the row goes to this machine's spool, merged into the shared ledger by
        the next session that reaches it (this process's or any later one's on this machine)."""
        lease = self.locks.held(asset.sha256, asset.email)
        deadline = time.monotonic() + RECORD_RETRY_S
        delay = 0.2
        while True:
            began = _rules.machine_ns()
            try:
                with self._session() as conn, conn.transaction():
                    written = _write_upload(conn, asset, lease)
            except LedgerError as exc:
                if self.give_up_recording(deadline, delay):
                    return self.spool(asset, exc)
                time.sleep(delay)
                delay = next_delay(delay)
                continue
            return self.recorded(self.with_takers_answer(written), began)

    def with_takers_answer(self, written: Written) -> Written:
        """A resolver whose lease was taken over while it uploaded, and that found no live row
        when it recorded, was quicker than the taker, which is uploading still: wait for the
        taker's row (while its lease lives), so that every resolver is given one ref. If the
        taker gives up, this resolver's caller keeps its own ref (its row stays revoked:
        nobody else's answer)."""
        asset, row, answer = written
        if answer is not None or asset.revoked_at is None:
            return written  # not taken over, or the taker's row is in
        lease = Lease(asset.sha256, asset.email)
        began, delay = time.monotonic(), 0.05
        while time.monotonic() - began < self.locks.wait_s:
            params = newest_params(asset.sha256, asset.email, taken_over_at(asset))
            try:
                if rows := self._rows(schema.SELECT_NEWEST, params):
                    return asset, row, rows[0]
                if self.locks.holder_of(lease, strict=True) is None:
                    # The taker let go: its row is in now, or it gave up.
                    rows = self._rows(schema.SELECT_NEWEST, params)
                    return (asset, row, rows[0]) if rows else written
            except LedgerError:
                pass  # ask again: the ledger blinked
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        return written

    def give_up_recording(self, deadline: float, delay: float) -> bool:
        """Whether to stop retrying and spool: past the budget, or closed (closed by its owner
        meanwhile, it will never record; spooling then fails too, with "is closed", as SQLite's
        record does, instead of retrying for RECORD_RETRY_S)."""
        return self._closed or time.monotonic() + delay > deadline

    def recorded(self, written: Written, began: int) -> Asset:
        """After the row is in: mirror the key as the ledger now answers it, and return this
        resolver's answer. That is its own upload, unless its lease was taken over while it
        uploaded (it was stopped, or cut off): then its row is history, revoked at once, and
        the answer is the taker's row when there is one (every resolver gets the same ref).
        Stamped no later than the server took it: since the upload by the wall clock (the
        cache's clock, like every other time here), since the statement (``began``) by the
        machine clock. A ref the server handed out again after a forget stays revoked."""
        asset, row, answer = written
        recorded = replace(asset, id=row[0], revoked_at=None)
        held = recorded if row[1] is None else replace(recorded, revoked_at=row[1])
        self.remember(asset.sha256, asset.email, answer or held, asset.uploaded_at, began)
        return answer or recorded

    def spool(self, asset: Asset, failure: LedgerError) -> Asset:
        """Keep a paid upload the shared ledger could not record; the ref itself is good."""
        try:
            self._local.record(asset)  # mirrored_at stays NULL: spooled, not mirrored
        except LedgerError:
            raise failure from None  # neither can keep it: the shared ledger's failure is news
        self._spool_waiting = True
        import logging

        logging.getLogger("assetcache").warning(
            "%s; the upload of %s is kept in this machine's spool and recorded there when the "
            "ledger answers again",
            failure,
            asset.asset_ref,
        )
        return asset

    def _merge_spool(self) -> None:
        """Merge into the shared ledger what this machine spooled (a chore: a failure leaves
        the spool for the next session). A row a forget revoked between the merge's read and
        its write was sent live, and stays spooled (UNSPOOL): a second walk carries the
        revocation at once. Never more than two walks: whatever stays after them (only a
        spool written to all along) is the next session's."""
        self._spool_waiting = False  # first: the merge's own sessions must not merge again
        try:
            if self._merge_walk():
                self._spool_waiting = self._merge_walk()
        except LedgerError:
            self._spool_waiting = True
            self._spool_retry_at = time.monotonic() + SPOOL_RETRY_S

    def _merge_walk(self) -> bool:
        """One walk through the spool, batch by batch; whether a merged row stayed in it."""
        stayed, after = False, 0
        while batch := self._local.spooled(SPOOL_BATCH, after=after):
            self._merge(batch)
            stayed = self._local.unspool(batch) < len(batch) or stayed
            after = max(a.id or 0 for a in batch)
        return stayed

    def set_source(self, row_id: int, source: str, host: str) -> None:
        """Nothing: a cache hit never writes to a shared ledger (every machine's hits would
        contend for it). The source recorded with the upload stays."""

    def file_stat(self, path: str) -> FileStat | None:
        return self._local.file_stat(path)

    def put_file_stat(self, entry: FileStat) -> None:
        self._local.put_file_stat(entry)

    def assets(
        self,
        *,
        email: str | None = None,
        live_after: datetime | None = None,
        expires_until: datetime | None = None,
    ) -> list[Asset]:
        given = {"email": email, "live_after": live_after, "expires_until": expires_until}
        params = {name: value for name, value in given.items() if value is not None}
        # The spool first: a merge meanwhile moves a row to the server, never out of sight.
        spooled = self._local.spooled_assets(
            email=email, live_after=live_after, expires_until=expires_until
        )
        return with_spooled(self._rows(schema.select_assets(*params), params), spooled)

    def prune(
        self,
        *,
        email: str | None,
        expired_before: datetime | None,
        uploaded_before: datetime | None,
        dry_run: bool,
        now: datetime | None = None,
    ) -> Iterator[Asset]:
        params: dict[str, Any] = {
            "email": email,
            "expired_before": expired_before,
            "uploaded_before": uploaded_before,
            **_bounds(now),
        }
        read = functools.partial(self._rows, schema.SELECT_PRUNE_BATCH)
        for batch in in_id_order(read, params):
            if not dry_run:
                with self._session() as conn, conn.transaction():
                    ids = [a.id for a in batch]
                    conn.execute("DELETE FROM uploads WHERE id = ANY(%(ids)s)", {"ids": ids})
            yield from batch

    def export(self, *, email: str | None, live_after: datetime | None) -> Iterator[Asset]:
        """The shared ledger's rows in id order, then this machine's spooled uploads it does
        not hold yet (a spooled revocation of a row it holds revokes it here)."""
        params = {"email": email, "live_after": live_after}
        mine = self._local.spooled_assets(email=email, live_after=live_after)  # first
        spooled = {upload_key(a): a for a in mine}
        read = functools.partial(self._rows, schema.SELECT_EXPORT_BATCH)
        for batch in in_id_order(read, params):
            yield from (with_revocation(a, spooled.pop(upload_key(a), None)) for a in batch)
        yield from spooled.values()

    def merge(self, assets: Iterable[Asset]) -> list[MergeOutcome]:
        batch = list(assets)
        try:
            return self._merge(batch)
        except StaleSession:  # the transaction never began or rolled back: safe to repeat
            return self._merge(batch)

    def _merge(self, assets: list[Asset]) -> list[MergeOutcome]:
        with self._session() as conn, conn.transaction():
            return _merged(conn, assets)

    def revoke(
        self, *, sha256: str | None, asset_ref: str | None, email: str | None, at: datetime
    ) -> list[Asset]:
        """The live rows of one content or one ref revoked, in the shared ledger and in this
        machine's spool. The spool first, at once, whether or not the server answers: this
        machine never hands a spooled upload out again, and a merge carries the revocation
        (one that read the row before stays from unspooling it: UNSPOOL). The server's
        transaction then also merges those revoked uploads in, so a merge racing it can never
        leave them live there: whichever commits second finds the row and keeps it revoked."""
        spooled = self._local.revoke_spooled(sha256=sha256, asset_ref=asset_ref, email=email, at=at)
        if spooled:
            self._spool_waiting = True  # should the server not answer now
        params: dict[str, Any] = {"email": email, "now": at}
        if sha256 is not None:
            query, params["sha256"] = schema.SELECT_BY_CONTENT, sha256
        else:
            query, params["asset_ref"] = schema.SELECT_BY_REF, asset_ref
        with self._session() as conn, conn.transaction():
            held = conn.execute(as_psycopg(query) + " FOR UPDATE", params)
            rows = [asset_from_row(r) for r in held]
            for asset in rows:
                conn.execute(as_psycopg(schema.REVOKE_UPLOAD), {"id": asset.id, "revoked_at": at})
            _merged(conn, spooled)
        # After the commit, by the machine clock: later than any read that could have missed it.
        seen_ns = _rules.machine_ns()
        if spooled:
            with contextlib.suppress(LedgerError):  # else the next merge finds them there
                self._local.unspool(spooled)
        revoked = [replace(a, revoked_at=at) for a in rows]
        keys = {upload_key(a) for a in revoked}
        revoked += [a for a in spooled if upload_key(a) not in keys]
        for asset in revoked:  # this machine's mirror learns it at once, as news
            self.remember(asset.sha256, asset.email, asset, at, seen_ns)
        return revoked


#: What recording wrote: the row as written, (id, revoked_at) as held, and the key's live row
#: when this resolver's lease was taken over (the answer instead of its own).
Written = tuple[Asset, tuple[int, "datetime | None"], "Asset | None"]


def _write_upload(conn: Any, asset: Asset, lease: Lease | None) -> Written:
    """Inside the recording transaction: release the lease and insert the row (see
    ``PostgresLedger.recorded``; the asyncio twin is ``postgres_async._write_upload``)."""
    answer = None
    if lease is not None and not conn.execute(RELEASE, lease.params).rowcount:
        params = newest_params(asset.sha256, asset.email, taken_over_at(asset))
        rows = conn.execute(as_psycopg(schema.SELECT_NEWEST), params).fetchall()
        answer = asset_from_row(rows[0]) if rows else None
        asset = superseded(asset)
    row = conn.execute(as_psycopg(schema.RECORD_UPLOAD), upload_params(asset)).fetchone()
    return asset, (row[0], row[1]), answer


def taken_over_at(asset: Asset) -> datetime:
    """ "Now" for a resolver that finds its lease taken over (never before its own upload)."""
    return max(datetime.now(UTC), asset.uploaded_at)


def superseded(asset: Asset) -> Asset:
    """The row of an upload whose lease was taken over meanwhile: kept (it was paid for) but
    revoked from the start, so it is nobody else's answer."""
    return replace(asset, revoked_at=asset.uploaded_at)


def _merged(conn: Any, assets: list[Asset]) -> list[MergeOutcome]:
    """Merge uploads into the shared ledger within ``conn``'s transaction (as an import: each
    ``added``, ``revoked`` or ``skipped``)."""
    outcomes: list[MergeOutcome] = []
    for asset in assets:
        params = upload_params(asset)
        if conn.execute(as_psycopg(schema.MERGE_UPLOAD), params).rowcount:
            outcomes.append("added")
            continue
        held = conn.execute(as_psycopg(schema.SELECT_SAME_UPLOAD), params).fetchone()
        outcome = merge_outcome(held, asset)
        if outcome == "revoked":
            revoke = {"id": held[0], "revoked_at": asset.revoked_at}
            conn.execute(as_psycopg(schema.REVOKE_UPLOAD), revoke)
        outcomes.append(outcome)
    return outcomes


def upload_key(asset: Asset) -> tuple[str, str, str]:
    """What makes two rows the same upload (``ux_uploads_upload``)."""
    return (asset.asset_ref, asset.sha256, asset.email)


def with_revocation(held: Asset, spooled: Asset | None) -> Asset:
    """A row of the shared ledger, revoked if this machine's spool holds it revoked (a forget
    made here that a merge has not carried there yet)."""
    if spooled is None or spooled.revoked_at is None or held.revoked_at is not None:
        return held
    return replace(held, revoked_at=spooled.revoked_at)


def with_spooled(rows: list[Asset], spooled: list[Asset]) -> list[Asset]:
    """A listing of the shared ledger (sorted by expiry) with this machine's spooled uploads
    it does not hold yet, still sorted by expiry (the shared ledger's rows first on a tie)."""
    if not spooled:
        return rows
    mine = {upload_key(a): a for a in spooled}
    listed = [with_revocation(a, mine.pop(upload_key(a), None)) for a in rows]
    return sorted(listed + list(mine.values()), key=lambda a: a.expires_at)


def next_delay(delay: float) -> float:
    """Backoff between attempts to record: doubling, at most 5 s."""
    return min(delay * 2, 5.0)


def newest_params(sha256: str, email: str, now: datetime) -> dict[str, Any]:
    return {"sha256": sha256, "email": email, **_bounds(now)}


def _bounds(now: datetime | None) -> dict[str, datetime]:
    moment = datetime.now(UTC) if now is None else now
    return {"now": moment, "latest": moment + _rules.RETENTION}


def _one_line(exc: BaseException | None) -> str:
    return " ".join(str(exc).split())[:300] if exc is not None else ""


_NO_SLOT_REASON: Final = "the server has no free connection slots"


def _refused_for_now(exc: BaseException | None) -> str | None:
    """Why the server refused a session for a while (no free slot, starting up), or None."""
    state = getattr(exc, "sqlstate", None)
    text = str(exc).lower()
    if state == _NO_SLOT or any(t in text for t in _NO_SLOT_TEXTS):
        return _NO_SLOT_REASON
    if state == _STARTING or any(t in text for t in _STARTING_TEXTS):
        return "the server is starting up"
    return None


def _hint(exc: BaseException | None) -> str:
    text = str(exc)
    # The server's words, and PgBouncer's (which checks the password itself).
    if "password authentication failed" in text or "SASL authentication failed" in text:
        return "; check the user and password in the URL"
    if "does not exist" in text:
        return "; create the database first (CREATE DATABASE), or fix its name in the URL"
    return "; check that the server is running and reachable, and the URL"
