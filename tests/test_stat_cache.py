"""The stat cache: unchanged files are not re-read; any rewrite is noticed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assetcache import AssetCache, _content

from .conftest import EMAIL, FakeLuma, png, write


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = _content.load_file

    def spy(path: object) -> object:
        seen.append(os.fsdecode(path))  # type: ignore[arg-type]
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr("assetcache._cache.load_file", spy)
    return seen


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
    cache: AssetCache, tmp_path: Path, reads: list[str]
) -> None:
    path = tmp_path / "fresh.png"
    path.write_bytes(png("fresh"))  # mtime is "now": too close to the hashing moment
    cache.resolve(path, email=EMAIL)
    cache.resolve(path, email=EMAIL)
    assert len(reads) == 2  # not trusted yet...
    old = path.stat().st_mtime_ns - 10_000_000_000
    os.utime(path, ns=(old, old))
    cache.resolve(path, email=EMAIL)
    cache.resolve(path, email=EMAIL)
    assert len(reads) == 3  # ...trusted once its mtime is safely older than the record


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
