"""AsyncAssetCache: the same cache for asyncio, sharing every step with AssetCache via _Core.

Kept apart from ``_cache.py`` so that a synchronous cache hit never imports asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._asset import Asset
from ._cache import (
    DEFAULT_JOBS,
    AccountAudit,
    RefreshItem,
    _Facade,
    _refresh_margin,
    lookup_margin,
)
from ._content import Source
from ._email import normalize_email
from ._errors import AssetCacheError

if TYPE_CHECKING:
    from ._client import AsyncLumaClient


class AsyncAssetCache(_Facade):
    """The same cache for asyncio: ``await cache.resolve(...)``; ``async with`` or ``aclose()``.

    Disk and ledger work runs in worker threads; waiting for another resolver's upload and the
    upload itself happen on the event loop, so thousands of concurrent resolves cost no threads.
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
        if self._client is not None:
            await self._client.aclose()
        self._core.close()

    def _upload_client(self) -> AsyncLumaClient:
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
        if not force and (hit := await asyncio.to_thread(core.live, key, email, margin)):
            return hit
        key = await asyncio.to_thread(core.content, key)
        await asyncio.to_thread(lambda: core.ledger)  # open it now, never under a key lock
        async with core.locks.ahold(f"{key.sha256}:{email}"):
            if not force and (hit := await asyncio.to_thread(core.live, key, email, margin)):
                return hit  # someone uploaded it while we waited: no token needed
            client = self._upload_client()
            assert key.content is not None
            uploaded_at = core.now()
            result = await client.upload(
                key.content.data, content_type=key.content.content_type, email=email
            )
            return await asyncio.to_thread(core.record, key, email, uploaded_at, result)

    async def resolve_many(
        self,
        sources: Iterable[Source],
        *,
        email: str,
        jobs: int = DEFAULT_JOBS,
        force: bool = False,
        min_remaining: timedelta | None = None,
    ) -> list[Asset | AssetCacheError]:
        """Resolve many sources with at most ``jobs`` in flight; results in input order."""
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        gate = asyncio.Semaphore(jobs)

        async def one(source: Source) -> Asset | AssetCacheError:
            async with gate:
                try:
                    return await self.resolve(
                        source, email=email, force=force, min_remaining=min_remaining
                    )
                except AssetCacheError as exc:
                    return exc

        return list(await asyncio.gather(*(one(s) for s in sources)))

    async def lookup(
        self, source: Source, *, email: str, min_remaining: timedelta | None = None
    ) -> Asset | None:
        core = self._core
        margin = lookup_margin(min_remaining)
        key = await asyncio.to_thread(core.key, source)
        return await asyncio.to_thread(core.live, key, normalize_email(email), margin)

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
        return await asyncio.to_thread(
            lambda: list(self._core.prune(expired, older_than, email, dry_run))
        )

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
                    item = RefreshItem(item.asset, "refreshed", new=new)
                except AssetCacheError as exc:
                    item = RefreshItem(item.asset, "failed", error=exc)
            items.append(item)
        return items
