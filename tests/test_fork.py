"""A cache used before fork keeps its promise in the children: no shared socket, no shared
SQLite connection, so every ref a child gets or records is the one issued for its bytes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from assetcache import AssetCache, Emulator

from .conftest import EMAIL, png

pytestmark = pytest.mark.slow

#: Set in the parent before the pool forks; children inherit it, connections and all.
CACHE: AssetCache | None = None


def _resolve(index: int) -> tuple[str, str, bool]:
    assert CACHE is not None
    # Half the work hits what the parent uploaded, half uploads new content.
    data = png(f"parent-{index % 20}") if index % 2 else png(f"child-{index}")
    asset = CACHE.resolve(data, email=EMAIL)
    return asset.sha256, asset.asset_ref, asset.reused


def test_forked_children_never_get_or_record_a_ref_for_other_bytes(tmp_path: Path) -> None:
    global CACHE
    db = tmp_path / "ledger.db"
    with Emulator(accounts=[EMAIL]) as emu:
        CACHE = AssetCache(db=db, token=emu.token, base_url=emu.base_url)
        try:
            for i in range(20):  # the parent's keep-alive socket and pooled connections
                CACHE.resolve(png(f"parent-{i}"), email=EMAIL)
            with multiprocessing.get_context("fork").Pool(4) as pool:
                results = pool.map(_resolve, range(400), chunksize=5)
            CACHE.resolve(png("parent-after"), email=EMAIL)  # the parent still works too
        finally:
            CACHE.close()
            CACHE = None
        issued = {u.asset_ref: u.sha256 for u in emu.uploads}

    for sha256, ref, _reused in results:
        assert issued[ref] == sha256
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT sha256, asset_ref FROM uploads").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert all(issued[ref] == sha256 for sha256, ref in rows)
    # Every parent upload was reused by the children, never uploaded again.
    assert all(reused for sha256, ref, reused in results[1::2])
    assert len(issued) == 20 + 200 + 1
