"""A forget made on another machine reaches this one within MIRROR_TTL of real time, however
this machine's wall clock jumped while it read (issue #16, item 1).

The mirror of a shared ledger answers a row only while it was read within MIRROR_TTL by both
this machine's wall clock and its machine clock (time since boot, which nobody sets); a read
stamped "in the future" by a clock that ran ahead is no answer and no news: the next answer
read from the server replaces it. The cache (sync and async) and the console script's lean
``ref`` apply the one rule."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import types
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from assetcache import AssetCache, AsyncAssetCache, Emulator, _hit, _rules

from .conftest import EMAIL, Clock, png

pytestmark = pytest.mark.slow

AHEAD = timedelta(hours=1)


class MachineClock:
    """This machine's clock since boot, moved by hand: real time passing, never set back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.passed = 0
        real = getattr(_rules, "machine_ns", time.monotonic_ns)
        monkeypatch.setattr(_rules, "machine_ns", lambda: real() + self.passed, raising=False)

    def advance(self, delta: timedelta) -> None:
        self.passed += int(delta.total_seconds() * 1_000_000_000)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> MachineClock:
    return MachineClock(monkeypatch)


@contextlib.contextmanager
def _another_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Caches opened inside use another machine's cache dir: its own mirror and spool."""
    with monkeypatch.context() as elsewhere:
        elsewhere.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
        yield


def _forget_elsewhere(
    url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *sources: object
) -> None:
    with _another_machine(monkeypatch, tmp_path), AssetCache(db=url, clock=clock) as other:
        for source in sources:
            assert len(other.forget(source, email=EMAIL)) == 1  # type: ignore[arg-type]


def test_a_read_stamped_in_the_future_gives_way_to_the_servers_answer(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    with Emulator() as emu, AssetCache(
        db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock
    ) as here:
        ref = here.resolve(png("a"), email=EMAIL).asset_ref
        clock.advance(AHEAD)  # the clock runs an hour ahead for a moment...
        hit = here.lookup(png("a"), email=EMAIL)  # ...while this read is mirrored "in an hour"
        assert hit is not None and hit.asset_ref == ref
        clock.advance(-AHEAD)  # corrected
        _forget_elsewhere(postgres_url, clock, monkeypatch, tmp_path, png("a"))
        assert here.lookup(png("a"), email=EMAIL) is None  # the server is asked: forgotten
        # The wall clock reaches the stamp. The machine clock is held still here: only the
        # server's answer having replaced the mirror's row keeps the forgotten ref out.
        clock.advance(AHEAD)
        assert here.lookup(png("a"), email=EMAIL) is None
        assert not here.resolve(png("a"), email=EMAIL).reused
        assert len(emu.uploads) == 2


def test_a_read_stamped_in_the_future_is_no_answer_when_the_wall_clock_reaches_it(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: MachineClock
) -> None:
    """As above, but nothing asks the server while the stamp is ahead of the clock: the row
    itself must not answer once the wall clock reaches its stamp, an hour after the read."""
    clock = Clock()
    with Emulator() as emu, AssetCache(
        db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock
    ) as here:
        here.resolve(png("a"), email=EMAIL)
        clock.advance(AHEAD)
        assert here.lookup(png("a"), email=EMAIL) is not None  # mirrored "in an hour"
        clock.advance(-AHEAD)
        _forget_elsewhere(postgres_url, clock, monkeypatch, tmp_path, png("a"))
        clock.advance(AHEAD)  # an hour passes with nobody asking
        machine.advance(AHEAD)
        assert here.lookup(png("a"), email=EMAIL) is None


def test_a_clock_set_back_after_a_read_does_not_stretch_the_mirrors_bound(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: MachineClock
) -> None:
    """The other direction: the read is stamped right, then the clock is set back an hour and
    stays wrong. An hour later the wall clock shows the stamp again: still no answer."""
    clock = Clock()
    with Emulator() as emu, AssetCache(
        db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock
    ) as here:
        here.resolve(png("a"), email=EMAIL)
        assert here.lookup(png("a"), email=EMAIL) is not None  # mirrored now
        clock.advance(-AHEAD)
        _forget_elsewhere(postgres_url, Clock(), monkeypatch, tmp_path, png("a"))
        clock.advance(AHEAD)  # an hour of real time: the wall clock shows the read's stamp
        machine.advance(AHEAD)
        assert here.lookup(png("a"), email=EMAIL) is None


def test_an_async_read_stamped_in_the_future_gives_way_to_the_servers_answer(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()

    async def main() -> None:
        with Emulator() as emu:
            async with AsyncAssetCache(
                db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock
            ) as here:
                ref = (await here.resolve(png("a"), email=EMAIL)).asset_ref
                clock.advance(AHEAD)
                hit = await here.lookup(png("a"), email=EMAIL)
                assert hit is not None and hit.asset_ref == ref
                clock.advance(-AHEAD)
                _forget_elsewhere(postgres_url, clock, monkeypatch, tmp_path, png("a"))
                assert await here.lookup(png("a"), email=EMAIL) is None
                clock.advance(AHEAD)
                assert await here.lookup(png("a"), email=EMAIL) is None
                assert not (await here.resolve(png("a"), email=EMAIL)).reused

    asyncio.run(main())


def test_the_console_scripts_hit_follows_the_same_rule(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: MachineClock
) -> None:
    """The lean ``ref`` reads the mirror without the server: a.png was asked of the server
    while its stamp was ahead (its row replaced), b.png not (an hour of real time passed)."""
    from assetcache._entry import fast_ref
    from assetcache.content import stat_cache

    clock = Clock()
    monkeypatch.setattr(_hit, "utcnow", clock)
    real = time.time_ns  # hashed "3 s after" the write: the stat cache trusts the files
    monkeypatch.setattr(stat_cache, "time", types.SimpleNamespace(time_ns=lambda: real() + 3 * 10**9))
    monkeypatch.setenv("ASSETCACHE_DB", postgres_url)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png("a"))
    b.write_bytes(png("b"))

    def console_ref(path: Path) -> tuple[int | None, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = fast_ref(["ref", str(path), "-e", EMAIL])
        return code, out.getvalue().strip()

    with Emulator() as emu, AssetCache(token=emu.token, base_url=emu.base_url) as here:
        refs = [here.resolve(p, email=EMAIL).asset_ref for p in (a, b)]
        assert [console_ref(p) for p in (a, b)] == [(0, r) for r in refs]
        clock.advance(AHEAD)
        assert all(here.lookup(p, email=EMAIL) is not None for p in (a, b))  # "in an hour"
        clock.advance(-AHEAD)
        _forget_elsewhere(postgres_url, clock, monkeypatch, tmp_path, a, b)
        assert console_ref(a) == (None, "")  # a stamp ahead of the clock is no answer
        assert here.lookup(a, email=EMAIL) is None  # the server is asked for a.png only
        clock.advance(AHEAD)  # the wall clock reaches the stamps
        assert console_ref(a) == (None, "")
        machine.advance(AHEAD)
        assert console_ref(b) == (None, "")


def test_a_slower_read_never_replaces_a_later_ones_answer_whatever_its_wall_stamp(
    postgres_url: str, machine: MachineClock
) -> None:
    """Two reads of one key at once: the first began while the clock ran an hour ahead and
    read the row live; the second began later (after a forget) and read nothing, and finished
    first. The first's answer is older news, however late its wall stamp."""
    clock = Clock()
    with Emulator() as emu, AssetCache(
        db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock
    ) as here:
        asset = here.resolve(png("a"), email=EMAIL)
        engine = here._steps.ledger
        first_began = _rules.machine_ns()
        machine.advance(timedelta(seconds=1))
        second_began = _rules.machine_ns()
        engine.remember(asset.sha256, EMAIL, None, clock.now, second_began)  # type: ignore[attr-defined]
        engine.remember(asset.sha256, EMAIL, asset, clock.now + AHEAD, first_began)  # type: ignore[attr-defined]
        clock.advance(AHEAD)
        assert engine.from_mirror(asset.sha256, EMAIL, clock.now) is None  # type: ignore[attr-defined]


def test_a_read_made_before_a_reboot_is_neither_an_answer_nor_news(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The machine clock starts again at each boot: a mirror row stamped later than the clock
    shows now was read before a reboot. It answers nothing (even if the wall clock was set
    back to its stamp), and the next read replaces it."""
    from datetime import UTC, datetime

    from assetcache import Asset
    from assetcache.ledger.machine import MachineFile

    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def upload(ref: str) -> Asset:
        return Asset(
            asset_ref=ref,
            sha256="a" * 64,
            email=EMAIL,
            content_type="image/png",
            size=1,
            uploaded_at=now,
            expires_at=now + timedelta(days=29),
            upload_id=ref,
            media_url=f"https://m/{ref}",
        )

    ticks = [10 * 3600 * 10**9]  # ten hours since boot
    monkeypatch.setattr(_rules, "machine_ns", lambda: ticks[0])
    local = MachineFile(str(tmp_path / "shared-local.db"))
    try:
        local.mirror("a" * 64, EMAIL, upload("before"), seen_at=now, seen_ns=ticks[0])
        assert local.mirrored("a" * 64, EMAIL, now=now) is not None
        ticks[0] = 60 * 10**9  # rebooted a minute ago
        assert local.mirrored("a" * 64, EMAIL, now=now) is None
        local.mirror("a" * 64, EMAIL, upload("after"), seen_at=now, seen_ns=ticks[0])
        found = local.mirrored("a" * 64, EMAIL, now=now)
        assert found is not None and found.asset_ref == "after"
    finally:
        local.close()
