"""The SQLite engine: a ledger in one SQLite file on this machine, its writes and its queries.

Finding, checking, opening and pooling the file, the fork hooks and the reads of a cache hit
are in ``sqlite_file.py`` (imported on every hit, so kept light); ``Ledger`` here builds the
rest on it, with the row mapping the engines share (``base.py``). The choices below hold for
both.

SQLite choices, each for a reason:

- ``journal_mode=WAL``: readers never wait for a writer, so cache hits in one process are not
  slowed by an upload being recorded in another. It persists in the file, so it is switched on
  once, when a ledger is opened, not on every pooled connection.
- ``busy_timeout`` (set by sqlite3's ``timeout``, so not repeated as a PRAGMA): a writer that
  finds the database locked waits instead of failing with "database is locked".
- ``BEGIN IMMEDIATE`` for every transaction that writes: it takes the write lock up front, so
  two writers cannot both start reading and then deadlock upgrading to write; the wait happens
  in BEGIN, under the busy timeout. Write transactions are a few statements long and never
  span a network call (the cache uploads first, then records).
- ``synchronous=FULL``: a row lost to a power cut costs a paid re-upload, and uploads are rare
  enough that one fsync per commit is free.
- Autocommit mode at the driver (``isolation_level=None``): Python's sqlite3 would otherwise
  open transactions on its own, behind our BEGIN IMMEDIATE.
- Look before changing anything: a mistaken ``--db`` (another program's database, a text file,
  a device) must be left exactly as it was. The file's type, owner, mode and header are
  checked first (``lstat``, then a read-only, non-blocking, ``O_NOFOLLOW`` descriptor), then
  its schema is read on an ordinary connection with nothing but reads: a reader creates no
  rollback journal, and in WAL mode the ``-wal``/``-shm`` it creates are removed when it
  closes (a ``?mode=ro`` connection would leave them behind). Only once the file is known to
  be a ledger (``alembic_version`` at a known revision) or empty are its mode tightened, WAL
  switched on and migrations run. The fast path stays one connection and the one version
  read: that connection then serves the lookups.
- The descriptor those checks are made on stays open while this process has the file open
  (one per file, shared by every ``LedgerFile`` on it; ``sqlite_file._FILES``): closing any
  descriptor of a file drops every POSIX lock the process holds on it, SQLite's included, and
  another process would then believe itself the last user and delete the WAL and -shm under
  this one's connections.
- The ledger and what SQLite keeps beside it (``-wal``, ``-shm``, ``-journal``) must be the
  user's own and writable by nobody else: SQLite would replay another user's journal or WAL
  into the database, and another user's ledger may hold planted rows.
- The path is resolved (symlinks followed) before anything else: SQLite keeps the WAL beside
  the name it is given, and the lock folder is named after it too, so every name must come to
  one path, or two processes would each see their own WAL (rows lost, uploads paid twice). A
  hard-linked ledger has several paths that nothing can bring to one: it is refused.
- No descriptor of the ledger is closed while SQLite has it open in this process: SQLite's
  locks are POSIX locks, which closing any descriptor of the file drops (see
  ``LedgerFile._open_file``).
- No connection is open across ``fork``: an at-fork hook closes the idle ones first (SQLite's
  per-process lock bookkeeping is inherited, so a child with an inherited open connection would
  take no real locks), and a child forked while another thread had one checked out refuses
  the ledger. Anything left over is dropped unclosed (``Ledger.forget_inherited``): closing is
  a use.

Migrations are Alembic revisions in ``migrations/`` (shipped in the wheel as
``assetcache/_migrations``), applied when a ledger is opened and found behind (``migrate.py``).
The check that it is current reads ``alembic_version`` with plain sqlite3, so a current ledger
never imports Alembic or SQLAlchemy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from .._asset import Asset
from .._errors import LedgerError
from . import schema
from .base import (
    BATCH_ROWS,
    MergeOutcome,
    asset_from_row,
    in_id_order,
    merge_outcome,
    upload_params,
)
from .locks import KeyLocks
from .sqlite_file import LedgerFile, credible_bounds

#: Rows deleted per write transaction. Deletes cost index maintenance on random pages; 5000
#: a batch shares more of those pages than 1000 (-35 % time at a million rows) while memory
#: stays a few MB and each write lock is held well under a second.
PRUNE_BATCH: Final = BATCH_ROWS
#: What decoding a row raises when another program wrote a value that is not ours.
_UNREADABLE: Final = (ValueError, TypeError, OverflowError)


class Ledger(LedgerFile):
    """An opened, current ledger. Thread-safe: each thread gets its own SQLite connection."""

    def __init__(self, location: str, *, lock_wait_s: float | None = None) -> None:
        super().__init__(location)
        #: Single flight for this ledger: a lock folder beside its real path (see locks.py);
        #: waiters give up after ``lock_wait_s`` (default: locks.LOCK_WAIT_S).
        self.locks = KeyLocks(self.path + ".locks", ledger=self.path, wait_s=lock_wait_s)

    def forget_inherited(self) -> None:
        super().forget_inherited()
        self.locks.forget_inherited()

    # -- queries -------------------------------------------------------------------------

    def _decoded(self, rows: Iterable[tuple[Any, ...]]) -> list[Asset]:
        """Rows as Assets; a value that is not ours (another program wrote it) is refused."""
        try:  # around the whole loop: free in 3.11 until something raises
            return [asset_from_row(row) for row in rows]
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: BaseException) -> LedgerError:
        return self._fail(
            "has a row assetcache cannot read",
            exc,
            hint="; another program wrote it: delete or fix that row, or move the ledger "
            "aside to start a new one (its content is then uploaded again when needed)",
        )

    def _one(self, row: tuple[Any, ...] | None) -> Asset | None:
        try:
            return None if row is None else asset_from_row(row)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from None

    def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None:
        """The latest-expiring credible upload of this content to this account, live or not.

        Rows recorded while the clock ran ahead of ``now`` (default: the current time) are
        skipped (see ``Asset.state``).
        """
        row = self.newest_row(sha256, email, now=now)
        if row is None:
            return None
        try:
            return asset_from_row(row)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from None

    def async_side(self) -> None:
        """None: a local file has no asyncio driver; AsyncAssetCache uses worker threads."""
        return

    def record(self, asset: Asset) -> Asset:
        """Insert a new upload row and return the asset with its id."""
        params = _stored(asset)
        with self.write() as conn:
            row_id, _ = conn.execute(schema.RECORD_UPLOAD, params).fetchone()
        return replace(asset, id=row_id)

    def assets(
        self,
        *,
        email: str | None = None,
        live_after: datetime | None = None,
        expires_until: datetime | None = None,
    ) -> list[Asset]:
        return self._listed(email=email, live_after=live_after, expires_until=expires_until)

    def _listed(
        self,
        *,
        email: str | None,
        live_after: datetime | None,
        expires_until: datetime | None,
        spooled: bool = False,
    ) -> list[Asset]:
        """``assets``; ``spooled``: among a machine file's spool only (``machine.py``)."""
        given = {
            "email": email,
            "live_after": _db_time_or_none(live_after),
            "expires_until": _db_time_or_none(expires_until),
        }
        params = {name: value for name, value in given.items() if value is not None}
        sql = schema.select_assets(*(["spooled"] if spooled else []), *params)
        with self._reading() as conn:
            return self._decoded(conn.execute(sql, params))

    def export(self, *, email: str | None, live_after: datetime | None) -> Iterator[Asset]:
        """Every row (of ``email``, live after ``live_after`` when given), in id order, read
        in batches: memory stays bounded however large the ledger."""
        params = {"email": email, "live_after": _db_time_or_none(live_after)}
        read = functools.partial(self._read_batch, schema.SELECT_EXPORT_BATCH)
        for batch in in_id_order(read, params):
            yield from batch

    def _read_batch(self, sql: str, params: dict[str, Any]) -> list[Asset]:
        with self._reading() as conn:
            return self._decoded(conn.execute(sql, params))

    def revoke(
        self, *, sha256: str | None, asset_ref: str | None, email: str | None, at: datetime
    ) -> list[Asset]:
        """Mark the live rows (expiring after ``at``, not yet revoked) of one content or one
        ref, maybe of one account, revoked at ``at``, in one transaction; returns them."""
        return self._revoked(sha256, asset_ref, email, at)

    def _revoked(
        self,
        sha256: str | None,
        asset_ref: str | None,
        email: str | None,
        at: datetime,
        *,
        spooled: bool = False,
    ) -> list[Asset]:
        """``revoke``; ``spooled``: among a machine file's spool only (``machine.py``)."""
        stamp = schema.to_db_time(at)
        if sha256 is not None:
            query = schema.SELECT_SPOOLED_BY_CONTENT if spooled else schema.SELECT_BY_CONTENT
            params = {"sha256": sha256, "email": email, "now": stamp}
        else:
            query = schema.SELECT_SPOOLED_BY_REF if spooled else schema.SELECT_BY_REF
            params = {"asset_ref": asset_ref, "email": email, "now": stamp}
        with self.write() as conn:
            rows = self._decoded(conn.execute(query, params))
            conn.executemany(
                schema.REVOKE_UPLOAD, [{"id": a.id, "revoked_at": stamp} for a in rows]
            )
        return [replace(a, revoked_at=at) for a in rows]

    def merge(self, assets: Iterable[Asset]) -> list[MergeOutcome]:
        """Merge uploads in one transaction: each ``added`` (new here), ``revoked`` (held, and
        the import revokes it: a revocation is never lost) or ``skipped`` (nothing new)."""
        outcomes: list[MergeOutcome] = []
        with self.write() as conn:
            for asset in assets:
                params = _stored(asset)
                if conn.execute(schema.MERGE_UPLOAD, params).rowcount:
                    outcomes.append("added")
                    continue
                held = conn.execute(schema.SELECT_SAME_UPLOAD, params).fetchone()
                outcome = merge_outcome(held, asset)
                if outcome == "revoked":
                    conn.execute(schema.REVOKE_UPLOAD, {"id": held[0], **_revoked(asset)})
                outcomes.append(outcome)
        return outcomes

    def prune(
        self,
        *,
        email: str | None,
        expired_before: datetime | None,
        uploaded_before: datetime | None,
        dry_run: bool,
        now: datetime | None = None,
    ) -> Iterator[Asset]:
        """Delete matching rows in batches, yielding each as it goes (bounded memory).

        Rows recorded while the clock ran ahead of ``now`` (default: the current time) always
        match.
        """
        params: dict[str, Any] = {
            "email": email,
            "expired_before": _db_time_or_none(expired_before),
            "uploaded_before": _db_time_or_none(uploaded_before),
            **credible_bounds(now),
        }
        read = functools.partial(self._read_batch, schema.SELECT_PRUNE_BATCH)
        for batch in in_id_order(read, params):
            if not dry_run:
                with self.write() as conn:
                    conn.executemany(schema.DELETE_UPLOAD, [{"id": a.id} for a in batch])
            yield from batch


def _stored(asset: Asset) -> dict[str, Any]:
    """An Asset as the parameters of the shared statements, times as SQLite stores them."""
    return upload_params(asset, time=schema.to_db_time)


def _revoked(asset: Asset) -> dict[str, Any]:
    return {"revoked_at": _db_time_or_none(asset.revoked_at)}


def _db_time_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else schema.to_db_time(moment)
