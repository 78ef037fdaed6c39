"""A full disk (or any failed write of a hint) never turns a cache hit into a failure."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from assetcache import AssetCache

from .conftest import EMAIL, FakeLuma, fill, png, write


def test_lookup_of_cached_content_works_on_a_full_disk(
    make_cache: Callable[..., AssetCache], small_fs: Path, tmp_path: Path, luma: FakeLuma
) -> None:
    cache = make_cache(db=small_fs / "ledger.db")
    first = write(tmp_path / "a.png", png("a"))
    uploaded = cache.resolve(first, email=EMAIL)
    fill(small_fs)
    # Same bytes under a new name: hashing it wants a stat-cache row, and the hit wants to
    # record the new source path. Both writes fail; the answer must not.
    copy = tmp_path / "copy.png"
    shutil.copyfile(first, copy)
    hit = cache.lookup(copy, email=EMAIL)
    assert hit is not None and hit.asset_ref == uploaded.asset_ref
    assert cache.resolve(copy, email=EMAIL).asset_ref == uploaded.asset_ref
    assert cache.require(first, email=EMAIL).asset_ref == uploaded.asset_ref
    assert luma.uploads == 1
