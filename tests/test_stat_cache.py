"""The stat cache: unchanged files are not re-read; any rewrite is noticed."""

from __future__ import annotations

import os
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from assetcache import AssetCache
from assetcache.content import sniff, stat_cache

from .conftest import EMAIL, FakeLuma, png, write

pytestmark = pytest.mark.both_engines


@pytest.fixture
def hashed_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are hashed "3 s after" their last change: past the racy window, so trusted.

    (Tests cannot age a file's ctime; they can age the moment the stat cache records.)
    """
    real = time.time_ns
    shifted = types.SimpleNamespace(time_ns=lambda: real() + 3_000_000_000)
    monkeypatch.setattr(stat_cache, "time", shifted)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = sniff.load_file

    def spy(path: object) -> object:
        seen.append(os.fsdecode(path))  # type: ignore[arg-type]
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(sniff, "load_file", spy)
    return seen


@pytest.mark.usefixtures("hashed_later")
def test_unchanged_file_is_not_read_again(
    cache: AssetCache, tmp_path: Path, reads: list[str]
) -> None:
    path = write(tmp_path / "a.png", png("a"))
    cache.resolve(path, email=EMAIL)
    assert len(reads) == 1
    for _ in range(3):
        assert cache.resolve(path, email=EMAIL).reused
        assert cache.lookup(path, email=EMAIL) is not None
    assert len(reads) == 1


def test_same_size_rewrite_with_restored_mtime_is_noticed(
    cache: AssetCache, tmp_path: Path, luma: FakeLuma, reads: list[str]
) -> None:
    path = write(tmp_path / "a.png", png("a"))
    first = cache.resolve(path, email=EMAIL)
    st = path.stat()
    path.write_bytes(png("b"))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: only ctime moves
    second = cache.resolve(path, email=EMAIL)
    assert second.sha256 != first.sha256
    assert luma.uploads == 2


def test_replaced_file_new_inode_is_noticed(
    cache: AssetCache, tmp_path: Path, luma: FakeLuma
) -> None:
    path = write(tmp_path / "a.png", png("a"))
    first = cache.resolve(path, email=EMAIL)
    tmp = write(tmp_path / "b.tmp", png("b"))
    os.replace(tmp, path)
    assert cache.resolve(path, email=EMAIL).sha256 != first.sha256


def test_racily_clean_file_is_hashed_again(
    cache: AssetCache, tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fresh.png"
    path.write_bytes(png("fresh"))  # mtime is "now": too close to the hashing moment
    old = path.stat().st_mtime_ns - 10_000_000_000
    monkeypatch.setattr(
        stat_cache, "time", types.SimpleNamespace(time_ns=lambda: old + 10_500_000_000)
    )  # hashed 0.5 s after the write: within the window
    cache.resolve(path, email=EMAIL)
    cache.resolve(path, email=EMAIL)
    assert len(reads) == 2  # not trusted yet...
    monkeypatch.setattr(
        stat_cache, "time", types.SimpleNamespace(time_ns=lambda: old + 13_000_000_000)
    )  # hashed 3 s after the write: past the window
    cache.resolve(path, email=EMAIL)
    cache.resolve(path, email=EMAIL)
    assert len(reads) == 3  # ...trusted once its stamps are safely older than the record


def test_expired_ref_with_stat_hit_reads_the_file_to_upload(
    cache: AssetCache, tmp_path: Path, luma: FakeLuma, clock: object
) -> None:
    from datetime import timedelta

    path = write(tmp_path / "a.png", png("a"))
    cache.resolve(path, email=EMAIL)
    clock.advance(timedelta(days=31))  # type: ignore[attr-defined]
    asset = cache.resolve(path, email=EMAIL)
    assert not asset.reused and luma.uploads == 2
    assert luma.requests[-1].content == png("a")


def test_rewrite_keeping_mtime_within_a_coarse_ctime_tick_is_noticed(
    make_cache: Callable[..., AssetCache], coarse_fs: Path, luma: FakeLuma
) -> None:
    """``cp -p`` over a file just hashed, on a filesystem with 1-second timestamps: size, mtime
    and even ctime (same second) are unchanged, so only the racy window on ctime catches it."""
    cache = make_cache()
    path = coarse_fs / "frame.png"
    for _attempt in range(20):  # until the hash and the rewrite fall in one ctime second
        write(path, png("a"))
        before = os.stat(path)
        first = cache.resolve(path, email=EMAIL)
        path.write_bytes(png("b"))  # same size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # what cp -p does
        after = os.stat(path)
        if after.st_ctime_ns == before.st_ctime_ns:
            break
    else:
        pytest.fail("could not rewrite within one ctime tick")
    assert after.st_ctime_ns % 1_000_000_000 == 0  # really a 1-second filesystem
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = cache.resolve(path, email=EMAIL)
    assert second.sha256 != first.sha256
    assert second.asset_ref != first.asset_ref


def test_a_file_is_trusted_once_its_ctime_is_old_enough(
    make_cache: Callable[..., AssetCache],
    tmp_path: Path,
    reads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = make_cache()
    path = write(tmp_path / "a.png", png("a"))  # mtime aged; ctime is now
    cache.resolve(path, email=EMAIL)
    cache.resolve(path, email=EMAIL)
    assert len(reads) == 2  # ctime too recent: read again
    real = time.time_ns
    monkeypatch.setattr(stat_cache, "time", types.SimpleNamespace(time_ns=lambda: real() + 3 * 10**9))
    cache.resolve(path, email=EMAIL)  # hashed "3 s later": now recorded as trustworthy
    cache.resolve(path, email=EMAIL)
    cache.lookup(path, email=EMAIL)
    assert len(reads) == 3
