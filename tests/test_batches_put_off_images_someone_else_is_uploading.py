"""A batch never sits behind someone else's upload while it has other work, and a waiter whose
holder finishes takes the holder's answer without taking the key (both engines, both caches).

- ``resolve_many`` tries each image once without waiting for another holder of its key
  (another process, machine or worker uploading the same bytes); those it finds busy come back
  after the rest, and are then waited for. So a farm's processes given one list of images
  upload different ones at once, instead of queueing behind whichever started first.
- On the shared ledger, a waiter's polls read the lease row (no row lock; a claim of a held row
  would queue behind every other waiter's); when the holder leaves, the waiter looks for the
  row first, and finds the holder's ref without claiming the key at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from assetcache import AssetCache
from assetcache.ledger import leases as _leases

from .conftest import EMAIL, FakeLuma, _cache_options, png, write


def _key(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()}:{EMAIL}"


def _uploaded(luma: FakeLuma) -> list[str]:
    """The sha256 of each upload's bytes, in the order they reached the server."""
    return [hashlib.sha256(r.content).hexdigest() for r in luma.requests]


@pytest.fixture
def other_machine(
    luma: FakeLuma, clock: Any, db: Path, engine: str, request: pytest.FixtureRequest
) -> Iterator[AssetCache]:
    """Another cache on the same ledger (another process or machine, as far as single flight
    can tell: its own locks, its own session)."""
    ledger = db if engine == "sqlite" else request.getfixturevalue("ledger_location")
    with AssetCache(**_cache_options(luma, clock, ledger)) as cache:
        yield cache


@pytest.fixture
def holding(other_machine: AssetCache) -> Iterator[Callable[[str], threading.Event]]:
    """``holding(key)``: the other machine holds ``key`` (as while uploading it) until the
    returned event is set; the fixture waits until it does hold it."""
    threads: list[tuple[threading.Thread, threading.Event]] = []

    def hold(key: str) -> threading.Event:
        held, done = threading.Event(), threading.Event()

        def holder() -> None:
            with other_machine._steps.ledger.locks.hold(key):
                held.set()
                done.wait(60)

        thread = threading.Thread(target=holder, daemon=True)
        thread.start()
        assert held.wait(30), "the other machine never got the key"
        threads.append((thread, done))
        return done

    yield hold
    for thread, done in threads:
        done.set()
        thread.join(30)


@pytest.mark.both_engines
def test_a_batch_uploads_the_free_images_first_and_then_waits_for_the_busy_one(
    make_cache: Callable[..., AssetCache],
    holding: Callable[[str], threading.Event],
    luma: FakeLuma,
    tmp_path: Path,
) -> None:
    images = [png(f"frame {i}") for i in range(3)]
    paths = [write(tmp_path / f"frame{i}.png", data) for i, data in enumerate(images)]
    release = holding(_key(images[0]))  # another machine is uploading frame 0
    cache = make_cache()
    outcome: list[Any] = []
    batch = threading.Thread(
        target=lambda: outcome.extend(cache.resolve_many(paths, email=EMAIL, jobs=1))
    )
    batch.start()
    end = time.monotonic() + 60
    while len(luma.requests) < 2:  # frames 1 and 2 go up meanwhile...
        assert batch.is_alive() and time.monotonic() < end, (outcome, _uploaded(luma))
        time.sleep(0.01)
    assert batch.is_alive()  # ...while frame 0 is still waited for
    release.set()  # the other machine gave up without an upload: frame 0 is ours to upload
    batch.join(60)
    assert not batch.is_alive()
    digests = [hashlib.sha256(data).hexdigest() for data in images]
    assert _uploaded(luma) == [digests[1], digests[2], digests[0]]
    assert [asset.sha256 for asset in outcome] == digests  # still in the batch's order
    assert all(asset.reused is False for asset in outcome)


@pytest.mark.both_engines
def test_a_batch_with_one_image_many_times_uploads_it_once(
    make_cache: Callable[..., AssetCache], luma: FakeLuma, tmp_path: Path
) -> None:
    path = write(tmp_path / "frame.png", png("the same frame"))
    copy = write(tmp_path / "copy.png", png("the same frame"))
    outcome = make_cache().resolve_many([path, copy, path, copy, path], email=EMAIL, jobs=4)
    assert luma.uploads == 1
    assert len({asset.asset_ref for asset in outcome}) == 1
    assert len(outcome) == 5


class GatedLuma(FakeLuma):
    """The upload endpoint, holding each upload until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.arrived = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.arrived.set()
        assert self.gate.wait(60)
        return super().__call__(request)


class AsyncGatedLuma(GatedLuma):
    """As GatedLuma, for AsyncAssetCache: waiting on its event loop, which a blocking handler
    would stop (httpx.MockTransport awaits a handler that returns an awaitable)."""

    def __call__(self, request: httpx.Request) -> Any:
        async def answer() -> httpx.Response:
            self.arrived.set()
            end = time.monotonic() + 60
            while not self.gate.is_set():
                assert time.monotonic() < end
                await asyncio.sleep(0.01)
            return FakeLuma.__call__(self, request)

        return answer()


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_waiter_reads_the_lease_and_takes_the_holders_ref_without_claiming(
    make_cache: Callable[..., AssetCache],
    luma: FakeLuma,
    clock: Any,
    ledger_location: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claims: list[bool] = []
    real_outcome = _leases.claim_outcome

    def counted(row: Any) -> tuple[bool, str | None]:
        outcome = real_outcome(row)
        claims.append(outcome[0])
        return outcome

    monkeypatch.setattr(_leases, "claim_outcome", counted)
    path = write(tmp_path / "frame.png", png("one frame, two machines"))
    slow = GatedLuma()
    with AssetCache(**_cache_options(slow, clock, ledger_location)) as uploader:
        first: list[Any] = []
        upload = threading.Thread(target=lambda: first.append(uploader.resolve(path, email=EMAIL)))
        upload.start()
        assert slow.arrived.wait(30)  # the uploader holds the key, its upload under way
        waiter = make_cache()
        second: list[Any] = []
        wait = threading.Thread(target=lambda: second.append(waiter.resolve(path, email=EMAIL)))
        wait.start()
        end = time.monotonic() + 30
        while claims.count(False) < 1:  # the waiter's one claim, refused
            assert time.monotonic() < end
            time.sleep(0.01)
        time.sleep(1.0)  # the waiter polls meanwhile: reads only
        slow.gate.set()
        upload.join(30)
        wait.join(30)
    assert first and second, (first, second)
    assert second[0].asset_ref == first[0].asset_ref
    assert second[0].reused is True
    assert luma.uploads == 0 and slow.uploads == 1
    # The uploader's claim, and the waiter's first one (refused): no claim after that.
    assert sorted(claims) == [False, True], claims


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_workers_of_one_process_that_waited_their_turn_take_the_first_ones_ref(
    make_cache: Callable[..., AssetCache],
    flavour: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers of one batch (threads or tasks) asking for one image queue in-process; the ones
    that waited there look before they claim, and find the first one's ref: one claim."""
    claims: list[bool] = []
    real_outcome = _leases.claim_outcome

    def counted(row: Any) -> tuple[bool, str | None]:
        outcome = real_outcome(row)
        claims.append(outcome[0])
        return outcome

    monkeypatch.setattr(_leases, "claim_outcome", counted)
    data = png("one frame, four workers")
    paths = [write(tmp_path / f"copy{i}.png", data) for i in range(4)]
    slow = GatedLuma() if flavour == "sync" else AsyncGatedLuma()
    cache = make_cache(transport=slow.transport)
    outcome: list[Any] = []
    batch = threading.Thread(
        target=lambda: outcome.extend(cache.resolve_many(paths, email=EMAIL, jobs=4))
    )
    batch.start()
    assert slow.arrived.wait(30)  # the first worker uploads...
    turns = cache._steps.ledger.locks._turns
    end = time.monotonic() + 30
    while turns._locks.get(_key(data), (None, 0))[1] < 4:  # ...and the other three queue here
        assert batch.is_alive() and time.monotonic() < end, outcome
        time.sleep(0.01)
    slow.gate.set()
    batch.join(60)
    assert len(outcome) == 4 and len({asset.asset_ref for asset in outcome}) == 1
    assert slow.uploads == 1
    assert claims == [True], claims


def test_taking_a_dead_holders_key_can_be_asked_again_after_a_lost_answer(
    postgres_url: str, clock: Any, luma: FakeLuma
) -> None:
    """A session that drops after the server committed a take is asked again on a new one
    (``PostgresLedger.run``): the repeated take must say the key is ours, not refuse it."""
    import psycopg

    with AssetCache(**_cache_options(luma, clock, postgres_url)) as cache:
        cache.resolve(png("the tables are made"), email=EMAIL)
    dead = _leases.Lease.of("cd" * 32 + ":" + EMAIL)
    ours = _leases.Lease.of("cd" * 32 + ":" + EMAIL)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute(_leases.CLAIM, dead.params).fetchone() == (True, dead.holder)
        take = {**ours.params, "dead": dead.holder}
        assert conn.execute(_leases.TAKE_FROM, take).fetchone() == (ours.holder,)
        assert conn.execute(_leases.TAKE_FROM, take).fetchone() == (ours.holder,)  # again
        third = _leases.Lease.of("cd" * 32 + ":" + EMAIL)
        assert (
            conn.execute(_leases.TAKE_FROM, {**third.params, "dead": dead.holder}).fetchone()
            is None
        )
