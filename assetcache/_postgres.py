"""The ledger in PostgreSQL: one ledger shared by every machine of a team.

Chosen by ``_engine.open_engine`` for ``postgresql://`` URLs; imported only then, so the SQLite
path never imports psycopg. The same Alembic revisions and the same queries (``_schema.py``)
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
- **Single flight across machines**: the local lock first (threads and processes of this
  machine queue without touching the server), then ``pg_try_advisory_lock`` on a dedicated
  session of this process, polled with backoff. The server frees a session's advisory locks
  when the session ends: at once when its process dies and the kernel closes the socket, and
  within ``LOCK_SESSION_OPTIONS``' keepalive bound (about 30 s) when its machine vanishes from
  the network. Needs a session-level pooler mode: PgBouncer in transaction pooling would hand
  the lock's session to someone else (use session pooling, or connect directly).
- **What is per machine stays local**: the stat cache lives in a SQLite file in the user cache
  dir (named for the database the URL connects to), never in the shared database.
- **A mirror for fast hits**: that same local file mirrors the rows this machine has read from
  the shared ledger, each with the time it was read. A lookup answers from the mirror when the
  key's row was read within ``MIRROR_TTL``, without opening a session or importing psycopg
  (which alone costs more than a whole SQLite hit). Why that is safe: a mirrored row passes the
  same checks as any row (live, credible, unrevoked, with ``min_remaining`` left), and the
  shared ledger never shortens a row's life; the only news the mirror can miss is a ``forget``
  made on another machine, which reaches this one within ``MIRROR_TTL``. A forget made here
  updates the mirror at once.

- **asyncio**: ``_postgres_async.AsyncSessions`` is this ledger through psycopg's
  ``AsyncConnection``, for AsyncAssetCache's resolve path; everything above applies to it.
- **A stopped server** (processes stopped, kernel alive: TCP still acknowledged) is noticed by
  this client's clock (``_deadline``): a statement waiting past ``SESSION_DEADLINE_S`` has its
  session cut. A pooled session a restart dropped is asked again once (``StaleSession``).
- **A paid upload is never lost**: recording retries for RECORD_RETRY_S, then spools the row in
  the local file until a session can merge it.

The URL's password is a secret like the API token: it is kept in a ``Secret``, never in a
message, a repr or ``path`` (which shows the URL with ``***``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from . import _hit, _schema
from ._asset import RETENTION, Asset
from ._config import Secret
from ._deadline import WATCHDOG
from ._engine import in_id_order
from ._errors import LedgerError
from ._locks import KeyLocks
from ._machine_file import open_machine_file
from ._pgurl import Secrets
from ._pgurl import hint as url_hint
from ._sqlite_ledger import (
    FileStat,
    MergeOutcome,
    asset_from_row,
    merge_outcome,
    without_password,
)

if TYPE_CHECKING:
    from ._postgres_async import AsyncSessions

#: The shared queries are written with ``:name`` parameters (sqlite3's style).
_PARAM: Final = re.compile(r":([a-z_][a-z0-9_]*)")
#: How long a waiter polls for a key another machine holds before giving up: longer than any
#: upload can take (RetryPolicy's default budget is 180 s), so a live holder always finishes.
LOCK_WAIT_S: Final = 600.0
_POLL_MIN_S: Final = 0.01
_POLL_MAX_S: Final = 0.25
#: Keepalives for the lock session: the server notices a vanished holder within about
#: 10 + 5 * 3 s, and tcp_user_timeout bounds a holder that vanished with unacknowledged data.
LOCK_SESSION_OPTIONS: Final = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=25000"
)
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
MIRROR_TTL: Final = _hit.MIRROR_TTL


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


class PostgresLedger:
    """A ledger in a PostgreSQL database. Thread-safe: a small pool of sessions."""

    def __init__(self, url: str) -> None:
        self.path = without_password(url)
        self._secret = Secret(_conninfo(url))
        self._idle: list[Any] = []
        self._guard = threading.Lock()
        self._closed = False
        self._ready = False  # schema checked (and migrated) by the first session
        # The local spool may hold uploads not yet merged (this process's or an earlier one's):
        # looked at by the first session, and again after each upload spooled.
        self._spool_waiting = True
        self._spool_retry_at = 0.0  # after a failed merge: when to try again (monotonic)
        # This machine's stat cache, mirror, spool and lock folder.
        self._local = open_machine_file(url)
        self.locks = AdvisoryLocks(self, self._local.locks)
        self._async: AsyncSessions | None = None

    def __repr__(self) -> str:
        return f"PostgresLedger({self.path!r})"

    # -- sessions ------------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException | None = None, hint: str = "") -> LedgerError:
        detail = f" ({_one_line(exc)})" if exc is not None else ""
        # libpq quotes what it cannot parse, password and all, and a host holding a piece of a
        # password split at a raw "@": scrub each, as written and decoded (see _pgurl.Secrets).
        detail = Secrets(self._secret.reveal()).mask(detail)
        return LedgerError(f"ledger {self.path}: {what}{detail}{hint}", path=self.path)

    def driver(self) -> Any:
        """psycopg, or the LedgerError naming the extra that brings it."""
        psycopg = _driver()
        if psycopg is None:
            raise self._fail(
                "a PostgreSQL ledger needs psycopg, which is not installed",
                hint="; install assetcache with its postgres extra (assetcache[postgres])",
            )
        return psycopg

    def conninfo(self, options: str | None) -> str:
        """The connection string, password included: pass it straight to the driver, never
        keep it in a variable (frames are shown by tracebacks and debuggers)."""
        return str(
            self.driver().conninfo.make_conninfo(
                self._secret.reveal(), options=options, **CLIENT_KEEPALIVES
            )
        )

    def unreachable(self, problem: BaseException) -> LedgerError:
        return self._fail(
            "cannot be reached", problem, _hint(problem) + url_hint(self._secret.reveal())
        )

    def connect(self, *, options: str | None = None) -> Any:
        """A new autocommit session with client-side binding, or LedgerError."""
        psycopg = self.driver()
        problem: Exception | None = None
        try:
            return psycopg.connect(
                self.conninfo(options),
                autocommit=True,
                cursor_factory=_watched_cursor(psycopg),
                connect_timeout=CONNECT_TIMEOUT_S,
            )
        except psycopg.Error as exc:
            problem = exc
        # Raised outside the except block: no traceback keeps a frame holding the password.
        raise self.unreachable(problem)

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
            self._ensure_schema()  # once: concurrent first callers both find it current
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
        return self._fail("is closed")

    def lost_lock_session(self, problem: BaseException) -> LedgerError:
        return self._fail("lost its lock session", problem)

    def _keep_idle(self, conn: Any) -> bool:
        """Pool a session that is still good; False means "close it"."""
        with self._guard:
            keep = not self._closed and len(self._idle) < 8 and not conn.closed
            keep = keep and not WATCHDOG.was_cut(conn)
            if keep:
                self._idle.append(conn)
        return keep

    @contextlib.contextmanager
    def _raw_session(self) -> Iterator[Any]:
        psycopg = _driver()
        with self._guard:
            if self._closed:
                raise self.closed_error()
            conn = self._idle.pop() if self._idle else None
        pooled = conn is not None
        if conn is None:
            conn = self.connect()
        try:
            with WATCHDOG.watching(conn, conn.fileno, SESSION_DEADLINE_S):
                yield conn
        except psycopg.Error as exc:
            conn.close()  # a session that failed may be broken: never pooled again
            failure: BaseException = exc
        except BaseException:
            conn.close()
            raise
        else:
            if not self._keep_idle(conn):
                conn.close()
            return
        raise self.session_failure(failure, pooled=pooled, cut=WATCHDOG.was_cut(conn))

    def not_answering(self) -> LedgerError:
        return self._fail(
            f"did not answer within {SESSION_DEADLINE_S:.0f} s",
            hint="; the server is stopped or overloaded: check it, then retry",
        )

    def session_failure(self, exc: BaseException, *, pooled: bool, cut: bool) -> LedgerError:
        if cut:
            return self.not_answering()
        if pooled and isinstance(exc, _driver().OperationalError):
            # Likely every idle session died with it (a restart): drop them all.
            with self._guard:
                stale, self._idle = self._idle, []
            for conn in stale:
                with contextlib.suppress(Exception):
                    conn.close()
            if self._async is not None:
                self._async.drop_idle()
            error = self._fail("cannot be read or written", exc)
            return StaleSession(str(error), path=self.path)
        return self._fail("cannot be read or written", exc)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            sessions, self._idle = self._idle, []
        for conn in sessions:
            with contextlib.suppress(Exception):
                conn.close()
        if self._async is not None:
            self._async.close()
        self.locks.close()
        self._local.close()

    def forget_inherited(self) -> None:
        """In a forked child: the parent's sockets are shared, so drop them, never close."""
        _INHERITED.append(self._idle)
        self._idle = []
        self._guard = threading.Lock()
        if self._async is not None:
            self._async.forget_inherited()
        self.locks.forget_inherited()
        self._local.forget_inherited()

    # -- schema --------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        version = self._schema_version()
        if version == _schema.HEAD:
            return
        if version is not None and version not in _schema.REVISIONS:
            raise self._fail(
                f"was written by a newer assetcache (schema {version})",
                hint="; upgrade assetcache or use another ledger",
            )
        self._migrate()
        if self._schema_version() != _schema.HEAD:
            raise self._fail("migration did not reach the current schema")

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
                    raise self._fail(
                        "is a PostgreSQL database with other tables, not an assetcache ledger",
                        hint="; give a database of its own",
                    )
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        from ._sqlite_ledger import _migrations_dir

        engine = create_engine(
            "postgresql+psycopg://", creator=self._plain_connection, poolclass=NullPool
        )
        config = Config()
        config.set_main_option("script_location", str(_migrations_dir()))
        problem: Exception | None = None
        try:
            with engine.connect() as conn, conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except Exception as exc:
            problem = exc
        finally:
            engine.dispose()
        if problem is not None:
            raise self._fail("could not be migrated to the current schema", problem)

    def _plain_connection(self) -> Any:
        return _driver().connect(self._secret.reveal(), connect_timeout=10)

    # -- queries -------------------------------------------------------------------------

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Asset]:
        try:
            with self._session() as conn:
                return [asset_from_row(r) for r in conn.execute(as_psycopg(sql), params)]
        except StaleSession:  # a read is safe to repeat, once, on a new session
            with self._session() as conn:
                return [asset_from_row(r) for r in conn.execute(as_psycopg(sql), params)]

    def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None:
        """From this machine's mirror when it read the key recently (unless ``fresh``), else
        from the server (then mirrored)."""
        moment = datetime.now(UTC) if now is None else now
        if not fresh and (mirrored := self.from_mirror(sha256, email, moment)) is not None:
            return mirrored
        rows = self._rows(_schema.SELECT_NEWEST, newest_params(sha256, email, moment))
        self.remember(sha256, email, rows[0] if rows else None, moment)
        return rows[0] if rows else None

    def from_mirror(self, sha256: str, email: str, now: datetime) -> Asset | None:
        return self._local.mirrored(sha256, email, now=now, seen_after=_hit.mirror_since(now))

    def async_side(self) -> AsyncSessions:
        return self.async_sessions()

    def async_sessions(self) -> AsyncSessions:
        """This ledger through psycopg's asyncio driver (AsyncAssetCache's resolve path)."""
        with self._guard:
            if self._async is None:
                from ._postgres_async import AsyncSessions

                self._async = AsyncSessions(self)
            return self._async

    def remember(self, sha256: str, email: str, asset: Asset | None, seen_at: datetime) -> None:
        with contextlib.suppress(LedgerError):  # a mirror that cannot be written only costs speed
            self._local.mirror(sha256, email, asset, seen_at=seen_at)

    def record(self, asset: Asset) -> Asset:
        """Insert the row; a database that blinks is retried: the upload was paid for. Past
        RECORD_RETRY_S the row goes to this machine's spool, merged into the shared ledger by
        the next session that reaches it (this process's or any later one's on this machine)."""
        deadline = time.monotonic() + RECORD_RETRY_S
        delay = 0.2
        while True:
            try:
                with self._session() as conn, conn.transaction():
                    sql = as_psycopg(_schema.RECORD_UPLOAD)
                    row = conn.execute(sql, upload_params(asset)).fetchone()
            except LedgerError as exc:
                if self.give_up_recording(deadline, delay):
                    return self.spool(asset, exc)
                time.sleep(delay)
                delay = next_delay(delay)
                continue
            return self.recorded(asset, row[0], row[1])

    def give_up_recording(self, deadline: float, delay: float) -> bool:
        """Whether to stop retrying and spool: past the budget, or closed (closed by its owner
        meanwhile, it will never record; spooling then fails too, with "is closed", as SQLite's
        record does, instead of retrying for RECORD_RETRY_S)."""
        return self._closed or time.monotonic() + delay > deadline

    def recorded(self, asset: Asset, row_id: int, revoked_at: datetime | None) -> Asset:
        """After the row is in: mirror it as the ledger holds it (a ref the server handed out
        again after a forget stays revoked there, and so in the mirror)."""
        recorded = replace(asset, id=row_id)
        held = recorded if revoked_at is None else replace(recorded, revoked_at=revoked_at)
        # Known since it was uploaded: the cache's clock, like every other time here.
        self.remember(asset.sha256, asset.email, held, asset.uploaded_at)
        return recorded

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
        the spool for the next session)."""
        self._spool_waiting = False  # first: the merge's own sessions must not merge again
        try:
            while batch := self._local.spooled(SPOOL_BATCH):
                self._merge(batch)
                self._local.unspool(batch)
        except LedgerError:
            self._spool_waiting = True
            self._spool_retry_at = time.monotonic() + SPOOL_RETRY_S

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
        return self._rows(_schema.select_assets(*params), params)

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
        read = functools.partial(self._rows, _schema.SELECT_PRUNE_BATCH)
        for batch in in_id_order(read, params):
            if not dry_run:
                with self._session() as conn, conn.transaction():
                    ids = [a.id for a in batch]
                    conn.execute("DELETE FROM uploads WHERE id = ANY(%(ids)s)", {"ids": ids})
            yield from batch

    def export(self, *, email: str | None, live_after: datetime | None) -> Iterator[Asset]:
        params = {"email": email, "live_after": live_after}
        read = functools.partial(self._rows, _schema.SELECT_EXPORT_BATCH)
        for batch in in_id_order(read, params):
            yield from batch

    def merge(self, assets: Iterable[Asset]) -> list[MergeOutcome]:
        batch = list(assets)
        try:
            return self._merge(batch)
        except StaleSession:  # the transaction never began or rolled back: safe to repeat
            return self._merge(batch)

    def _merge(self, assets: list[Asset]) -> list[MergeOutcome]:
        outcomes: list[MergeOutcome] = []
        with self._session() as conn, conn.transaction():
            for asset in assets:
                params = upload_params(asset)
                if conn.execute(as_psycopg(_schema.MERGE_UPLOAD), params).rowcount:
                    outcomes.append("added")
                    continue
                held = conn.execute(as_psycopg(_schema.SELECT_SAME_UPLOAD), params).fetchone()
                outcome = merge_outcome(held, asset)
                if outcome == "revoked":
                    revoke = {"id": held[0], "revoked_at": asset.revoked_at}
                    conn.execute(as_psycopg(_schema.REVOKE_UPLOAD), revoke)
                outcomes.append(outcome)
        return outcomes

    def revoke(
        self, *, sha256: str | None, asset_ref: str | None, email: str | None, at: datetime
    ) -> list[Asset]:
        params: dict[str, Any] = {"email": email, "now": at}
        if sha256 is not None:
            query, params["sha256"] = _schema.SELECT_BY_CONTENT, sha256
        else:
            query, params["asset_ref"] = _schema.SELECT_BY_REF, asset_ref
        with self._session() as conn, conn.transaction():
            held = conn.execute(as_psycopg(query) + " FOR UPDATE", params)
            rows = [asset_from_row(r) for r in held]
            for asset in rows:
                conn.execute(as_psycopg(_schema.REVOKE_UPLOAD), {"id": asset.id, "revoked_at": at})
        revoked = [replace(a, revoked_at=at) for a in rows]
        for asset in revoked:  # this machine's mirror learns it at once, as news
            self.remember(asset.sha256, asset.email, asset, at)
        return revoked


class AdvisoryLocks:
    """Single flight across machines: this machine's lock, then a PostgreSQL advisory lock."""

    def __init__(self, ledger: PostgresLedger, local: KeyLocks) -> None:
        self._ledger = ledger
        self._local = local
        self._session: Any = None
        self._session_guard = threading.Lock()

    def _try(self, lock_id: int, *, release: bool = False) -> bool:
        sql = "SELECT pg_advisory_unlock(%s)" if release else "SELECT pg_try_advisory_lock(%s)"
        with self._session_guard:
            for _ in range(2):
                fresh = self._session is None or self._session.closed
                if fresh:
                    self._session = self._ledger.connect(options=LOCK_SESSION_OPTIONS)
                session = self._session
                try:
                    with WATCHDOG.watching(session, session.fileno, SESSION_DEADLINE_S):
                        took = bool(session.execute(sql, (lock_id,)).fetchone()[0])
                    if not WATCHDOG.was_cut(session):
                        return took
                    # Cut as the answer came: the session (and any lock it held) is gone.
                    session.close()
                    raise self._ledger.not_answering()
                except _driver().Error as exc:
                    session.close()  # a lost session has lost its locks too
                    failure = exc
                cut = WATCHDOG.was_cut(session)
                # An idle session the server dropped (a restart): asking again on a new one is
                # safe for a lock not yet held; a release has nothing left to release.
                if release or fresh or cut:
                    break
        if cut:
            raise self._ledger.not_answering()
        raise self._ledger.lost_lock_session(failure)

    def _deadline_passed(self, began: float) -> bool:
        return time.monotonic() - began > LOCK_WAIT_S

    def _timed_out(self) -> LedgerError:
        return self._ledger._fail(
            f"another process has held this image's upload lock for {LOCK_WAIT_S:.0f} s",
            hint="; retry later",
        )

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        ident = lock_id(key)
        with self._local.hold(key):
            began, delay = time.monotonic(), _POLL_MIN_S
            while not self._try(ident):
                if self._deadline_passed(began):
                    raise self._timed_out()
                time.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
            try:
                yield
            finally:
                with contextlib.suppress(LedgerError):
                    self._try(ident, release=True)

    @contextlib.asynccontextmanager
    async def ahold(self, key: str) -> AsyncIterator[None]:
        """As ``hold``, polling on the event loop through psycopg's asyncio driver (a lock
        session per event loop): waiters cost no worker threads."""
        import asyncio

        ident = lock_id(key)
        sessions = self._ledger.async_sessions()
        async with self._local.ahold(key):
            began, delay = time.monotonic(), _POLL_MIN_S
            while not await sessions.try_lock(ident):
                if self._deadline_passed(began):
                    raise self._timed_out()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
            try:
                yield
            finally:
                with contextlib.suppress(LedgerError):
                    await sessions.try_lock(ident, release=True)

    def close(self) -> None:
        with self._session_guard:
            if self._session is not None:
                with contextlib.suppress(Exception):
                    self._session.close()
                self._session = None

    def forget_inherited(self) -> None:
        _INHERITED.append(self._session)
        self._session = None
        self._session_guard = threading.Lock()
        self._local.forget_inherited()


def next_delay(delay: float) -> float:
    """Backoff between attempts to record: doubling, at most 5 s."""
    return min(delay * 2, 5.0)


def lock_id(key: str) -> int:
    """A signed 64-bit advisory lock key for a (content, account) key."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def newest_params(sha256: str, email: str, now: datetime) -> dict[str, Any]:
    return {"sha256": sha256, "email": email, **_bounds(now)}


def _bounds(now: datetime | None) -> dict[str, datetime]:
    moment = datetime.now(UTC) if now is None else now
    return {"now": moment, "latest": moment + RETENTION}


def upload_params(asset: Asset) -> dict[str, Any]:
    return {
        "sha256": asset.sha256,
        "email": asset.email,
        "asset_ref": asset.asset_ref,
        "content_type": asset.content_type,
        "size": asset.size,
        "uploaded_at": asset.uploaded_at,
        "expires_at": asset.expires_at,
        "upload_id": asset.upload_id,
        "media_url": asset.media_url,
        "source": asset.source,
        "revoked_at": asset.revoked_at,
        "host": asset.host,
    }


def _one_line(exc: BaseException | None) -> str:
    return " ".join(str(exc).split())[:300] if exc is not None else ""


def _hint(exc: BaseException | None) -> str:
    text = str(exc)
    if "password authentication failed" in text:
        return "; check the user and password in the URL"
    if "does not exist" in text:
        return "; create the database first (CREATE DATABASE), or fix its name in the URL"
    return "; check that the server is running and reachable, and the URL"
