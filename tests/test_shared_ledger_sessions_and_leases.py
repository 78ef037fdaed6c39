"""A shared ledger sized for a farm: one server session per process whatever its --jobs, none
while it is idle, and single flight by lease rows that a stopped holder loses (real server)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, AsyncAssetCache, Emulator
from assetcache.ledger import leases as _leases
from assetcache.ledger import postgres as _postgres

from .conftest import EMAIL, png, write

pytestmark = [pytest.mark.slow]

ROOT = str(Path(__file__).resolve().parents[1])


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


class SessionCount:
    """Polls pg_stat_activity (from the superuser's own database) for assetcache's sessions on
    one database: the peak, and the count now."""

    def __init__(self, server: Any, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(server.url, autocommit=True)
        self._database = _database(url)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def now(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'assetcache'",
            (self._database,),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> SessionCount:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def close(self) -> None:
        self._conn.close()

    def wait_for(self, count: int, within_s: float = 30.0) -> int:
        end = time.monotonic() + within_s
        while (now := self.now()) != count and time.monotonic() < end:
            time.sleep(0.1)
        return now


def test_a_process_holds_one_session_whatever_its_jobs_and_none_when_idle(
    postgres_server: Any, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_postgres, "IDLE_CLOSE_S", 1.0)
    files = [write(tmp_path / f"{i}.png", png(str(i))) for i in range(20)]
    counter = SessionCount(postgres_server, postgres_url)
    try:
        with Emulator(latency=0.05) as emu:
            cache = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url)
            # Migrated first: Alembic's session follows the closed one, whose server process
            # may linger in pg_stat_activity for a moment after the client let go.
            cache.assets()
            assert counter.wait_for(1) == 1
            with counter:
                results = cache.resolve_many(files, email=EMAIL, jobs=8)
                again = cache.resolve_many(files, email=EMAIL, jobs=8)
            assert all(not isinstance(r, Exception) for r in results + again)
            assert len(emu.uploads) == 20
            assert counter.peak == 1
            assert counter.wait_for(0) == 0  # idle: its slot went back to the server
            assert cache.lookup(files[0], email=EMAIL) is not None
            cache.close()
    finally:
        counter.close()


def test_async_tasks_of_one_loop_share_one_session(
    postgres_server: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_postgres, "IDLE_CLOSE_S", 1.0)
    counter = SessionCount(postgres_server, postgres_url)

    async def main(emu: Emulator) -> list[str]:
        async with AsyncAssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url) as c:
            await c.assets()  # migrated (on the sync side, whose session then idles out)
            assert counter.wait_for(0) == 0
            with counter:
                found = await asyncio.gather(
                    *(c.resolve(png(str(i % 6)), email=EMAIL) for i in range(24))
                )
            return [a.asset_ref for a in found]

    try:
        with Emulator(latency=0.05) as emu:
            refs = asyncio.run(main(emu))
            assert len(emu.uploads) == 6 and len(set(refs)) == 6
        assert counter.peak == 1
    finally:
        counter.close()


# A holder whose lease lasts 2 s (renewed every 0.5 s) instead of 20 s, so that the test waits
# seconds, not the production bound.
HOLDER = """
import sys
from assetcache.ledger import leases as _leases
_leases.LEASE_S, _leases.RENEW_S = 2.0, 0.5
from assetcache import AssetCache
url, token, base_url, path, email = sys.argv[1:]
with AssetCache(db=url, token=token, base_url=base_url) as cache:
    print(cache.resolve(path, email=email).asset_ref, flush=True)
"""


def _leases_held(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM upload_leases").fetchone()
        assert row is not None
        return int(row[0])


def _machine_env(home: Path) -> dict[str, str]:
    return dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=ROOT)


def _start_holder(url: str, emu: Emulator, path: Path, home: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, emu.token, emu.base_url, str(path), EMAIL],
        env=_machine_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.monotonic() + 60
    while _leases_held(url) == 0:  # the holder has claimed the key; its upload is under way
        assert holder.poll() is None and time.monotonic() < end, holder.communicate()
        time.sleep(0.01)
    return holder


@pytest.mark.parametrize("stop", [signal.SIGSTOP, signal.SIGKILL])
def test_a_stopped_or_killed_holder_is_taken_over_and_its_late_upload_is_nobodys_answer(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop: signal.Signals,
) -> None:
    monkeypatch.setattr(_leases, "LEASE_S", 2.0)
    monkeypatch.setattr(_leases, "RENEW_S", 0.5)
    image = write(tmp_path / "key.png", png("key"))
    with AssetCache(db=postgres_url) as first:
        first.assets()  # migrated, so that the test can watch upload_leases from the start
    with Emulator(latency=1.5) as emu:
        holder = _start_holder(postgres_url, emu, image, tmp_path / "a")
        try:
            os.kill(holder.pid, stop)
            monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b" / ".cache"))
            taker = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url)
            began = time.monotonic()
            taken = taker.resolve(image, email=EMAIL)
            waited = time.monotonic() - began
            assert not taken.reused
        finally:
            if stop == signal.SIGSTOP:
                os.kill(holder.pid, signal.SIGCONT)
            out, err = holder.communicate(timeout=60)
        assert waited < 30  # the lease (2 s here), a poll and one upload: far inside the bound
        rows = list(taker.export(email=None, live=False))
        if stop == signal.SIGKILL:
            assert holder.returncode == -signal.SIGKILL
            assert [r["asset_ref"] for r in rows] == [taken.asset_ref]
        else:
            # The holder came back, finished its upload, and recorded it as its own row,
            # revoked from the start; its caller was given the taker's ref, like everyone.
            assert holder.returncode == 0, err
            assert out.strip() == taken.asset_ref
            assert len(emu.uploads) == 2
            late = [r for r in rows if r["asset_ref"] != taken.asset_ref]
            assert len(late) == 1 and late[0]["revoked_at"] is not None
        assert _leases_held(postgres_url) == 0
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c" / ".cache"))
        with AssetCache(db=postgres_url) as third:
            found = third.lookup(image, email=EMAIL)
        assert found is not None and found.asset_ref == taken.asset_ref
        taker.close()


def _role_with_one_slot(server: Any, url: str) -> str:
    """The test database's URL for a new role that may hold one session at a time (a server
    out of slots answers the same SQLSTATE 53300 as a role out of them)."""
    import uuid

    import psycopg

    role, password = f"r_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT 1")
        conn.execute(f'ALTER DATABASE "{_database(url)}" OWNER TO {role}')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SCHEMA public OWNER TO {role}")
    host = url.split("@", 1)[1]
    return f"postgresql://{role}:{password}@{host}"


def test_a_server_out_of_slots_is_asked_again_until_one_frees(
    postgres_server: Any, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    url = _role_with_one_slot(postgres_server, postgres_url)
    with AssetCache(db=url) as cache:
        cache.assets()  # migrated; its session closed with the cache
    blocker = psycopg.connect(url, autocommit=True)  # the role's one slot, taken
    threading.Timer(1.5, blocker.close).start()
    with caplog.at_level("INFO", logger="assetcache"), AssetCache(db=url) as cache:
        assert cache.assets() == []
    assert "no free connection slots; asking again" in caplog.text


def test_a_server_that_stays_out_of_slots_is_named_for_it(
    postgres_server: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg
    from click.testing import CliRunner

    from assetcache.cli import cli

    monkeypatch.setattr(_postgres, "SLOT_WAIT_S", 2.0)
    url = _role_with_one_slot(postgres_server, postgres_url)
    with psycopg.connect(url, autocommit=True):
        result = CliRunner().invoke(cli, ["--db", url, "ls"])
    assert result.exit_code == 1
    assert "no free connection slots" in result.output
    assert "max_connections" in result.output and "pooler" in result.output
    assert url.split(":")[2].split("@")[0] not in result.output  # the password
