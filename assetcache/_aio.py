"""AsyncAssetCache: the same cache for asyncio, sharing every step with AssetCache via
_ResolveSteps, and every method of several steps via _orchestration: here they are only awaited.

Kept apart from ``_cache.py`` so that a synchronous cache hit never imports asyncio.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from . import _fill, _hit, _orchestration
from ._asset import Asset
from ._cache import (
    DEFAULT_JOBS,
    AccountAudit,
    ImportReport,
    RefreshItem,
    _CacheCommon,
    _Key,
    lookup_margin,
)
from ._email import normalize_email
from ._errors import AssetCacheError
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
from ._shielded import finished_anyway
from .content.sniff import Source
from .ledger.busy import KeyBusy
from .ledger.sqlite import PRUNE_BATCH

if TYPE_CHECKING:
    from ._client import AsyncLumaClient
    from .ledger import AsyncLedgerSide, LedgerEngine

_T = TypeVar("_T")


class AsyncAssetCache(_CacheCommon):
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
        self._steps.close()

    def _upload_client(self) -> AsyncLumaClient:
        from ._client import AsyncLumaClient

        return self._client_made_once(AsyncLumaClient)

    async def resolve(
        self,
        source: Source,
        *,
        email: str,
        force: bool = False,
        min_remaining: timedelta | None = None,
    ) -> Asset:
        """A live asset for ``source`` on ``email``'s account, uploading only if needed."""
        return await self._resolve(
            source, email=email, force=force, min_remaining=min_remaining, patient=True
        )

    async def _resolve(
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
        key = await asyncio.to_thread(steps.key, source)
        ledger = await self._ledger()  # opened now, never under a key lock
        if not force and (hit := await self._live(ledger, key, email, margin)):
            return hit
        key = await asyncio.to_thread(steps.content, key)

        async def look() -> Asset | None:
            return None if force else await self._live(ledger, key, email, margin, fresh=True)

        async with steps.locks.ahold(f"{key.sha256}:{email}", look, patient=patient) as found:
            if found is not None:
                return found  # another holder's upload, found while waiting: nothing held
            if (hit := await look()) is not None:
                return hit  # someone uploaded it while we waited: no token needed
            client = self._upload_client()
            assert key.content is not None
            uploaded_at = steps.now()
            result = await client.upload(
                key.content.data, content_type=key.content.content_type, email=email
            )
            recording = ledger.record(steps.uploaded(key, email, uploaded_at, result))
            # The upload was paid for: a caller cancelled now must not lose its row (SQLite's
            # worker thread runs on anyway; psycopg's asyncio driver would cancel the statement).
            return await finished_anyway(recording)

    async def _ledger(self) -> AsyncLedgerSide:
        """The ledger's resolve path as awaitables: its engine's asyncio driver if it has one,
        else its sync calls in worker threads."""
        steps = self._steps
        engine = await asyncio.to_thread(lambda: steps.ledger)
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
        """As _ResolveSteps.live, awaiting the ledger; the decisions are _ResolveSteps's."""
        steps = self._steps
        now = steps.now()
        row = await ledger.newest(key.sha256, email, now=now, fresh=fresh)
        if _hit.ask_again(row, now, margin, fresh=fresh):
            row = await ledger.newest(key.sha256, email, now=now, fresh=True)
        return await asyncio.to_thread(steps.answer, key, email, row, now, margin)

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
        return await self._run(
            _orchestration.resolve_many(
                sources,
                email=email,
                jobs=jobs,
                force=force,
                min_remaining=min_remaining,
                on_result=on_result,
            )
        )

    async def lookup(
        self, source: Source, *, email: str, min_remaining: timedelta | None = None
    ) -> Asset | None:
        steps = self._steps
        margin = lookup_margin(min_remaining)
        email = normalize_email(email)
        key = await asyncio.to_thread(steps.key, source)
        return await self._live(await self._ledger(), key, email, margin)

    async def require(
        self, source: Source, *, email: str, min_remaining: timedelta | None = None
    ) -> Asset:
        """Like lookup, but raises NotCachedError instead of returning None."""
        asset = await self.lookup(source, email=email, min_remaining=min_remaining)
        return required(asset, source, email)

    async def assets(
        self,
        email: str | None = None,
        expiring_within: timedelta | None = None,
        expired: bool | None = None,
        *,
        current: bool = False,
    ) -> list[Asset]:
        return await asyncio.to_thread(self._steps.assets, email, expiring_within, expired, current)

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
        # The arguments are checked now, before the first ``async for``.
        return _batched(self._steps.prune(expired, older_than, email, dry_run))

    def export(self, email: str | None = None, live: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Like AssetCache.export: ``async for row in cache.export()``."""
        return _batched(self._steps.export(email, live))

    async def fill(
        self,
        payload: dict[str, Any],
        *,
        email: str | None = None,
        base_dir: str | None = None,
        min_remaining: timedelta | None = None,
    ) -> dict[str, Any]:
        """Like AssetCache.fill."""
        return await self._run(
            _fill.fill(payload, email=email, base_dir=base_dir, min_remaining=min_remaining)
        )

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
        return await self._run(
            _fill.fill_many(
                payloads, email=email, base_dir=base_dir, min_remaining=min_remaining, jobs=jobs
            )
        )

    async def report(self, email: str | None = None) -> str:
        """Like AssetCache.report."""
        return await asyncio.to_thread(self._steps.report, email)

    async def forget(self, source_or_ref: Source, email: str | None = None) -> list[Asset]:
        """Like AssetCache.forget."""
        return await asyncio.to_thread(self._steps.forget, source_or_ref, email)

    async def import_rows(self, rows: Iterable[object]) -> ImportReport:
        """Like AssetCache.import_rows (the rows are read in a worker thread)."""
        return await asyncio.to_thread(self._steps.import_rows, rows)

    async def audit(self, email: str | None = None) -> list[AccountAudit]:
        return await asyncio.to_thread(self._steps.audit, email)

    async def refresh(
        self,
        expiring_within: timedelta = timedelta(days=3),
        email: str | None = None,
        dry_run: bool = False,
    ) -> list[RefreshItem]:
        return await self._run(_orchestration.refresh(self._steps, expiring_within, email, dry_run))

    # -- how this cache waits: on the event loop, blocking calls in worker threads ----------

    async def _run(self, steps: Steps[_T]) -> _T:
        """A method written once as steps (see _orchestration), awaited."""
        return await _orchestration.run_async(steps, self._perform)

    async def _perform(self, step: Step) -> object:
        if isinstance(step, Blocking):
            return await asyncio.to_thread(step.work)
        if isinstance(step, Resolve):
            return await self._settled(step)
        return await self._resolve_each(step)

    async def _settled(self, order: Resolve, *, patient: bool = True) -> Outcome:
        """The order resolved, or the AssetCacheError that stopped it (KeyBusy propagates)."""
        try:
            return await order.by(self._resolve, patient=patient)
        except AssetCacheError as exc:
            return exc

    async def _resolve_each(self, batch: ResolveEach) -> list[Outcome]:
        """``jobs`` tasks taking the orders in ``BatchOrder``'s order."""
        count = len(batch.orders)
        outcomes: list[Outcome | None] = [None] * count
        queue = BatchOrder(count)

        async def work() -> None:
            while (taken := queue.next()) is not None:
                index, patient = taken
                try:
                    outcome = await self._settled(batch.orders[index], patient=patient)
                except KeyBusy:
                    queue.busy(index)
                    continue
                outcomes[index] = batch.finished(index, outcome)

        await asyncio.gather(*(work() for _ in range(min(batch.jobs, count))))
        return cast(list[Outcome], outcomes)  # every task ended normally: each order ran


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


async def _batched(rows: Iterator[_Row]) -> AsyncIterator[_Row]:
    """Rows from a blocking source, one worker-thread hop per batch rather than per row."""

    def next_batch() -> list[_Row]:
        return list(itertools.islice(rows, PRUNE_BATCH))

    while batch := await asyncio.to_thread(next_batch):
        for row in batch:
            yield row
