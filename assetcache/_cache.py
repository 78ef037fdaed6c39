"""The cache: content hash + ledger + client, composed into resolve / lookup / refresh.

A resolve goes like this:

1. **Key.** For a path, the stat cache (``file_stats``) gives the sha256 without reading the file
   when its device, inode, size, mtime and ctime are unchanged since it was hashed and its mtime
   is not too close to that moment (git's racy-clean rule: a write in the same timestamp tick
   would otherwise be invisible). Otherwise the file is read (at most limit + 1 bytes),
   checked, hashed and recorded. All of step 1 is ``content/stat_cache.py``'s.
2. **Hit.** The newest row for (sha256, email) with at least ``min_remaining`` left is the
   answer: no lock, no network, no ORM import. The rules of step 2 are ``_hit.py``'s, which
   the console script's fast path applies too (with the stat cache's of step 1).
3. **Miss.** Take the key's single-flight lock (``ledger/locks.py``), look again (someone may
   have just uploaded it), note the time, upload with no transaction open, then record the row
   in one short ``BEGIN IMMEDIATE`` transaction.

The stat cache and the source column are hints, so writing them is best effort: a full disk or
a read-only ledger must not turn a cache hit into a failure.

After ``fork`` a child must not use what it inherited: a pooled keep-alive HTTP connection
would interleave two processes' requests on one socket (answers crossing, refs recorded for
other bytes), and SQLite forbids carrying a connection across fork (the SQLite engine closes
its idle ones just before, see ``ledger/sqlite_file.py``). Each cache notes the pid that made its
client and connections and, when another pid uses it, drops them without closing them
(closing is a use) and starts afresh.

``AssetCache`` and ``AsyncAssetCache`` share every step through ``_ResolveSteps``, and the methods
of several steps (``resolve_many``, ``fill``, ``refresh``...) are written once in ``_orchestration``
(and ``_fill``) as generators that each cache drives; the caches differ only in how they wait
(threads vs. the event loop) and which httpx client sends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast

from . import _config, _fill, _hit, _orchestration, _rules
from ._asset import RETENTION, Asset, answered
from ._email import normalize_email
from ._errors import (
    AssetCacheError,
    ImportRowError,
    UnauthorizedError,
    needs_setting,
)
from ._hit import this_host
from ._listing import current_per_key, selected
from ._listing import newest_per_key as _newest_per_key
from ._orchestration import DEFAULT_JOBS as DEFAULT_JOBS
from ._orchestration import (
    BatchOrder,
    Blocking,
    Outcome,
    Resolve,
    ResolveEach,
    Step,
    Steps,
    required,
)
from ._refs import MAX_REF_LENGTH, text_problem
from ._results import AUDIT_HORIZON, AccountAudit, ImportReport, RefreshItem, RefreshStatus
from ._results import Advice as Advice
from ._retry import RetryPolicy
from ._rules import DEFAULT_MIN_REMAINING as DEFAULT_MIN_REMAINING
from ._rules import lookup_margin as lookup_margin
from .content import stat_cache
from .content.sniff import Content, Source, check
from .ledger import open_engine, shown_location
from .ledger.busy import KeyBusy

if TYPE_CHECKING:
    import httpx

    from ._client import LumaClient, UploadResult
    from .ledger import KeyLock, LedgerEngine

Clock = Callable[[], datetime]
_T = TypeVar("_T")

#: What children inherited at fork and must neither use nor close (see the module docstring).
_INHERITED: list[object] = []


@dataclass(frozen=True, slots=True)
class _Key:
    """What a source resolves to before any network: its hash, maybe its bytes, its path."""

    sha256: str
    content: Content | None  # None when the stat cache answered without reading the file
    path: str | os.PathLike[str] | os.PathLike[bytes] | None
    source: str | None  # the absolute path as recorded in the ledger, when it can be


#: Rows imported per write transaction: few commits, and each write lock held briefly.
IMPORT_BATCH: Final = 1000


class _ResolveSteps:
    """Everything resolve needs except waiting and sending, shared by both cache classes."""

    def __init__(
        self,
        *,
        token: str | None,
        db: str | os.PathLike[str] | None,
        base_url: str | None,
        min_remaining: timedelta,
        clock: Clock | None,
        upload_s: float,
    ) -> None:
        self._token = _config.resolve_secret(token)
        self.location = _config.resolve_db(db)
        self.path = shown_location(self.location)
        self.base_url = _config.resolve_base_url(base_url)
        self.min_remaining = _rules.check_min_remaining(min_remaining)
        self._clock = clock or _hit.utcnow
        self._ledger: LedgerEngine | None = None
        self._open_lock = threading.Lock()
        self._pid = os.getpid()
        self._upload_s = upload_s  # this cache's budget per upload (RetryPolicy.max_elapsed)

    def token(self) -> _config.Secret:
        """The usable token, still wrapped: no frame of ours holds it as plain text."""
        if self._token is None:
            raise needs_setting(
                UnauthorizedError, "token", "an upload is needed but no API token is set"
            )
        try:
            return _config.Secret(_config.usable_token(self._token.reveal()))
        except ValueError as exc:
            problem = str(exc)
        # outside the except: no __context__ keeps the token
        raise needs_setting(UnauthorizedError, "token", problem)

    def now(self) -> datetime:
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return moment

    @property
    def ledger(self) -> LedgerEngine:
        if self._pid != os.getpid():
            self._forget_inherited()
        # Opened on first use, so constructing a cache is free and errors name the real cause.
        if self._ledger is None:
            with self._open_lock:
                if self._ledger is None:
                    from .ledger.locks import wait_for

                    # Waiting for another resolver's upload: see ledger.locks.wait_for.
                    wait = wait_for(self._upload_s)
                    self._ledger = open_engine(self.location, lock_wait_s=wait)
        return self._ledger

    @property
    def locks(self) -> KeyLock:
        """The ledger's single flight (resolve opens the ledger before taking a lock)."""
        return self.ledger.locks

    def _forget_inherited(self) -> None:
        """In a forked child: new locks and connections; the parent's are left alone."""
        self._pid = os.getpid()
        self._open_lock = threading.Lock()  # a parent thread may have held it at fork time
        if self._ledger is not None:
            self._ledger.forget_inherited()

    def close(self) -> None:
        if self._ledger is not None and self._pid == os.getpid():
            self._ledger.close()

    # -- keys ----------------------------------------------------------------------------

    def key(self, source: Source) -> _Key:
        """The source's sha256: for a path, the stat cache's when it trusts the file, else the
        file read, hashed and recorded there (``content/stat_cache.py`` does both)."""
        if isinstance(source, bytes | bytearray | memoryview):
            content = check(bytes(source))
            return _Key(content.sha256, content, None, None)
        path = source
        recorded = stat_cache.recordable_path(path)
        if recorded is not None:
            sha256 = stat_cache.cached_sha256(self.ledger, path, recorded)
            if sha256 is not None:
                return _Key(sha256, None, path, recorded)
        return self._hash_file(path, recorded)

    def _hash_file(
        self, path: str | os.PathLike[str] | os.PathLike[bytes], recorded: str | None
    ) -> _Key:
        content = stat_cache.hash_file(self.ledger, path, recorded)
        return _Key(content.sha256, content, path, recorded)

    def content(self, key: _Key) -> _Key:
        """The key with its bytes loaded (re-keyed if the file changed since it was hashed)."""
        if key.content is not None:
            return key
        assert key.path is not None
        return self._hash_file(key.path, key.source)

    # -- ledger decisions ----------------------------------------------------------------

    def live(
        self, key: _Key, email: str, min_remaining: timedelta, *, fresh: bool = False
    ) -> Asset | None:
        """The newest row for the key if it has at least ``min_remaining`` left. ``fresh``
        asks the ledger itself, never a local mirror of it (see LedgerEngine.newest)."""
        now = self.now()
        row = self.ledger.newest(key.sha256, email, now=now, fresh=fresh)
        if _hit.ask_again(row, now, min_remaining, fresh=fresh):
            row = self.ledger.newest(key.sha256, email, now=now, fresh=True)
        return self.answer(key, email, row, now, min_remaining)

    def answer(
        self, key: _Key, email: str, row: Asset | None, now: datetime, min_remaining: timedelta
    ) -> Asset | None:
        """What the ledger's newest row means for a lookup: the answer, or None."""
        row = _hit.answering(row, email, now, min_remaining)
        if row is None:
            return None
        host = _hit.note_source(self.ledger, row, key.source)
        if host is None:
            return answered(row, source=row.source, host=row.host)
        return answered(row, source=key.source, host=host)

    def record(self, key: _Key, email: str, uploaded_at: datetime, result: UploadResult) -> Asset:
        return self.ledger.record(self.uploaded(key, email, uploaded_at, result))

    def uploaded(self, key: _Key, email: str, uploaded_at: datetime, result: UploadResult) -> Asset:
        """The row an upload that succeeded makes (not yet recorded)."""
        assert key.content is not None
        return Asset(
            asset_ref=result.asset_ref,
            sha256=key.sha256,
            email=email,
            content_type=key.content.content_type,
            size=key.content.size,
            uploaded_at=uploaded_at,
            expires_at=uploaded_at + RETENTION,
            upload_id=result.upload_id,
            media_url=result.media_url,
            source=key.source,
            host=None if key.source is None else this_host(),
            reused=False,
        )

    def min_remaining_or_default(self, value: timedelta | None) -> timedelta:
        return self.min_remaining if value is None else _rules.check_min_remaining(value)

    # -- listing, pruning, audit ---------------------------------------------------------

    def _current_live(
        self, email: str | None, expiring_within: timedelta | None, now: datetime
    ) -> list[Asset]:
        """The current rows that are live (and expire within ``expiring_within``): a key's
        current row, when live, is among its live rows, so only the keys of the (indexed, few)
        live candidates are asked for their current row, one indexed read each, rather than
        every row of the ledger read into memory."""
        candidates = self.assets(email, expiring_within, False)
        current: dict[tuple[str, str], int | None] = {}
        for asset in candidates:
            key = (asset.sha256, asset.email)
            if key not in current:
                newest = self.ledger.newest(asset.sha256, asset.email, now=now)
                current[key] = None if newest is None else newest.id
        return [a for a in candidates if current[(a.sha256, a.email)] == a.id]

    def assets(
        self,
        email: str | None,
        expiring_within: timedelta | None,
        expired: bool | None,
        current: bool = False,
    ) -> list[Asset]:
        now = self.now()
        if expired and expiring_within is not None:
            raise ValueError("expired=True and expiring_within select disjoint sets; pick one")
        if current and (expired is False or expiring_within is not None):
            return self._current_live(email, expiring_within, now)
        if current:  # which row is current is decided over all of a key's rows, then filtered
            rows = current_per_key(self.assets(email, None, None), now)
            return selected(rows, now, expiring_within=expiring_within, expired=expired)
        live_after = now if (expired is False or expiring_within is not None) else None
        expires_until = now if expired else None
        if expiring_within is not None:
            expires_until = _later(now, expiring_within)
        rows = self.ledger.assets(
            email=None if email is None else normalize_email(email),
            live_after=live_after,
            expires_until=expires_until,
        )
        if expired is None and expiring_within is None:
            return rows  # everything, "future" rows included: ls shows them flagged
        wanted = "expired" if expired else "live"
        return [a for a in rows if a.state(now) == wanted]

    def prune(
        self, expired: bool, older_than: timedelta | None, email: str | None, dry_run: bool
    ) -> Iterator[Asset]:
        if not expired and older_than is None:
            raise ValueError("prune needs expired=True or older_than=...: nothing would match")
        if older_than is not None and older_than < timedelta(0):
            raise ValueError(f"older_than must not be negative; got {older_than}")
        now = self.now()
        return self.ledger.prune(
            email=None if email is None else normalize_email(email),
            expired_before=now if expired and older_than is None else None,
            uploaded_before=None if older_than is None else _earlier(now, older_than),
            now=now,
            dry_run=dry_run,
        )

    def newest_per_key(self, email: str | None, now: datetime) -> list[Asset]:
        return _newest_per_key(self.assets(email, None, None), now)

    def source_state(self, asset: Asset) -> RefreshStatus:
        """Whether an entry's source file still holds its content ("would-refresh") or not."""
        if asset.source is None:
            return "no-source"
        if asset.host is not None and asset.host != this_host():
            return "other-host"  # a path means nothing here: never "missing"
        if not os.path.exists(asset.source):
            return "missing"
        try:
            key = self.key(asset.source)
        except AssetCacheError:
            return "changed"
        return "would-refresh" if key.sha256 == asset.sha256 else "changed"

    def audit(self, email: str | None) -> list[AccountAudit]:
        now = self.now()
        rows = self.assets(email, None, None)  # one listing serves every count
        uploads: dict[str, int] = {}
        untrusted: dict[tuple[str, str], int] = {}  # (email, "future" | "revoked") -> rows
        for asset in rows:
            uploads[asset.email] = uploads.get(asset.email, 0) + 1
            if (state := asset.state(now)) in ("future", "revoked"):
                untrusted[asset.email, state] = untrusted.get((asset.email, state), 0) + 1
        by_email: dict[str, list[Asset]] = {account: [] for account in uploads}
        for asset in _newest_per_key(rows, now):
            by_email[asset.email].append(asset)
        return [
            self._audit_account(
                account,
                assets,
                now,
                uploads[account],
                untrusted.get((account, "future"), 0),
                untrusted.get((account, "revoked"), 0),
            )
            for account, assets in sorted(by_email.items())
        ]

    def _audit_account(
        self,
        email: str,
        newest: list[Asset],
        now: datetime,
        uploads: int,
        future: int,
        revoked: int,
    ) -> AccountAudit:
        live = [a for a in newest if a.is_live(now)]
        within_7d = [a for a in live if a.remaining_at(now) <= AUDIT_HORIZON]
        return AccountAudit(
            email=email,
            live=len(live),
            expiring_24h=sum(a.remaining_at(now) <= timedelta(days=1) for a in live),
            expiring_7d=len(within_7d),
            expired=len(newest) - len(live),
            refreshable=sum(self.source_state(a) == "would-refresh" for a in within_7d),
            uploads=uploads,
            future=future,
            revoked=revoked,
        )

    def refresh_plan(self, expiring_within: timedelta, email: str | None) -> list[RefreshItem]:
        """Each live ref expiring within the window, with whether its source can refresh it."""
        now = self.now()
        return [
            RefreshItem(a, self.source_state(a))
            for a in self.newest_per_key(email, now)
            if a.is_live(now) and a.remaining_at(now) <= expiring_within
        ]

    def export(self, email: str | None, live: bool) -> Iterator[dict[str, Any]]:
        """Rows as plain dicts (see _transfer.row_of), of one account and/or live only."""
        from ._transfer import row_of

        now = self.now()
        rows = self.ledger.export(
            email=None if email is None else normalize_email(email),
            live_after=now if live else None,
        )
        return (row_of(a) for a in rows if not live or a.state(now) == "live")

    def import_rows(self, rows: Iterable[object]) -> ImportReport:
        """Merge exported rows, batch by batch; a row that is not valid stops the import, after
        the rows before it are merged (as ImportRowError says: importing again is safe)."""
        from ._transfer import asset_of

        counts = {"added": 0, "revoked": 0, "skipped": 0}
        batch: list[Asset] = []
        refused: ImportRowError | None = None
        for number, row in enumerate(rows, 1):
            try:
                batch.append(asset_of(row))
            except ValueError as exc:
                refused = ImportRowError(number, str(exc))
                break
            if len(batch) == IMPORT_BATCH:
                self._merge(batch, counts)
                batch = []
        self._merge(batch, counts)  # the rows read before a refused one too
        if refused is not None:
            raise refused
        return ImportReport(**counts)

    def _merge(self, batch: list[Asset], counts: dict[str, int]) -> None:
        for outcome in self.ledger.merge(batch) if batch else []:
            counts[outcome] += 1

    def forget(self, source_or_ref: Source, email: str | None) -> list[Asset]:
        """Revoke the rows of a file's or bytes' content, or of one ref, so they are never
        answers again (the next resolve uploads). A str that names no file is taken as a ref."""
        account = None if email is None else normalize_email(email)
        now = self.now()
        if isinstance(source_or_ref, str) and not os.path.lexists(source_or_ref):
            problem = text_problem(source_or_ref, MAX_REF_LENGTH)
            if problem is not None:
                raise ValueError(f"{source_or_ref!r} is neither a file nor an assetRef: {problem}")
            return self.ledger.revoke(sha256=None, asset_ref=source_or_ref, email=account, at=now)
        sha256 = self.key(source_or_ref).sha256
        return self.ledger.revoke(sha256=sha256, asset_ref=None, email=account, at=now)

    def report(self, email: str | None) -> str:
        from .report import build

        rows = self.assets(email, None, None)
        title = "assetcache report" + ("" if email is None else f" for {normalize_email(email)}")
        return build(rows, self.now(), title=title)


def _later(moment: datetime, delta: timedelta) -> datetime:
    """moment + delta, saturating at the end of time instead of raising OverflowError."""
    try:
        return moment + delta
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _earlier(moment: datetime, delta: timedelta) -> datetime:
    """moment - delta, saturating at the start of time instead of raising OverflowError."""
    try:
        return moment - delta
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


class _CacheCommon:
    """Construction, repr and the read-only methods common to both caches."""

    _client: object = None  # the HTTP client, once made (each cache declares its kind)

    def __init__(
        self,
        token: str | None = None,
        db: str | os.PathLike[str] | None = None,
        base_url: str | None = None,
        min_remaining: timedelta = DEFAULT_MIN_REMAINING,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._steps = _ResolveSteps(
            token=token,
            db=db,
            base_url=base_url,
            min_remaining=min_remaining,
            clock=clock,
            upload_s=(retry or RetryPolicy()).max_elapsed,
        )
        self._transport = transport
        self._retry = retry
        self._client_lock = threading.Lock()
        self._client_pid = os.getpid()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(db={self._steps.path!r}, base_url={self._steps.base_url!r})"

    @property
    def db_path(self) -> str:
        """The ledger's file path."""
        return self._steps.path

    @property
    def base_url(self) -> str:
        return self._steps.base_url

    def _forget_client_after_fork(self) -> None:
        """In a forked child, drop the parent's HTTP client: its pooled sockets are shared."""
        if self._client_pid == os.getpid():
            return
        _INHERITED.append(self.__dict__.pop("_client", None))  # never closed: closing is a use
        self._client_lock = threading.Lock()
        self._client_pid = os.getpid()

    def _client_made_once(self, make: Callable[..., _T]) -> _T:
        """This cache's HTTP client (either kind), made by ``make`` on first use: the token is
        checked then, so lookups need none. A forked child makes its own."""
        self._forget_client_after_fork()
        with self._client_lock:
            if self._client is None:
                self._client = make(
                    token=self._steps.token(),
                    base_url=self._steps.base_url,
                    retry=self._retry or RetryPolicy(),
                    transport=self._transport,
                )
            return cast(_T, self._client)


class AssetCache(_CacheCommon):
    """Resolve images to live Luma assetRefs, uploading only when the ledger has none.

    Safe to share between threads. Use as a context manager, or call ``close()``.
    """

    _client: LumaClient | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._forget_client_after_fork()
        if self._client is not None:
            self._client.close()
        self._steps.close()

    def _upload_client(self) -> LumaClient:
        from ._client import LumaClient  # the HTTP stack is only needed to upload

        return self._client_made_once(LumaClient)

    def resolve(
        self,
        source: Source,
        *,
        email: str,
        force: bool = False,
        min_remaining: timedelta | None = None,
    ) -> Asset:
        """A live asset for ``source`` on ``email``'s account, uploading only if needed."""
        return self._resolve(
            source, email=email, force=force, min_remaining=min_remaining, patient=True
        )

    def _resolve(
        self,
        source: Source,
        *,
        email: str,
        force: bool,
        min_remaining: timedelta | None,
        patient: bool,
    ) -> Asset:
        """``resolve``; ``patient=False``: KeyBusy rather than wait for another holder."""
        steps = self._steps
        email = normalize_email(email)
        margin = steps.min_remaining_or_default(min_remaining)
        key = steps.key(source)
        if not force and (hit := steps.live(key, email, margin)) is not None:
            return hit
        key = steps.content(key)
        steps.ledger  # noqa: B018 - open (and migrate) now, never while holding a key lock

        def look() -> Asset | None:
            return None if force else steps.live(key, email, margin, fresh=True)

        with steps.locks.hold(f"{key.sha256}:{email}", look, patient=patient) as found:
            if found is not None:
                return found  # another holder's upload, found while waiting: nothing held
            if (hit := look()) is not None:
                return hit  # someone uploaded it while we waited: no token needed
            client = self._upload_client()
            assert key.content is not None
            uploaded_at = steps.now()  # before the request: never later than the server's
            result = client.upload(
                key.content.data, content_type=key.content.content_type, email=email
            )
            return steps.record(key, email, uploaded_at, result)

    def resolve_many(
        self,
        sources: Iterable[Source],
        *,
        email: str,
        jobs: int = DEFAULT_JOBS,
        force: bool = False,
        min_remaining: timedelta | None = None,
        on_result: Callable[[int, Asset | AssetCacheError], None] | None = None,
    ) -> list[Asset | AssetCacheError]:
        """Resolve many sources, ``jobs`` at a time; results (or errors) in input order.

        Failures do not stop the batch: each position holds the Asset or the AssetCacheError
        for that source. ``on_result(index, outcome)`` is called as each one finishes.
        """
        return self._run(
            _orchestration.resolve_many(
                sources,
                email=email,
                jobs=jobs,
                force=force,
                min_remaining=min_remaining,
                on_result=on_result,
            )
        )

    def lookup(
        self, source: Source, *, email: str, min_remaining: timedelta | None = None
    ) -> Asset | None:
        """The cached live asset for ``source``, or None. Never uploads; needs no token.

        With ``min_remaining`` (default: zero here), a ref with less time left counts as absent.
        """
        steps = self._steps
        margin = lookup_margin(min_remaining)
        return steps.live(steps.key(source), normalize_email(email), margin)

    def require(
        self, source: Source, *, email: str, min_remaining: timedelta | None = None
    ) -> Asset:
        """Like lookup, but raises NotCachedError instead of returning None."""
        asset = self.lookup(source, email=email, min_remaining=min_remaining)
        return required(asset, source, email)

    def assets(
        self,
        email: str | None = None,
        expiring_within: timedelta | None = None,
        expired: bool | None = None,
        *,
        current: bool = False,
    ) -> list[Asset]:
        """Ledger rows sorted by expiry; ``expired`` True/False keeps only dead/live ones.

        ``current``: one row per (content, account), the one resolve decides on now (see
        ``_listing.current_per_key``), before the other filters apply."""
        return self._steps.assets(email, expiring_within, expired, current)

    def prune(
        self,
        expired: bool = True,
        older_than: timedelta | None = None,
        email: str | None = None,
        dry_run: bool = False,
    ) -> list[Asset]:
        """Delete expired rows, or with ``older_than`` rows uploaded longer ago than that.

        Returns the removed rows; ``iter_prune`` streams them instead, for huge ledgers.
        """
        return list(self.iter_prune(expired, older_than, email, dry_run))

    def iter_prune(
        self,
        expired: bool = True,
        older_than: timedelta | None = None,
        email: str | None = None,
        dry_run: bool = False,
    ) -> Iterator[Asset]:
        """Like prune, but yields rows as batches are deleted: memory stays bounded."""
        return self._steps.prune(expired, older_than, email, dry_run)

    def audit(self, email: str | None = None) -> list[AccountAudit]:
        """Per account: live, expiring (24 h, 7 d), expired and refreshable refs."""
        return self._steps.audit(email)

    def fill(
        self,
        payload: dict[str, Any],
        *,
        email: str | None = None,
        base_dir: str | None = None,
        min_remaining: timedelta | None = None,
    ) -> dict[str, Any]:
        """A Luma request payload with each image file in its ref fields (imageStart, imageEnd,
        imageCharacter, imageRef1..4) replaced by a live ref; everything else untouched.

        A value naming an existing file (relative to ``base_dir``, else the current folder;
        ``~`` and ``file://`` work) is resolved; an http(s) URL or a ref of the account is kept;
        anything else fails. The payload's own ``email`` wins over ``email`` (a contradiction
        is a ValueError). All or nothing: FillError names every failing field.
        """
        return self._run(
            _fill.fill(payload, email=email, base_dir=base_dir, min_remaining=min_remaining)
        )

    def fill_many(
        self,
        payloads: Iterable[dict[str, Any]],
        *,
        email: str | None = None,
        base_dir: str | None = None,
        min_remaining: timedelta | None = None,
        jobs: int = DEFAULT_JOBS,
    ) -> list[_fill.FillOutcome]:
        """fill for a batch: every image of every payload resolved ``jobs`` at a time; each
        payload filled, or its error (FillError, InvalidEmailError, ValueError), in order."""
        return self._run(
            _fill.fill_many(
                payloads, email=email, base_dir=base_dir, min_remaining=min_remaining, jobs=jobs
            )
        )

    def report(self, email: str | None = None) -> str:
        """One self-contained HTML page: a summary per account, a chart of expiries per day,
        and every ref (thumbnail, time left, source, ref with a copy button, account, size),
        to search by file name or ref and filter by account and urgency."""
        return self._steps.report(email)

    def forget(self, source_or_ref: Source, email: str | None = None) -> list[Asset]:
        """Mark the rows of this content (a path or bytes), or of this ref (a str that names no
        file), revoked: Luma rejected a ref the ledger thought live. They are kept as history
        with the time, never answered again, and the next resolve uploads. ``email`` limits it
        to one account. Returns the rows revoked now (none if nothing matched)."""
        return self._steps.forget(source_or_ref, email)

    def export(self, email: str | None = None, live: bool = False) -> Iterator[dict[str, Any]]:
        """Every upload row as a JSON-ready dict (every column but the local row id), streamed;
        ``email`` keeps one account's, ``live`` only refs still live."""
        return self._steps.export(email, live)

    def import_rows(self, rows: Iterable[object]) -> ImportReport:
        """Merge rows as ``export`` gives them; the same rows twice add nothing.

        Each row is checked like an upload answer (the ref names its account, the expiry is
        within the retention...); an invalid one raises ImportRowError (a ValueError) naming
        it, once the rows before it are merged: importing again after fixing it is safe.
        """
        return self._steps.import_rows(rows)

    def refresh(
        self,
        expiring_within: timedelta = timedelta(days=3),
        email: str | None = None,
        dry_run: bool = False,
    ) -> list[RefreshItem]:
        """Re-upload live refs expiring within the window whose source file is unchanged."""
        return self._run(_orchestration.refresh(self._steps, expiring_within, email, dry_run))

    # -- how this cache waits: in the calling thread, a batch in a pool of threads ---------

    def _run(self, steps: Steps[_T]) -> _T:
        """A method written once as steps (see _orchestration), performed in this thread."""
        return _orchestration.run(steps, self._perform)

    def _perform(self, step: Step) -> object:
        if isinstance(step, Blocking):
            return step.work()
        if isinstance(step, Resolve):
            return self._settled(step)
        return self._resolve_each(step)

    def _settled(self, order: Resolve, *, patient: bool = True) -> Outcome:
        """The order resolved, or the AssetCacheError that stopped it (KeyBusy propagates)."""
        try:
            return order.by(self._resolve, patient=patient)
        except AssetCacheError as exc:
            return exc

    def _resolve_each(self, batch: ResolveEach) -> list[Outcome]:
        """In this thread when one at a time will do; else ``jobs`` threads, no more; in
        ``BatchOrder``'s order either way."""
        count = len(batch.orders)
        outcomes: list[Outcome | None] = [None] * count
        queue = BatchOrder(count)

        def work() -> None:
            while (taken := queue.next()) is not None:
                index, patient = taken
                try:
                    outcome = self._settled(batch.orders[index], patient=patient)
                except KeyBusy:
                    queue.busy(index)
                    continue
                outcomes[index] = batch.finished(index, outcome)

        if batch.jobs == 1 or count <= 1:
            work()
        else:
            from concurrent.futures import ThreadPoolExecutor  # only batches pay for it

            with ThreadPoolExecutor(max_workers=min(batch.jobs, count)) as pool:
                for worker in [pool.submit(work) for _ in range(min(batch.jobs, count))]:
                    worker.result()  # what stopped a worker (an interrupt) stops the batch
        return cast(list[Outcome], outcomes)  # every worker ended normally: each order ran


__all__: Sequence[str] = ("AccountAudit", "Advice", "AssetCache", "ImportReport", "RefreshItem")
