"""An upload the shared ledger could not record sits in this machine's spool until a merge
takes it there. Until then it is still this machine's knowledge (issue #16, item 2): lookups
and resolves find it (no second upload), ``forget`` revokes it (and the merge carries the
revocation, never brings it back live), and ``assets`` lists it, whether or not the merge is
held off after a failed attempt. Against a real PostgreSQL server that is stopped and started
again, with both caches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from assetcache import AssetCache, AsyncAssetCache, LedgerError
from assetcache.ledger import postgres as _postgres

from .conftest import EMAIL, FAST_RETRY, TOKEN, FakeLuma, png

pytestmark = pytest.mark.slow


def _luma_stopping(server: Any, luma: FakeLuma) -> Callable[[httpx.Request], httpx.Response]:
    """The upload endpoint, which stops the database while the first upload is in flight."""
    stopped: list[bool] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if not stopped:
            stopped.append(True)
            server.stop()  # on the test's thread, which started it (see PostgresServer)
        return luma(request)

    return handler


@pytest.fixture
def held_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spool at the first failure to record, and hold off merging for the whole test."""
    monkeypatch.setattr(_postgres, "RECORD_RETRY_S", 0.0)
    monkeypatch.setattr(_postgres, "SPOOL_RETRY_S", 24 * 3600.0)


def _spooled_refs(cache: AssetCache | AsyncAssetCache) -> list[str]:
    local = cache._steps.ledger._local  # type: ignore[attr-defined]
    return [a.asset_ref for a in local.spooled(10)]


def _merged_later(url: str, luma: FakeLuma) -> list[tuple[str, bool]]:
    """What the shared ledger holds once a later process of this machine merged the spool."""
    with AssetCache(db=url, token=TOKEN, transport=luma.transport) as later:
        rows = [(a.asset_ref, a.revoked_at is not None) for a in later.assets()]
        assert _spooled_refs(later) == []
        assert later.lookup(png("paid"), email=EMAIL) is None
    return rows


def test_a_spooled_upload_is_found_reused_and_forgotten_while_its_merge_is_held_off(
    make_postgres_server: Any, held_off: None
) -> None:
    server = make_postgres_server()
    url = server.create_database("held")
    luma = FakeLuma()
    transport = httpx.MockTransport(_luma_stopping(server, luma))
    with AssetCache(db=url, token=TOKEN, transport=transport, retry=FAST_RETRY) as cache:
        cache.assets()  # migrated
        paid = cache.resolve(png("paid"), email=EMAIL)  # recorded in the spool
        assert _spooled_refs(cache) == [paid.asset_ref]
        with pytest.raises(LedgerError):
            cache.assets()  # a merge attempt fails while the database is down: held off
        server.start()  # back within the hold-off
        hit = cache.lookup(png("paid"), email=EMAIL)
        assert hit is not None and hit.asset_ref == paid.asset_ref
        again = cache.resolve(png("paid"), email=EMAIL)
        assert again.reused and again.asset_ref == paid.asset_ref
        assert luma.uploads == 1  # not paid for twice
        assert [a.asset_ref for a in cache.assets()] == [paid.asset_ref]  # ls lists it
        forgotten = cache.forget(png("paid"), email=EMAIL)
        assert [a.asset_ref for a in forgotten] == [paid.asset_ref]
        assert cache.lookup(png("paid"), email=EMAIL) is None
        (listed,) = cache.assets()
        assert listed.revoked_at is not None
    assert _merged_later(url, luma) == [(paid.asset_ref, True)]  # never back live


def test_an_async_spooled_upload_is_found_reused_and_forgotten_while_its_merge_is_held_off(
    make_postgres_server: Any, held_off: None
) -> None:
    server = make_postgres_server()
    url = server.create_database("held")
    luma = FakeLuma()
    transport = httpx.MockTransport(_luma_stopping(server, luma))

    async def main() -> str:
        async with AsyncAssetCache(
            db=url, token=TOKEN, transport=transport, retry=FAST_RETRY
        ) as cache:
            await cache.assets()  # migrated
            paid = await cache.resolve(png("paid"), email=EMAIL)
            assert _spooled_refs(cache) == [paid.asset_ref]
            with pytest.raises(LedgerError):
                await cache.assets()  # held off
            server.start()
            hit = await cache.lookup(png("paid"), email=EMAIL)
            assert hit is not None and hit.asset_ref == paid.asset_ref
            again = await cache.resolve(png("paid"), email=EMAIL)
            assert again.reused and again.asset_ref == paid.asset_ref
            assert luma.uploads == 1
            assert [a.asset_ref for a in await cache.assets()] == [paid.asset_ref]
            forgotten = await cache.forget(paid.asset_ref)  # by ref, this time
            assert [a.asset_ref for a in forgotten] == [paid.asset_ref]
            assert await cache.lookup(png("paid"), email=EMAIL) is None
            exported = [row async for row in cache.export()]
            assert [(r["asset_ref"], r["revoked_at"] is not None) for r in exported] == [
                (paid.asset_ref, True)
            ]
            return paid.asset_ref

    ref = asyncio.run(main())
    assert _merged_later(url, luma) == [(ref, True)]


def test_the_console_scripts_ref_answers_a_spooled_upload_while_the_database_is_down(
    make_postgres_server: Any,
    held_off: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lean ``ref`` reads this machine's file, spool included, without the server."""
    import contextlib
    import io
    import time
    import types

    from assetcache._entry import fast_ref
    from assetcache.content import stat_cache

    server = make_postgres_server()
    url = server.create_database("down")
    monkeypatch.setenv("ASSETCACHE_DB", url)
    real = time.time_ns  # hashed "3 s after" the write: the stat cache trusts the file
    monkeypatch.setattr(stat_cache, "time", types.SimpleNamespace(time_ns=lambda: real() + 3 * 10**9))
    path = tmp_path / "paid.png"
    path.write_bytes(png("paid"))
    luma = FakeLuma()
    transport = httpx.MockTransport(_luma_stopping(server, luma))
    with AssetCache(token=TOKEN, transport=transport, retry=FAST_RETRY) as cache:
        cache.assets()  # migrated
        paid = cache.resolve(path, email=EMAIL)  # spooled; the database stays down
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fast_ref(["ref", str(path), "-e", EMAIL])
    assert (code, out.getvalue().strip()) == (0, paid.asset_ref)
