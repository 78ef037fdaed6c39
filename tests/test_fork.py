"""A cache used before fork keeps its promise in the children: no shared socket, no shared
SQLite connection, so every ref a child gets or records is the one issued for its bytes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
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


def test_rows_a_child_records_survive_the_parent_closing_its_cache(tmp_path: Path) -> None:
    """No SQLite connection is open across fork, so the child's locks are real ones: the
    parent's close cannot checkpoint and delete the WAL under the child's writes."""
    db = tmp_path / "ledger.db"
    with Emulator(accounts=[EMAIL]) as emu:
        cache = AssetCache(db=db, token=emu.token, base_url=emu.base_url)
        cache.resolve(png("warm"), email=EMAIL)  # the parent's pooled connection
        to_parent, from_child = os.pipe()
        to_child, from_parent = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                cache.resolve(png("child-0"), email=EMAIL)
                os.write(from_child, b"1")
                os.read(to_child, 1)  # the parent closes meanwhile
                for i in range(1, 20):
                    cache.resolve(png(f"child-{i}"), email=EMAIL)
                code = 0
            finally:
                os._exit(code)
        os.read(to_parent, 1)
        cache.close()
        os.write(from_parent, b"g")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        uploads = len(emu.uploads)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM uploads").fetchone() == (uploads,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert uploads == 21


def test_a_child_that_never_uses_the_cache_does_not_hold_its_parents_lock(
    tmp_path: Path,
) -> None:
    with Emulator(accounts=[EMAIL], latency=0.6) as emu:
        cache = AssetCache(db=tmp_path / "l.db", token=emu.token, base_url=emu.base_url)
        cache.resolve(png("warm"), email=EMAIL)
        uploading = threading.Thread(target=cache.resolve, args=(png("k"),), kwargs={"email": EMAIL})
        uploading.start()
        time.sleep(0.3)  # the thread holds the key's flock, uploading
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a worker busy with other things
            time.sleep(20)
            os._exit(0)
        try:
            uploading.join()
            began = time.monotonic()
            cache.resolve(png("k"), email=EMAIL, force=True)  # the same key's lock
            waited = time.monotonic() - began
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            cache.close()
    assert waited < 15  # not until the child exits (20 s); normally about 0.6 s
