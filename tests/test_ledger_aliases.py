"""One ledger reached by several names (a symlinked file, a symlinked folder, a URL) is one
ledger: one real path, one lock folder, one single flight, so one upload per content."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from assetcache import AssetCache
from assetcache._sqlite_ledger import Ledger, ledger_path

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, png


@pytest.fixture
def names(tmp_path: Path) -> list[str]:
    """The real ledger path first, then other names of the same file."""
    real_dir = tmp_path / "real"
    ledger = real_dir / "ledger.db"
    Ledger(str(ledger)).close()
    (tmp_path / "file-link.db").symlink_to(ledger)
    (tmp_path / "dir-link").symlink_to(real_dir)
    return [
        str(ledger),
        str(tmp_path / "file-link.db"),
        str(tmp_path / "dir-link" / "ledger.db"),
        f"sqlite:///{tmp_path}/dir-link/../dir-link/ledger.db",
    ]


def test_every_name_resolves_to_the_real_path(names: list[str]) -> None:
    assert {ledger_path(name) for name in names} == {names[0]}


def test_a_new_ledger_in_a_symlinked_folder_resolves_too(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert ledger_path(str(tmp_path / "link" / "new.db")) == str(tmp_path / "real" / "new.db")


def test_every_name_gives_one_lock_folder(names: list[str]) -> None:
    caches = [AssetCache(db=name) for name in names]
    assert {cache._core.locks.directory for cache in caches} == {names[0] + ".locks"}
    assert {cache.db_path for cache in caches} == {names[0]}
    for cache in caches:
        cache.close()


def test_two_names_one_upload(names: list[str], luma: FakeLuma, clock: Clock) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)  # every resolver has looked in the ledger before the first records
        return luma(request)

    caches = [
        AssetCache(
            token=TOKEN,
            db=name,
            base_url="https://api.test",
            transport=httpx.MockTransport(slow),
            retry=FAST_RETRY,
            clock=clock,
        )
        for name in names
    ]
    for cache in caches:
        assert cache.lookup(png("same"), email=EMAIL) is None  # opened before the race
    barrier = threading.Barrier(len(caches))
    refs: list[str] = []

    def resolve(cache: AssetCache) -> None:
        barrier.wait()
        refs.append(cache.resolve(png("same"), email=EMAIL).asset_ref)

    threads = [threading.Thread(target=resolve, args=(cache,)) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for cache in caches:
        cache.close()
    assert len(refs) == len(caches) and len(set(refs)) == 1
    assert luma.uploads == 1
