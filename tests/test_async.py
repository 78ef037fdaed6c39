"""AsyncAssetCache: same semantics as AssetCache, on the event loop."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from assetcache import AsyncAssetCache, InvalidImageError, SessionExpiredError

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, png, write


def make(luma: FakeLuma, db: Path, clock: Clock) -> AsyncAssetCache:
    return AsyncAssetCache(
        token=TOKEN,
        db=db,
        base_url="https://api.test",
        transport=luma.transport,
        retry=FAST_RETRY,
        clock=clock,
    )


def test_async_resolve_lookup_and_reuse(
    luma: FakeLuma, db: Path, clock: Clock, tmp_path: Path
) -> None:
    path = write(tmp_path / "a.png", png("a"))

    async def go() -> None:
        async with make(luma, db, clock) as cache:
            first = await cache.resolve(path, email=EMAIL)
            assert not first.reused
            again = await cache.resolve(path, email=EMAIL)
            assert again.reused and again.asset_ref == first.asset_ref
            assert (await cache.lookup(png("zz"), email=EMAIL)) is None
            assert len(await cache.assets()) == 1
            clock.advance(timedelta(days=31))
            assert len(await cache.prune()) == 1

    asyncio.run(go())
    assert luma.uploads == 1


def test_async_gather_uploads_each_content_once(luma: FakeLuma, db: Path, clock: Clock) -> None:
    async def go() -> list[str]:
        async with make(luma, db, clock) as cache:
            results = await asyncio.gather(
                *(cache.resolve(png(str(i % 3)), email=EMAIL) for i in range(12))
            )
            return [r.asset_ref for r in results]

    refs = asyncio.run(go())
    assert luma.uploads == 3
    assert len(set(refs)) == 3


def test_async_resolve_many_and_errors(luma: FakeLuma, db: Path, clock: Clock) -> None:
    async def go() -> list[object]:
        async with make(luma, db, clock) as cache:
            return await cache.resolve_many([png("1"), b"bad", png("1")], email=EMAIL, jobs=2)

    out = asyncio.run(go())
    assert isinstance(out[1], InvalidImageError)
    assert out[0].asset_ref == out[2].asset_ref  # type: ignore[attr-defined]
    assert luma.uploads == 1


def test_async_errors_propagate(db: Path, clock: Clock) -> None:
    luma = FakeLuma(script=[596])

    async def go() -> None:
        async with make(luma, db, clock) as cache:
            await cache.resolve(png(), email=EMAIL)

    with pytest.raises(SessionExpiredError):
        asyncio.run(go())
    assert len(luma.requests) == 1


def test_async_refresh_and_audit(luma: FakeLuma, db: Path, clock: Clock, tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", png("a"))

    async def go() -> None:
        async with make(luma, db, clock) as cache:
            await cache.resolve(path, email=EMAIL)
            clock.advance(timedelta(days=28))
            (audit,) = await cache.audit()
            assert audit.expiring_7d == 1 and audit.refreshable == 1
            (item,) = await cache.refresh()
            assert item.status == "refreshed" and item.new is not None

    asyncio.run(go())
    assert luma.uploads == 2
