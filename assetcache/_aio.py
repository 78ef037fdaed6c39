"""AsyncAssetCache: the same cache for asyncio, sharing every step with AssetCache via _Core.

Kept apart from ``_cache.py`` so that a synchronous cache hit never imports asyncio.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from . import _fill, _hit
from ._asset import Asset
from ._cache import (
    DEFAULT_JOBS,
    AccountAudit,
    ImportReport,
    RefreshItem,
    _describe,
    _Facade,
    _Key,
    _refresh_margin,
    lookup_margin,
)
from ._content import Source
from ._email import normalize_email
from ._errors import AssetCacheError, NotCachedError
from ._shielded import finished_anyway
from ._sqlite_ledger import PRUNE_BATCH

if TYPE_CHECKING:
    from ._client import AsyncLumaClient
    from ._engine import AsyncLedgerSide, LedgerEngine


class AsyncAssetCache(_Facade):
    """The same cache for asyncio: ``await cache.resolve(...)``; ``async with`` or ``aclose()``.

    Disk work runs in worker threads; the upload and waiting for another resolver's upload
    happen on the event loop, and so do the ledger's reads and writes on the resolve path when
    the engine has an asyncio driver (PostgreSQL: psycopg's); SQLite's run in worker threads.
    """

    _client: AsyncLumaClient | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._forget_client_after_fork()
        if self._client is not None:
            await self._client.aclose()
        self._core.close()

    def _upload_client(self) -> AsyncLumaClient:
        self._forget_client_after_fork()
        with self._client_lock:
            if self._client is None:
                from ._client import AsyncLumaClient

                self._client = AsyncLumaClient(**self._client_options())
            return self._client

    async def resolve(
        self,
        source: Source,
        *,
        email: str,
        force: bool = False,
        min_remaining: timedelta | None = None,
    ) -> Asset:
        core = self._core
        email = normalize_email(email)
        margin = core.min_remaining_or_default(min_remaining)
        key = await asyncio.to_thread(core.key, source)
        ledger = await self._ledger()  # opened now, never under a key lock
        if not force and (hit := await self._live(ledger, key, email, margin)):
            return hit
        key = await asyncio.to_thread(core.content, key)
        async with core.locks.ahold(f"{key.sha256}:{email}"):
            recheck = await self._live(ledger, key, email, margin, fresh=True)
            if not force and recheck:
                return recheck  # someone uploaded it while we waited: no token needed
            client = self._upload_client()
            assert key.content is not None
            uploaded_at = core.now()
            result = await client.upload(
                key.content.data, content_type=key.content.content_type, email=email
            )
            recording = ledger.record(core.uploaded(key, email, uploaded_at, result))
            # The upload was paid for: a caller cancelled now must not lose its row (SQLite's
            # worker thread runs on anyway; psycopg's asyncio driver would cancel the statement).
            return await finished_anyway(recording)

    async def _ledger(self) -> AsyncLedgerSide:
        """The ledger's resolve path as awaitables: its engine's asyncio driver if it has one,
        else its sync calls in worker threads."""
        core = self._core
        engine = await asyncio.to_thread(lambda: core.ledger)
        side = engine.async_side()
        return LedgerInThreads(engine) if side is None else side

    async def _live(
        self,
        ledger: AsyncLedgerSide,
        key: _Key,
        email: str,
        margin: timedelta,
        *,
        fresh: bool = False,
    ) -> Asset | None:
        """As _Core.live, awaiting the ledger; the decisions are _Core's."""
        core = self._core
        now = core.now()
        row = await ledger.newest(key.sha256, email, now=now, fresh=fresh)
        if _hit.ask_again(row, now, margin, fresh=fresh):
            row = await ledger.newest(key.sha256, email, now=now, fresh=True)
        return await asyncio.to_thread(core.answer, key, email, row, now, margin)

    async def resolve_many(
        self,
        sources: Iterable[Source],
        *,
        email: str,
        jobs: int = DEFAULT_JOBS,
        force: bool = False,
        min_remaining: timedelta | None = None,
        on_result: Callable[[int, Asset | AssetCacheError], None] | None = None,
    ) -> list[Asset | AssetCacheError]:
        """Resolve many sources with at most ``jobs`` in flight; results in input order.

        As with AssetCache.resolve_many: a bad email or ``jobs`` raises at once; each failing
        source leaves its AssetCacheError in its place; ``on_result(index, outcome)`` is
        called as each one finishes.
        """
        items = list(sources)
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        email = normalize_email(email)
        gate = asyncio.Semaphore(jobs)

        async def one(index: int) -> Asset | AssetCacheError:
            async with gate:
                try:
                    outcome: Asset | AssetCacheError = await self.resolve(
                        items[index], email=email, force=force, min_remaining=min_remaining
                    )
                except AssetCacheError as exc:
                    outcome = exc
            if on_result is not None:
                on_result(index, outcome)
            return outcome

        return list(await asyncio.gather(*(one(i) for i in range(len(items)))))

    async def lookup(
        self, source: Source, *, email: str, min_remaining: timedelta | None = None
    ) -> Asset | None:
        core = self._core
        margin = lookup_margin(min_remaining)
        email = normalize_email(email)
        key = await asyncio.to_thread(core.key, source)
        return await self._live(await self._ledger(), key, email, margin)

    async def require(
        self, source: Source, *, email: str, min_remaining: timedelta | None = None
    ) -> Asset:
        """Like lookup, but raises NotCachedError instead of returning None."""
        asset = await self.lookup(source, email=email, min_remaining=min_remaining)
        if asset is None:
            raise NotCachedError(
                f"no live assetRef is cached for {_describe(source)} on {normalize_email(email)}"
            )
        return asset

    async def assets(
        self,
        email: str | None = None,
        expiring_within: timedelta | None = None,
        expired: bool | None = None,
    ) -> list[Asset]:
        return await asyncio.to_thread(self._core.assets, email, expiring_within, expired)

    async def prune(
        self,
        expired: bool = True,
        older_than: timedelta | None = None,
        email: str | None = None,
        dry_run: bool = False,
    ) -> list[Asset]:
        return [a async for a in self.iter_prune(expired, older_than, email, dry_run)]

    def iter_prune(
        self,
        expired: bool = True,
        older_than: timedelta | None = None,
        email: str | None = None,
        dry_run: bool = False,
    ) -> AsyncIterator[Asset]:
        """Like prune, but yields rows as batches are deleted: ``async for a in ...``."""
        rows = self._core.prune(expired, older_than, email, dry_run)  # checks arguments now

        def next_batch() -> list[Asset]:
            return list(itertools.islice(rows, PRUNE_BATCH))

        return _batched(next_batch)

    def export(self, email: str | None = None, live: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Like AssetCache.export: ``async for row in cache.export()``."""
        rows = self._core.export(email, live)

        def next_batch() -> list[dict[str, Any]]:
            return list(itertools.islice(rows, PRUNE_BATCH))

        return _batched(next_batch)

    async def fill(
        self,
        payload: dict[str, Any],
        *,
        email: str | None = None,
        base_dir: str | None = None,
        min_remaining: timedelta | None = None,
    ) -> dict[str, Any]:
        """Like AssetCache.fill."""
        (outcome,) = await self.fill_many(
            [payload], email=email, base_dir=base_dir, min_remaining=min_remaining
        )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def fill_many(
        self,
        payloads: Iterable[dict[str, Any]],
        *,
        email: str | None = None,
        base_dir: str | None = None,
        min_remaining: timedelta | None = None,
        jobs: int = DEFAULT_JOBS,
    ) -> list[_fill.FillOutcome]:
        """Like AssetCache.fill_many: every image of the batch resolved concurrently."""
        plans = _fill.plan_all(list(payloads), email=email, base_dir=base_dir)
        outcomes: dict[tuple[int, str], Asset | AssetCacheError] = {}
        for account, work in _fill.work_by_account(plans).items():
            results = await self.resolve_many(
                [w[3] for w in work], email=account, jobs=jobs, min_remaining=min_remaining
            )
            outcomes.update({(w[0], w[1]): r for w, r in zip(work, results, strict=True)})
        return _fill.assemble(plans, outcomes)

    async def report(self, email: str | None = None) -> str:
        """Like AssetCache.report."""
        return await asyncio.to_thread(self._core.report, email)

    async def forget(self, source_or_ref: Source, email: str | None = None) -> list[Asset]:
        """Like AssetCache.forget."""
        return await asyncio.to_thread(self._core.forget, source_or_ref, email)

    async def import_rows(self, rows: Iterable[object]) -> ImportReport:
        """Like AssetCache.import_rows (the rows are read in a worker thread)."""
        return await asyncio.to_thread(self._core.import_rows, rows)

    async def audit(self, email: str | None = None) -> list[AccountAudit]:
        return await asyncio.to_thread(self._core.audit, email)

    async def refresh(
        self,
        expiring_within: timedelta = timedelta(days=3),
        email: str | None = None,
        dry_run: bool = False,
    ) -> list[RefreshItem]:
        plan = await asyncio.to_thread(self._core.refresh_plan, expiring_within, email)
        if dry_run:
            return plan
        margin = _refresh_margin(expiring_within)
        items = []
        for item in plan:
            if item.status == "would-refresh":
                assert item.asset.source is not None
                try:  # awaited one by one: a refresh is a background chore, not a race
                    new = await self.resolve(
                        item.asset.source, email=item.asset.email, min_remaining=margin
                    )
                except AssetCacheError as exc:
                    item = self._core.refreshed(item, exc)
                else:
                    item = self._core.refreshed(item, new)
            items.append(item)
        return items


class LedgerInThreads:
    """An engine without an asyncio driver (SQLite: local disk), awaited through worker
    threads."""

    def __init__(self, engine: LedgerEngine) -> None:
        self._engine = engine

    async def newest(
        self, sha256: str, email: str, *, now: datetime | None = None, fresh: bool = False
    ) -> Asset | None:
        newest = functools.partial(self._engine.newest, sha256, email, now=now, fresh=fresh)
        return await asyncio.to_thread(newest)

    async def record(self, asset: Asset) -> Asset:
        return await asyncio.to_thread(self._engine.record, asset)


_Row = TypeVar("_Row")

async def _batched(next_batch: Callable[[], list[_Row]]) -> AsyncIterator[_Row]:
    """Rows from a blocking source, one worker-thread hop per batch rather than per row."""
    while batch := await asyncio.to_thread(next_batch):
        for asset in batch:
            yield asset
