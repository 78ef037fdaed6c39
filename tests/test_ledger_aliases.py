"""One ledger reached by several names (a symlinked file, a symlinked folder, a URL) is one
ledger: one real path, one WAL, one lock folder, one single flight, so one upload per content.
A hard-linked ledger has several real paths, so it is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from assetcache import AssetCache, LedgerError
from assetcache.ledger.sqlite import Ledger
from assetcache.ledger.sqlite_file import LedgerFile, ledger_path

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
    assert {cache._steps.locks.directory for cache in caches} == {names[0] + ".locks"}
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


#: Another process that opens the ledger, reads it and closes: SQLite's last connection to a
#: file (no other process holding a SHARED lock on it) checkpoints and deletes the WAL.
READ_AND_CLOSE = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
    "c.execute('SELECT count(*) FROM uploads').fetchone(); c.close()"
)


def test_opening_a_ledger_again_keeps_sqlites_locks_on_it(names: list[str]) -> None:
    # SQLite's locks are POSIX locks: closing any descriptor of the file in this process drops
    # them all, and another process then checkpoints and deletes the WAL under our open
    # connection (lost rows; a re-check that misses a recorded upload).
    ledger = Ledger(names[0])
    try:
        assert ledger.newest("ab" * 32, "me@example.com") is None  # a pooled connection
        for name in names:  # every name, while this process has the file open
            LedgerFile(name).close()
            Ledger(name).close()
        subprocess.run([sys.executable, "-c", READ_AND_CLOSE, names[0]], check=True, timeout=60)
        assert os.path.exists(names[0] + "-wal"), "another process deleted the WAL under us"
    finally:
        ledger.close()


def test_a_hard_linked_ledger_is_refused(names: list[str], tmp_path: Path, luma: FakeLuma) -> None:
    # SQLite keeps the WAL beside the name it opens: through two hard links, two processes
    # each saw their own WAL (16 uploads of 8 images, and 8 of the rows lost), whatever locks.
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    hard_link = tmp_path / "elsewhere" / "hard-link.db"
    os.link(names[0], hard_link)
    before = Path(names[0]).read_bytes()
    for name in [*names, str(hard_link)]:
        with pytest.raises(LedgerError, match="has 2 names") as info:
            LedgerFile(name)
        assert "remove the other links" in str(info.value)
        with (
            AssetCache(token=TOKEN, db=name, transport=luma.transport, retry=FAST_RETRY) as cache,
            pytest.raises(LedgerError, match="hard links"),
        ):
            cache.resolve(png("same"), email=EMAIL)
    assert luma.uploads == 0
    assert Path(names[0]).read_bytes() == before
    assert not os.path.exists(f"{hard_link}-wal")
    hard_link.unlink()  # one name again
    Ledger(names[0]).close()
