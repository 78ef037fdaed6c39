"""Closing a cache while one of its resolves is uploading (another thread, another task): the
resolve fails with an AssetCacheError saying so, never httpx's bare RuntimeError, so that
resolve_many and gather keep each item's failure in its place."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from assetcache import Asset, AssetCache, AssetCacheError, AsyncAssetCache, RetryPolicy

from .conftest import EMAIL, TOKEN, FakeLuma, png

#: One 503, then a backoff long enough to close the cache in.
SLOW_RETRY = RetryPolicy(attempts=3, initial=1.0, max_backoff=1.0, jitter=0.0)


def test_closing_a_sync_cache_mid_upload_is_an_assetcache_error(tmp_path: Path) -> None:
    luma = FakeLuma(script=[503])
    cache = AssetCache(
        token=TOKEN, db=tmp_path / "l.db", transport=luma.transport, retry=SLOW_RETRY,
        base_url="https://api.test",
    )  # fmt: skip
    outcome: list[object] = []

    def resolve() -> None:
        try:
            outcome.append(cache.resolve(png("x"), email=EMAIL))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve)
    worker.start()
    while not luma.requests:
        time.sleep(0.01)
    cache.close()  # during the backoff after the 503
    worker.join()
    (error,) = outcome
    assert isinstance(error, AssetCacheError), repr(error)
    assert "closed while an upload was under way" in str(error)


def test_closing_an_async_cache_mid_upload_is_an_assetcache_error(tmp_path: Path) -> None:
    luma = FakeLuma(script=[503])

    async def main() -> list[object]:
        cache = AsyncAssetCache(
            token=TOKEN, db=tmp_path / "l.db", transport=luma.transport, retry=SLOW_RETRY,
            base_url="https://api.test",
        )  # fmt: skip
        batch = asyncio.ensure_future(
            cache.resolve_many([png("x"), png("y")], email=EMAIL, jobs=2)
        )
        while len(luma.requests) < 2:
            await asyncio.sleep(0.01)
        await cache.aclose()
        return list(await batch)

    outcomes = asyncio.run(main())
    assert len(outcomes) == 2  # each in its place: an Asset, or the error saying why not
    assert all(isinstance(o, Asset | AssetCacheError) for o in outcomes), outcomes
    assert any("closed while an upload was under way" in str(o) for o in outcomes)


def test_a_closed_client_refuses_to_upload_with_an_assetcache_error(tmp_path: Path) -> None:
    cache = AssetCache(
        token=TOKEN, db=tmp_path / "l.db", transport=FakeLuma().transport,
        base_url="https://api.test",
    )  # fmt: skip
    cache.resolve(png("warm"), email=EMAIL)  # the client exists
    client = cache._client
    cache.close()
    assert client is not None
    with pytest.raises(AssetCacheError, match="closed"):
        client.upload(png("x"), content_type="image/png", email=EMAIL)
