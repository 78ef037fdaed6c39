"""prune and export walk the ledger in batches (keyset pagination by id): with batches smaller
than the ledger, every row still comes out once, in id order, and prune deletes each one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from assetcache import AssetCache
from assetcache.ledger import base

from .conftest import EMAIL, Clock, png

pytestmark = pytest.mark.both_engines


def test_rows_span_several_batches(
    make_cache: Callable[..., AssetCache], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "BATCH_ROWS", 2)
    cache = make_cache()
    refs = [cache.resolve(png(str(i)), email=EMAIL).asset_ref for i in range(5)]
    exported = [row["asset_ref"] for row in cache.export()]
    assert exported == refs
    clock.advance(timedelta(days=31))
    assert [a.asset_ref for a in cache.prune(dry_run=True)] == refs
    assert [a.asset_ref for a in cache.prune()] == refs  # deleting between batches skips none
    assert list(cache.export()) == []
