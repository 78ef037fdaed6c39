"""A cache hit, defined once: the rules that say when the ledger may answer without an upload.

``AssetCache`` and ``AsyncAssetCache`` (through ``_cache._ResolveSteps``) and the console
script's fast path (``_entry.py``) all decide a hit with these functions:

1. **Key from the stat cache** (``content/stat_cache.py``: its racy-clean rule, and its rows
   in the ledger file). A file the stat cache does not trust is no fast hit: the caches hash
   it (``stat_cache.hash_file``), the console script leaves it to them.
2. **The newest credible row** of (sha256, email), live with at least the margin left: the
   SQL skips rows recorded while the clock ran ahead and revoked rows, and ``state`` checks
   again. A row too short-lived is asked again from the ledger itself (a shared ledger's
   mirror may be behind), and a ref that fails ``ref_problem`` is never an answer.
3. **The source hint.** The path it was resolved from is recorded when it changed (best
   effort: a read-only ledger still answers).

Every hit imports this module, so it imports nothing a hit does not need: no ``typing``,
``dataclasses``, ``re`` or ``threading`` (tests/test_entry.py pins it). Rows are whatever has
the ``HitRow`` attributes: an ``Asset`` for the caches, a ``StoredRow`` for the fast path,
which never builds an ``Asset``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ._refs import ref_problem
from ._rules import state
from .content import stat_cache
from .ledger import schema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta
    from typing import Any, Protocol, TypeVar

    from .ledger.sqlite_file import LedgerFile

    class HitRow(Protocol):
        """What a hit decides on: an ``Asset``, or a ``StoredRow``."""

        @property
        def id(self) -> int | None: ...
        @property
        def asset_ref(self) -> str: ...
        @property
        def uploaded_at(self) -> datetime: ...
        @property
        def expires_at(self) -> datetime: ...
        @property
        def revoked_at(self) -> datetime | None: ...
        @property
        def source(self) -> str | None: ...

    class HitLedger(Protocol):
        """The hint a hit writes to a ledger (any engine)."""

        def set_source(self, row_id: int, source: str, host: str) -> None: ...

    Row = TypeVar("Row", bound=HitRow)


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- 2. the row ------------------------------------------------------------------------------


def enough(row: HitRow, now: datetime, margin: timedelta) -> bool:
    """Whether the row is live at ``now`` with at least ``margin`` left."""
    live = state(row.uploaded_at, row.expires_at, row.revoked_at, now) == "live"
    return live and row.expires_at - now >= margin


def ask_again(row: Row | None, now: datetime, margin: timedelta, *, fresh: bool) -> bool:
    """Whether a (possibly mirrored) answer is too short-lived to trust without asking the
    ledger itself: the shared ledger may know a newer upload."""
    return row is not None and not fresh and not enough(row, now, margin)


def answering(row: Row | None, email: str, now: datetime, margin: timedelta) -> Row | None:
    """The ledger's newest row if it answers a lookup, else None."""
    # A dead ref is never an answer, even with a zero margin; nor is a ref that is not
    # the contract's (recorded by an older version, or written by another program).
    if row is None or not enough(row, now, margin):
        return None
    if ref_problem(row.asset_ref, email) is not None:
        return None
    return row


def live_row(
    newest: Callable[[bool], Row | None],
    email: str,
    now: datetime,
    margin: timedelta,
    *,
    fresh: bool = False,
) -> Row | None:
    """The row that answers, or None. ``newest(fresh)`` is the ledger's newest credible row of
    the key (``fresh``: its own answer, never a local mirror of it; LedgerEngine.newest).
    The caches make the same two calls through ``ask_again`` and ``answering`` (AsyncAssetCache
    awaits its ledger's)."""
    row = newest(fresh)
    if ask_again(row, now, margin, fresh=fresh):
        row = newest(True)
    return answering(row, email, now, margin)


class StoredRow:
    """An upload row decoded as far as a hit needs (the fast path builds no ``Asset``)."""

    __slots__ = ("asset_ref", "expires_at", "id", "revoked_at", "source", "uploaded_at")

    def __init__(self, row: tuple[Any, ...]) -> None:
        # Positions of schema.UPLOAD_COLUMNS, as ledger.base.asset_from_row reads them.
        self.id: int | None = row[0]
        self.asset_ref: str = row[3]
        self.uploaded_at = schema.from_db_time(row[6])
        self.expires_at = schema.from_db_time(row[7])
        self.source: str | None = row[10]
        self.revoked_at = None if row[11] is None else schema.from_db_time(row[11])


# -- 3. the source hint ----------------------------------------------------------------------


def note_source(ledger: HitLedger, row: HitRow, source: str | None) -> str | None:
    """Record that the row's content was just resolved from ``source``; the host it now belongs
    to, or None when nothing changed. A failed write only leaves the hint stale."""
    if source is None or row.source == source:
        return None
    host = this_host()
    from ._errors import LedgerError

    try:
        ledger.set_source(row.id or 0, source, host)
    except LedgerError as exc:  # the answer stands; only the hint is stale
        warn("source path not updated", exc)
    return host


def this_host() -> str:
    """The name source paths recorded here belong to."""
    import socket  # only recording a path (an upload, a new source) needs it

    return socket.gethostname()


def warn(what: str, exc: BaseException) -> None:
    import logging  # only a failed hint pays for it: a cache hit never imports logging

    logging.getLogger("assetcache").warning("%s: %s", what, exc)


# -- the console script's hit ------------------------------------------------------------


def cached_ref(
    ledger: LedgerFile,
    path: str,
    email: str,
    margin: timedelta,
    now: datetime,
    *,
    mirror: bool = False,
) -> str | None:
    """What ``AssetCache.lookup(path, email=email, min_remaining=margin)`` answers when the stat
    cache knows the file, without building an ``Asset``; None when the full cache must decide
    (the file must be hashed, or no live ref is known). ``email`` is normalised.

    ``mirror``: ``ledger`` is a shared ledger's machine file (``ledger.machine_file``), which
    answers from what this machine knows as ``PostgresLedger.newest`` does (rows read within
    ``ledger.sqlite_file.mirror_window``, and its spool); whatever must be asked of the server
    (a miss, a row too short-lived) is the full cache's to ask."""
    recorded = stat_cache.recordable_path(path)
    sha256 = None if recorded is None else stat_cache.cached_sha256(ledger, path, recorded)
    if sha256 is None:
        return None

    def newest(fresh: bool) -> StoredRow | None:
        if not mirror:  # an SQLite ledger is its own answer: fresh or not, the same read
            found = ledger.newest_row(sha256, email, now=now)
        elif fresh:
            return None  # only the server can say: the full cache asks it
        else:
            found = ledger.mirrored_row(sha256, email, now=now)
        return None if found is None else StoredRow(found)

    row = live_row(newest, email, now, margin)
    if row is None:
        return None
    if not mirror:  # a hit never writes to a shared ledger (PostgresLedger.set_source)
        note_source(ledger, row, recorded)
    return row.asset_ref
