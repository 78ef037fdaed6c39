"""AsyncAssetCache on a PostgreSQL ledger talks to the server with psycopg's asyncio driver: its
resolve path (the newest row, single flight's lock, recording) waits on the event loop, with the
same guarantees as the sync driver: one upload per image across machines, a client deadline
for a stopped server, dropped sessions asked again, paid uploads spooled."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from assetcache import Asset, AsyncAssetCache, Emulator, LedgerError

from .conftest import EMAIL, png

pytestmark = pytest.mark.slow


def _cache(url: str, emu: Emulator) -> AsyncAssetCache:
    return AsyncAssetCache(db=url, token=emu.token, base_url=emu.base_url)


def test_the_resolve_path_uses_psycopgs_asyncio_driver(postgres_url: str) -> None:
    import psycopg

    async def main() -> None:
        with Emulator() as emu:
            async with _cache(postgres_url, emu) as cache:
                first = await cache.resolve(png("a"), email=EMAIL)
                assert (await cache.resolve(png("a"), email=EMAIL, min_remaining=None)).reused
                sessions = cache._steps.ledger.async_side()
                loop = asyncio.get_running_loop()
                session = sessions._sessions[loop]  # one per loop: reads, claims, recording
                assert isinstance(session, psycopg.AsyncConnection)
                assert first.asset_ref.startswith("u")
            assert session.closed  # aclose closed it

    asyncio.run(main())


def test_two_machines_of_async_tasks_upload_each_image_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two machines (separate cache dirs: separate local locks and mirrors), each with 12 tasks
    over the same 6 images: only the advisory locks on their async lock sessions keep them
    apart."""

    async def main() -> list[list[Asset | Exception]]:
        with Emulator(latency=0.05) as emu:
            caches = []
            for name in ("m1", "m2"):
                monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / name))
                cache = _cache(postgres_url, emu)
                await cache.assets()  # the engine opens now, with this machine's cache dir
                caches.append(cache)
            files = [png(str(i)) for i in range(6)]
            outcomes = await asyncio.gather(
                *(c.resolve_many(files * 2, email=EMAIL, jobs=12) for c in caches)
            )
            for cache in caches:
                await cache.aclose()
            assert len(emu.uploads) == 6
        return outcomes  # type: ignore[return-value]

    outcomes = asyncio.run(main())
    refs = {(i % 6, o.asset_ref) for run in outcomes for i, o in enumerate(run)}  # type: ignore[union-attr]
    assert len(refs) == 6  # every task got the ref of its image's one upload


def test_a_stopped_server_fails_async_readers_and_waiters_within_the_deadline(
    make_postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetcache.ledger import postgres as _postgres

    monkeypatch.setattr(_postgres, "SESSION_DEADLINE_S", 1.0)
    server = make_postgres_server()
    url = server.create_database("frozen")
    with Emulator() as emu:
        cache = _cache(url, emu)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(cache.resolve(png("warm"), email=EMAIL))
            pids = server.freeze()  # from this thread: the server dies with its starter

            async def stalled() -> float:
                began = time.monotonic()
                with pytest.raises(LedgerError, match="did not answer within 1 s"):
                    await cache.lookup(png("not mirrored"), email=EMAIL)
                # The cut session is gone; a waiter's claim needs a new one, which the frozen
                # server never finishes starting: libpq's connect_timeout ends it.
                with pytest.raises(LedgerError, match="did not answer within 1 s|cannot be reached"):
                    async with cache._steps.locks.ahold("some-key"):
                        pass
                return time.monotonic() - began

            try:
                took = loop.run_until_complete(stalled())
            finally:
                server.thaw(pids)
            assert took < 20
            again = loop.run_until_complete(cache.resolve(png("warm"), email=EMAIL))
            assert again.reused and len(emu.uploads) == 1
        finally:
            loop.run_until_complete(cache.aclose())
            loop.close()


def test_async_sessions_a_restart_dropped_are_asked_again_once(make_postgres_server: Any) -> None:
    server = make_postgres_server()
    url = server.create_database("restarted")
    with Emulator() as emu:
        cache = _cache(url, emu)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(cache.resolve(png("before"), email=EMAIL))
            server.restart(crash=True)  # the pooled async sessions and the lock session die
            assert loop.run_until_complete(cache.lookup(png("never"), email=EMAIL)) is None
            after = loop.run_until_complete(cache.resolve(png("after"), email=EMAIL))
            assert after.reused is False and len(emu.uploads) == 2
        finally:
            loop.run_until_complete(cache.aclose())
            loop.close()


def test_an_async_upload_the_ledger_could_not_record_is_spooled_then_merged(
    make_postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetcache import AssetCache
    from assetcache.ledger import postgres as _postgres

    monkeypatch.setattr(_postgres, "RECORD_RETRY_S", 0.5)
    server = make_postgres_server()
    url = server.create_database("spool")
    with Emulator(latency=1.0) as emu:
        cache = _cache(url, emu)
        outcome: list[Asset] = []
        migrated = threading.Event()

        def resolve_in_a_loop() -> None:
            async def main() -> None:
                await cache.assets()
                migrated.set()
                outcome.append(await cache.resolve(png("paid"), email=EMAIL))
                await cache.aclose()

            asyncio.run(main())

        worker = threading.Thread(target=resolve_in_a_loop)
        worker.start()
        assert migrated.wait(60)
        time.sleep(0.4)  # the upload (1 s of latency) is in flight
        server.stop()  # from this thread: the server dies with the thread that started it
        worker.join()
        (asset,) = outcome
        server.start()
        with AssetCache(db=url, token=emu.token, base_url=emu.base_url) as later:
            assert [a.asset_ref for a in later.assets()] == [asset.asset_ref]
        assert len(emu.uploads) == 1


def test_a_claim_cancelled_in_flight_leaves_the_key_free(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolve cancelled (asyncio.wait_for, a task group) while its lease claim is on its way
    back: the server gave it the key, the caller never learns it. The lease must be given back,
    or every other machine waits LEASE_S for a key nobody is uploading."""
    import psycopg

    from assetcache import _shielded
    from assetcache.ledger import leases as _leases
    from assetcache.ledger import postgres_async as _postgres_async

    cursor = _postgres_async._watched_cursor(psycopg)
    real = cursor.execute

    async def answer_late(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        result = await real(self, query, params, **kwargs)
        if query == _leases.CLAIM:
            await asyncio.sleep(0.5)  # the server has answered; the answer is in flight
        return result

    lease = _leases.Lease.of("0" * 64 + ":" + EMAIL)

    async def main() -> Any:
        with Emulator() as emu:
            async with _cache(postgres_url, emu) as cache:
                await cache.assets()  # migrated
                sessions = cache._steps.ledger.async_side()
                with monkeypatch.context() as slow:
                    slow.setattr(cursor, "execute", answer_late)
                    attempt = asyncio.ensure_future(sessions.claim(lease))
                    await asyncio.sleep(0.2)
                    attempt.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await attempt
                    for _ in range(100):  # the statement, then the give-back, run on
                        if not _shielded._RUNNING:
                            break
                        await asyncio.sleep(0.05)
                other = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
                async with other:
                    held = await other.execute("SELECT count(*) FROM upload_leases")
                    return await held.fetchone()

    assert asyncio.run(main()) == (0,)  # no lease left behind: another machine may claim it


def test_aclose_while_a_resolve_records_does_not_leave_it_retrying(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aclose() while a task retries recording its upload (the server refuses the statement):
    the task ends soon after with the ledger's 'is closed', as on SQLite, instead of retrying a
    closed ledger for RECORD_RETRY_S."""
    from assetcache.ledger import postgres as _postgres
    from assetcache.ledger import schema as _schema

    monkeypatch.setattr(_postgres, "RECORD_RETRY_S", 60.0)

    async def main() -> float:
        with Emulator() as emu:
            cache = _cache(postgres_url, emu)
            await cache.assets()  # migrated
            monkeypatch.setattr(_schema, "RECORD_UPLOAD", "SELECT no_such_function()")
            task = asyncio.ensure_future(cache.resolve(png("paid"), email=EMAIL))
            while not emu.uploads:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # recording is being retried
            began = time.monotonic()
            await cache.aclose()
            with pytest.raises(LedgerError, match="is closed"):
                await task
            return time.monotonic() - began

    assert asyncio.run(main()) < 30  # not RECORD_RETRY_S


def test_close_while_a_resolve_records_does_not_leave_it_retrying(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetcache import AssetCache
    from assetcache.ledger import postgres as _postgres
    from assetcache.ledger import schema as _schema

    monkeypatch.setattr(_postgres, "RECORD_RETRY_S", 60.0)
    with Emulator() as emu:
        cache = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url)
        cache.assets()  # migrated
        monkeypatch.setattr(_schema, "RECORD_UPLOAD", "SELECT no_such_function()")
        failures: list[BaseException] = []

        def resolve() -> None:
            try:
                cache.resolve(png("paid"), email=EMAIL)
            except LedgerError as exc:
                failures.append(exc)

        worker = threading.Thread(target=resolve)
        worker.start()
        while not emu.uploads:
            time.sleep(0.05)
        time.sleep(0.5)  # recording is being retried
        cache.close()
        worker.join(30)  # not RECORD_RETRY_S
        assert not worker.is_alive()
        assert "is closed" in str(failures[0])


def test_a_resolve_cancelled_while_recording_still_records_its_upload(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload was paid for: cancelling the resolve (wait_for, a task group) while its row is
    being written must not lose the row, or the next resolve pays again."""
    from assetcache.ledger.postgres_async import AsyncSessions

    real = AsyncSessions.record

    async def slow_record(self: AsyncSessions, asset: Asset) -> Asset:
        await asyncio.sleep(0.5)  # the window in which the caller is cancelled
        return await real(self, asset)

    monkeypatch.setattr(AsyncSessions, "record", slow_record)

    async def main() -> None:
        with Emulator() as emu:
            async with _cache(postgres_url, emu) as cache:
                task = asyncio.ensure_future(cache.resolve(png("paid"), email=EMAIL))
                while not emu.uploads:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for _ in range(100):  # the recording runs on in its own task
                    if await cache.assets():
                        break
                    await asyncio.sleep(0.05)
                again = await cache.resolve(png("paid"), email=EMAIL)
                assert again.reused and len(emu.uploads) == 1

    asyncio.run(main())
