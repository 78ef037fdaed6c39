"""Guarantees under concurrency and faults, proven with real processes over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from assetcache import Asset, AssetCache, AsyncAssetCache, Emulator, LedgerError, RetryPolicy
from assetcache.ledger import locks as _locks
from assetcache.ledger.locks import KeyLocks
from assetcache.ledger.schema import HEAD
from assetcache.ledger.sqlite import Ledger

from .conftest import EMAIL, FAST_RETRY, TOKEN, FakeLuma, png, write

WORKER = str(Path(__file__).with_name("worker.py"))
ROOT = str(Path(__file__).resolve().parent.parent)
FAST = RetryPolicy(attempts=8, max_elapsed=60, initial=0, max_backoff=0, jitter=0)

pytestmark = pytest.mark.slow


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # Latency widens every race window: each upload takes at least 50 ms.
    with Emulator(latency=0.05, retry_after=0) as server:
        yield server


def spawn(
    emu: Emulator,
    db: Path | str,
    files: list[Path],
    seed: int,
    start: float = 0.0,
) -> subprocess.Popen[str]:
    env = dict(os.environ, USEAPI_TOKEN=emu.token, START=str(start), PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, WORKER, str(db), emu.base_url, EMAIL, str(seed), *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def results(proc: subprocess.Popen[str], timeout: float = 60) -> list[dict[str, object]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err + out
    return [json.loads(line) for line in out.splitlines()]


def integrity(db: Path | str) -> str:
    if "://" in str(db):  # PostgreSQL: the rows must still be readable
        import psycopg

        with psycopg.connect(str(db)) as conn:
            conn.execute("SELECT count(*) FROM uploads").fetchone()
        return "ok"
    if not Path(db).exists():
        return "ok"  # a process killed before it made the ledger: nothing to corrupt
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.both_engines
def test_eight_processes_twenty_files_exactly_twenty_uploads(
    emu: Emulator, ledger_location: str, tmp_path: Path
) -> None:
    files = [write(tmp_path / f"f{i:02}.png", png(f"file {i}")) for i in range(20)]
    start = time.time() + 1.5  # all workers have imported by then
    procs = [spawn(emu, ledger_location, files, seed, start) for seed in range(8)]
    outputs = [results(p) for p in procs]
    assert len(emu.uploads) == 20
    refs = {(r["path"], r["ref"]) for out in outputs for r in out}
    assert len(refs) == 20  # every process got the same ref for each file
    assert integrity(ledger_location) == "ok"


def test_sixteen_processes_no_database_is_locked(emu: Emulator, db: Path, tmp_path: Path) -> None:
    shared = [write(tmp_path / f"s{i}.png", png(f"shared {i}")) for i in range(4)]
    procs = []
    start = time.time() + 2.5
    for n in range(16):
        own = [write(tmp_path / f"p{n}-{i}.png", png(f"own {n} {i}")) for i in range(2)]
        procs.append(spawn(emu, db, shared + own, n, start))
    outputs = [results(p, timeout=90) for p in procs]
    assert all("error" not in r for out in outputs for r in out)
    assert len(emu.uploads) == 4 + 16 * 2
    assert integrity(db) == "ok"


@pytest.mark.both_engines
def test_sixteen_threads_one_file_one_upload(
    emu: Emulator, ledger_location: str, tmp_path: Path
) -> None:
    path = write(tmp_path / "one.png", png("one"))
    refs: list[str] = []
    barrier = threading.Barrier(16)
    with AssetCache(
        token=emu.token, db=ledger_location, base_url=emu.base_url, retry=FAST
    ) as cache:

        def work() -> None:
            barrier.wait()
            refs.append(cache.resolve(path, email=EMAIL).asset_ref)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(emu.uploads) == 1
    assert len(refs) == 16 and len(set(refs)) == 1


@pytest.mark.both_engines
def test_asyncio_tasks_and_a_second_cache_share_one_upload(
    emu: Emulator, ledger_location: str, tmp_path: Path
) -> None:
    path = write(tmp_path / "one.png", png("async"))

    async def go() -> set[str]:
        async with (
            AsyncAssetCache(
                token=emu.token, db=ledger_location, base_url=emu.base_url, retry=FAST
            ) as a,
            AsyncAssetCache(
                token=emu.token, db=ledger_location, base_url=emu.base_url, retry=FAST
            ) as b,
        ):
            got = await asyncio.gather(*(c.resolve(path, email=EMAIL) for c in [a, b] * 8))
        return {x.asset_ref for x in got}

    assert len(asyncio.run(go())) == 1
    assert len(emu.uploads) == 1


@pytest.mark.both_engines
def test_sigkill_during_upload_blocks_nobody(ledger_location: str, tmp_path: Path) -> None:
    path = write(tmp_path / "slow.png", png("slow"))
    with Emulator(latency=1.0) as slow:
        victim = spawn(slow, ledger_location, [path], 0)
        deadline = time.monotonic() + 20
        while slow.request_count == 0:  # the victim holds the key's lock, mid-upload
            assert time.monotonic() < deadline, "the victim never sent its upload"
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        began = time.monotonic()
        survivor = spawn(slow, ledger_location, [path], 1)
        (result,) = results(survivor)
        assert "ref" in result
        assert time.monotonic() - began < 8  # no stale lock to wait out
        assert len(slow.uploads) <= 2  # at most one extra upload for the killed process
    assert integrity(ledger_location) == "ok"


def test_sigkill_at_random_moments_leaves_the_ledger_intact(
    emu: Emulator, db: Path, tmp_path: Path
) -> None:
    files = [write(tmp_path / f"k{i}.png", png(f"kill {i}")) for i in range(6)]
    rng = random.Random(1234)
    kills = 0
    for seed in range(6):
        proc = spawn(emu, db, files, seed)
        time.sleep(rng.uniform(0.2, 0.7))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        assert integrity(db) == "ok"
    final = results(spawn(emu, db, files, 99))
    assert len(final) == 6 and all("ref" in r for r in final)
    assert len(emu.uploads) <= 6 + kills
    assert integrity(db) == "ok"


def test_eight_processes_migrate_a_new_ledger_at_once(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "ledger.db"
    script = (
        "import os,sys,time; sys.path.insert(0, os.environ['ROOT']);"
        "time.sleep(max(0, float(os.environ['START']) - time.time()));"
        "from assetcache import AssetCache; AssetCache(db=os.environ['DB']).assets()"
    )
    start = time.time() + 1.5
    env = dict(os.environ, ROOT=ROOT, START=str(start), DB=str(db))
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    assert integrity(db) == "ok"


#: ``assetcache ARGS...`` through the console script's entry (its lean cache-hit path first),
#: started at the time.time() in $START so that every process races; $LOCK_WAIT_S, when set,
#: shortens how long it waits for another resolver's upload.
CLI_AT_START = (
    "import os, sys, time; sys.path.insert(0, os.environ['ROOT']); "
    "time.sleep(max(0, float(os.environ.get('START', '0')) - time.time())); "
    "from assetcache.ledger import locks as _locks; "
    "[setattr(_locks, 'LOCK_WAIT_S', float(v)) for v in [os.environ.get('LOCK_WAIT_S')] if v]; "
    "from assetcache._entry import main; sys.argv[0] = 'assetcache'; main()"
)


def cli(env: dict[str, str], *args: str | Path) -> subprocess.Popen[str]:
    """``assetcache ARGS... --email EMAIL`` as CLI_AT_START runs it, with ``env``."""
    return subprocess.Popen(
        [sys.executable, "-c", CLI_AT_START, *map(str, args), "--email", EMAIL],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_new_ledger_opened_through_two_names_at_once_one_upload(tmp_path: Path) -> None:
    # The lean path opens and closes the ledger before the cache opens it again: that close
    # used to drop SQLite's locks on the file, letting another process delete the WAL under
    # this one (the re-check then missed the row just recorded: two uploads, or a row lost).
    uploads = []
    for run in range(5):
        folder = tmp_path / f"run{run}"
        (folder / "real").mkdir(parents=True, mode=0o700)
        real = folder / "real" / "ledger.db"
        (folder / "link.db").symlink_to(real)
        image = write(folder / "a.png", png("one image"))
        with Emulator(latency=0.2, retry_after=0) as slow:
            env = dict(
                os.environ,
                ROOT=ROOT,
                START=str(time.time() + 1.5),
                USEAPI_TOKEN=slow.token,
                ASSETCACHE_BASE_URL=slow.base_url,
            )
            procs = [
                cli(env, "--db", name, "ref", image) for name in (real, folder / "link.db") * 2
            ]
            refs = set()
            for proc in procs:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                refs.add(out)
            uploads.append(len(slow.uploads))
        assert len(refs) == 1
        with sqlite3.connect(real) as conn:
            assert conn.execute("SELECT count(*) FROM uploads").fetchone() == (1,)
        conn.close()
    assert uploads == [1] * 5


def old_stripe(data: bytes) -> int:
    """Which of the 4096 lock files resolving ``data`` on EMAIL took when keys shared stripes."""
    key = f"{hashlib.sha256(data).hexdigest()}:{EMAIL}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 4096


def on_the_same_old_stripe(data: bytes) -> bytes:
    """Another image whose key shared ``data``'s stripe (about 4096 tries)."""
    return next(
        other
        for other in (png(f"neighbour {i}") for i in itertools.count())
        if old_stripe(other) == old_stripe(data)
    )


@contextlib.contextmanager
def stopped_mid_upload(
    emu: Emulator, db: Path | str, path: Path
) -> Iterator[subprocess.Popen[str]]:
    """A worker resolving ``path``, stopped (SIGSTOP) while it holds the key, mid-upload;
    resumed (SIGCONT) on the way out."""
    holder = spawn(emu, db, [path], 0)
    try:
        deadline = time.monotonic() + 30
        while emu.request_count == 0:
            assert time.monotonic() < deadline, "the holder never sent its upload"
            assert holder.poll() is None, holder.communicate()
            time.sleep(0.01)
        holder.send_signal(signal.SIGSTOP)
        yield holder
    finally:
        holder.send_signal(signal.SIGCONT)


def test_a_stopped_uploader_fails_its_waiters_in_time_and_blocks_no_other_image(
    db: Path, tmp_path: Path
) -> None:
    held = write(tmp_path / "held.png", png("held"))
    neighbour = write(tmp_path / "neighbour.png", on_the_same_old_stripe(png("held")))
    with Emulator(latency=1.0, retry_after=0) as slow:
        env = dict(
            os.environ,
            ROOT=ROOT,
            USEAPI_TOKEN=slow.token,
            ASSETCACHE_BASE_URL=slow.base_url,
            LOCK_WAIT_S="1",
        )
        with stopped_mid_upload(slow, db, held) as holder:
            waiter = cli(env, "--db", db, "ref", held)
            out, err = waiter.communicate(timeout=60)  # it would wait for ever on a regression
            assert (waiter.returncode, out) == (1, ""), err
            assert f"held by pid {holder.pid} (" in err and "worker.py" in err
            assert "which is stopped" in err and f"kill -CONT {holder.pid}" in err
            # Another image uploads while the holder is still stopped: it never waited for it.
            other = cli(env, "--db", db, "ref", neighbour)
            out, err = other.communicate(timeout=60)
            assert other.returncode == 0, err
            assert out.strip()
        (result,) = results(holder)  # resumed: it finishes its upload
        again = cli(env, "--db", db, "ref", held)
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert out.strip() == result["ref"]
        assert sorted(u.sha256 for u in slow.uploads) == sorted(
            hashlib.sha256(p.read_bytes()).hexdigest() for p in (held, neighbour)
        )


def test_a_stopped_uploader_fails_async_waiters_in_time_too(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_locks, "LOCK_WAIT_S", 1.0, raising=False)  # (absent before)
    held = write(tmp_path / "held.png", png("held"))
    neighbour = on_the_same_old_stripe(png("held"))

    async def resolve_both(emu: Emulator) -> tuple[LedgerError, Asset]:
        async with AsyncAssetCache(
            token=emu.token, db=db, base_url=emu.base_url, retry=FAST
        ) as cache:
            with pytest.raises(LedgerError) as info:
                # bounded here too: a regression would poll for ever
                await asyncio.wait_for(cache.resolve(held, email=EMAIL), 60)
            other = await asyncio.wait_for(cache.resolve(neighbour, email=EMAIL), 60)
        return info.value, other

    with Emulator(latency=1.0, retry_after=0) as slow:
        with stopped_mid_upload(slow, db, held) as holder:
            error, other = asyncio.run(resolve_both(slow))
            assert f"held by pid {holder.pid} (" in str(error) and "which is stopped" in str(error)
            assert other.reused is False
        (result,) = results(holder)
        with AssetCache(db=db) as cache:
            assert cache.require(held, email=EMAIL).asset_ref == result["ref"]
        assert len(slow.uploads) == 2


def test_two_hard_links_of_one_ledger_are_refused_not_raced(emu: Emulator, tmp_path: Path) -> None:
    # Each name had its own WAL: 2 processes x the same 8 images made 16 uploads, 8 rows lost.
    (tmp_path / "one").mkdir(mode=0o700)
    (tmp_path / "two").mkdir(mode=0o700)
    first = tmp_path / "one" / "ledger.db"
    Ledger(str(first)).close()
    second = tmp_path / "two" / "same.db"
    os.link(first, second)
    files = [write(tmp_path / f"h{i}.png", png(f"hard {i}")) for i in range(8)]
    start = time.time() + 1.5
    procs = [spawn(emu, name, files, 0, start) for name in (first, second)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert len(lines) == 8 and all("has 2 names (hard links)" in r["error"] for r in lines)
    assert emu.uploads == []
    assert integrity(first) == "ok"


def test_migration_lock_is_not_a_key_stripe(tmp_path: Path) -> None:
    # A key whose stripe matched the old "migrate" key deadlocked a forced first upload.
    locks = KeyLocks(str(tmp_path / "new.db") + ".locks")
    done = threading.Event()

    def open_ledger() -> None:
        with locks.hold("migrate"):
            Ledger(str(tmp_path / "new.db")).close()
        done.set()

    threading.Thread(target=open_ledger, daemon=True).start()
    assert done.wait(20), "opening a new ledger while holding a key lock deadlocked"


def test_batches_do_not_leak_connections(make_cache: Callable[..., AssetCache]) -> None:
    cache = make_cache()
    cache.resolve_many([png(str(i)) for i in range(4)], email=EMAIL, jobs=4)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        cache.resolve_many([png(str(i)) for i in range(4)], email=EMAIL, jobs=4)
    assert len(os.listdir("/proc/self/fd")) <= before + 2


def test_a_tokenless_waiter_gets_the_ref_uploaded_meanwhile(db: Path) -> None:
    started = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        time.sleep(0.5)
        return FakeLuma()(request)

    uploader = AssetCache(token=TOKEN, db=db, transport=httpx.MockTransport(slow), retry=FAST_RETRY)
    waiter = AssetCache(token=None, db=db)
    results: list[Asset] = []
    thread = threading.Thread(
        target=lambda: results.append(uploader.resolve(png("w"), email=EMAIL))
    )
    thread.start()
    assert started.wait(10)
    got = waiter.resolve(png("w"), email=EMAIL)  # waits for the lock, then finds the row
    thread.join()
    assert got.reused and got.asset_ref == results[0].asset_ref
    uploader.close()
    waiter.close()


def test_lock_directory_removed_under_a_running_process(
    make_cache: Callable[..., AssetCache], db: Path
) -> None:
    cache = make_cache()
    cache.resolve(png("1"), email=EMAIL)
    shutil.rmtree(str(db) + ".locks")
    assert cache.resolve(png("2"), email=EMAIL).reused is False
