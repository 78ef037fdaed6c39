"""What only a shared PostgreSQL ledger does: one migration and one upload per image across
processes of several "machines", a dead lock holder freeing its key, faults with clear errors
and no password anywhere, and the stat cache kept on this machine.

(Behaviour both engines share is tested once, against both, by the modules marked
``both_engines``.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assetcache import Asset, AssetCache, AsyncAssetCache, Emulator, LedgerError
from assetcache.cli import cli

from .conftest import EMAIL, png

pytestmark = pytest.mark.slow
ROOT = str(Path(__file__).resolve().parent.parent)

MACHINE = """
import os, sys
from assetcache import AssetCache
url, token, base, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
png = lambda i: b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR" + str(i).encode()
with AssetCache(db=url, token=token, base_url=base) as cache:
    order = list(range(n)) if os.getpid() % 2 else list(reversed(range(n)))
    for i in order:
        print(cache.resolve(png(i), email="me@example.com").asset_ref, flush=True)
"""


def _machine_env(home: Path) -> dict[str, str]:
    """A separate HOME and cache dir: another machine's local stat cache and lock folder."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=ROOT)
    env.pop("ASSETCACHE_DB", None)
    return env


def test_three_machines_four_processes_each_upload_each_image_once(
    postgres_url: str, tmp_path: Path
) -> None:
    with Emulator(latency=0.05) as emu:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MACHINE, postgres_url, emu.token, emu.base_url, "20"],
                env=_machine_env(tmp_path / f"machine{m}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for m in range(3)
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=240) for p in procs]
        uploads = len(emu.uploads)
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert len(out.split()) == 20
    assert uploads == 20
    assert len({ref for out, _ in outputs for ref in out.split()}) == 20


HOLDER = """
import sys, time
from assetcache import AssetCache
url = sys.argv[1]
with AssetCache(db=url) as cache:
    with cache._steps.ledger.locks.hold("key"):
        print("held", flush=True)
        time.sleep(600)
"""


def test_a_killed_lock_holder_frees_the_key_for_another_machine(
    postgres_url: str, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, postgres_url],
        env=_machine_env(tmp_path / "a"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        other = AssetCache(db=postgres_url)
        locks = other._steps.ledger.locks
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        began = time.monotonic()
        with locks.hold("key"):
            waited = time.monotonic() - began
        other.close()
    finally:
        if holder.poll() is None:
            holder.kill()
    assert waited < 30  # the documented bound; a killed process frees it at once


def test_faults_are_ledger_errors_without_the_password(
    postgres_url: str, make_postgres_server: object
) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    wrong = postgres_url.replace(password, "not-the-password")
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    down = "postgresql://postgres:hunter2-PASS@127.0.0.1:9/x"
    for url, hint in ((wrong, "password"), (missing, "create the database"), (down, "running")):
        with pytest.raises(LedgerError) as info:
            AssetCache(db=url).assets()
        assert hint in str(info.value)
        for text in (str(info.value), repr(info.value), str(info.value.path)):
            assert password not in text and "hunter2" not in text and "not-the-password" not in text
        result = CliRunner().invoke(cli, ["--db", url, "-vv", "ls"])
        assert result.exit_code == 1
        assert "hunter2" not in result.output and "not-the-password" not in result.output
        assert "Traceback" not in result.output


def test_the_stat_cache_stays_on_this_machine(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    with Emulator() as emu, AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url) as cache:
        path = tmp_path / "a.png"
        path.write_bytes(png("a"))
        cache.resolve(path, email=EMAIL)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM file_stats").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM uploads").fetchone() == (1,)
    local = list((Path(os.environ["HOME"]) / ".cache" / "assetcache").glob("shared-*.db"))
    assert len(local) == 1


def test_cli_path_masks_the_password(postgres_url: str) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    result = CliRunner().invoke(cli, ["--db", postgres_url, "path"])
    assert result.exit_code == 0, result.output
    assert password not in result.output and ":***@" in result.output


def test_a_server_restarted_mid_batch_loses_no_upload(
    make_postgres_server: Any, tmp_path: Path
) -> None:
    server = make_postgres_server()
    url = server.create_database("blink")
    with Emulator(latency=0.1) as emu, AssetCache(
        db=url, token=emu.token, base_url=emu.base_url
    ) as cache:
        cache.assets()  # migrated, sessions pooled
        outcomes: list[object] = []
        batch = threading.Thread(
            target=lambda: outcomes.extend(
                cache.resolve_many([png(str(i)) for i in range(20)], email=EMAIL, jobs=4)
            )
        )
        batch.start()
        time.sleep(0.3)
        # From this thread: the server dies with the thread that started it (PDEATHSIG).
        server.restart(crash=True)
        batch.join()
        failures = [o for o in outcomes if not isinstance(o, Asset)]
        assert all(isinstance(f, LedgerError) for f in failures), failures
        uploads = len(emu.uploads)
        recorded = len(cache.assets())
    # Every upload the server accepted is in the ledger: recording retried the blink.
    assert recorded == uploads
    assert len(outcomes) - len(failures) <= recorded


def test_a_hit_is_answered_from_this_machines_mirror_without_psycopg(
    postgres_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png("a"))
    time.sleep(2.1)  # past the racy window (RACY_WINDOW_NS): the stat cache will trust it
    with Emulator() as emu:
        env = dict(_machine_env(Path(os.environ["HOME"])), USEAPI_TOKEN=emu.token)
        env.update(ASSETCACHE_BASE_URL=emu.base_url, ASSETCACHE_DB=postgres_url)
        miss = subprocess.run(
            [sys.executable, "-m", "assetcache", "ref", str(path), "-e", EMAIL],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    probe = (
        "import sys, io, contextlib\n"
        "from assetcache._entry import fast_ref\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = fast_ref(['ref', {str(path)!r}, '-e', {EMAIL!r}])\n"
        "lean = not any(m in sys.modules for m in ('assetcache._cache', 'psycopg', 'threading'))\n"
        "print(code, out.getvalue().strip(), lean)\n"
    )
    hit = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    # The console script's lean path reads the mirror itself: no AssetCache, no psycopg.
    assert hit.stdout.split() == ["0", miss.stdout.strip(), "True"]


def test_a_forget_elsewhere_reaches_the_mirror_within_its_bound(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetcache.ledger.postgres import MIRROR_TTL

    from .conftest import Clock

    clock = Clock()
    with Emulator() as emu:
        here = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock)
        ref = here.resolve(png("a"), email=EMAIL).asset_ref
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))  # another machine
        elsewhere = AssetCache(db=postgres_url, clock=clock)
        assert [a.asset_ref for a in elsewhere.forget(png("a"))] == [ref]
        assert elsewhere.lookup(png("a"), email=EMAIL) is None  # its own mirror knows at once
        clock.advance(MIRROR_TTL - timedelta(seconds=1))
        assert here.lookup(png("a"), email=EMAIL) is not None  # still within the bound
        clock.advance(timedelta(seconds=2))
        assert here.lookup(png("a"), email=EMAIL) is None  # read again from the server
        assert not here.resolve(png("a"), email=EMAIL).reused
        here.close()
        elsewhere.close()


def test_without_psycopg_a_postgresql_url_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from assetcache.ledger import postgres as _postgres

    monkeypatch.setattr(_postgres, "_driver", lambda: None)
    with pytest.raises(LedgerError, match=r"assetcache\[postgres\]") as info:
        AssetCache(db="postgresql://ann:hunter2@127.0.0.1:9/x").assets()
    assert "hunter2" not in str(info.value)

    async def resolve() -> None:  # the asyncio driver's path says the same
        async with AsyncAssetCache(db="postgresql://ann:hunter2@127.0.0.1:9/x") as cache:
            await cache.lookup(png("x"), email=EMAIL)

    with pytest.raises(LedgerError, match=r"assetcache\[postgres\]") as info:
        asyncio.run(resolve())
    assert "hunter2" not in str(info.value)


def test_every_command_works_on_a_postgresql_ledger_and_never_shows_its_password(
    postgres_url: str, tmp_path: Path
) -> None:
    from .conftest import write

    password = postgres_url.split(":")[2].split("@")[0]
    a = write(tmp_path / "a.png", png("a"))
    with Emulator() as emu:
        env = {"USEAPI_TOKEN": emu.token, "ASSETCACHE_BASE_URL": emu.base_url}

        def run(*args: str, input: str | None = None) -> Any:
            result = CliRunner().invoke(
                cli, ["--db", postgres_url, "-vv", *args], env=env, input=input
            )
            assert password not in result.output, args
            return result

        uploaded = run("upload", str(a), "-e", EMAIL, "--json")
        assert uploaded.exit_code == 0, uploaded.output
        ref = run("ref", str(a), "-e", EMAIL)
        assert ref.exit_code == 0 and ref.stdout.strip() in uploaded.stdout
        assert run("ls").exit_code == 0 and str(a) in run("ls").stdout
        assert "1 live" in run("audit").stdout
        assert run("refresh", "--dry-run").exit_code == 0
        exported = run("export")
        assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 1
        assert run("import", input=exported.stdout).stdout == "added 0, revoked 0, skipped 1 already present\n"
        assert run("forget", str(a), "-e", EMAIL).exit_code == 0
        assert run("prune").stdout.strip().endswith("removed 1 entry")
        assert ":***@" in run("path").stdout


def test_the_mirror_bound_holds_when_a_clock_ran_ahead_and_races_with_a_local_forget(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetcache import _rules

    from .conftest import Clock

    clock = Clock()
    with Emulator() as emu:
        here = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock)
        uploaded = here.resolve(png("a"), email=EMAIL)
        clock.advance(timedelta(hours=1))  # this machine's clock runs an hour ahead...
        assert here.lookup(png("a"), email=EMAIL) is not None  # ...and mirrors "in an hour"
        clock.advance(timedelta(hours=-1))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
        AssetCache(db=postgres_url, clock=clock).forget(png("a"))
        clock.advance(timedelta(minutes=20))  # corrected: well past the 5-minute bound
        assert here.lookup(png("a"), email=EMAIL) is None

        # A read of the server that began before a forget made here and finishes after it
        # must not undo it.
        second = here.resolve(png("b"), email=EMAIL)
        engine = here._steps.ledger
        began = _rules.machine_ns()
        engine.revoke(sha256=second.sha256, asset_ref=None, email=None, at=clock.now)
        engine.remember(second.sha256, EMAIL, second, clock.now - timedelta(seconds=1), began)
        assert here.lookup(png("b"), email=EMAIL) is None
        here.close()
    assert uploaded.asset_ref


def test_a_mirrored_ref_near_expiry_does_not_cost_a_second_upload(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import Clock

    clock = Clock()
    with Emulator() as emu:
        a = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock)
        first = a.resolve(png("a"), email=EMAIL)
        clock.advance(timedelta(days=29, hours=1))  # 23 h left: under the 1-day margin
        assert a.lookup(png("a"), email=EMAIL) is not None  # mirrored now, near expiry
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
        b = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url, clock=clock)
        second = b.resolve(png("a"), email=EMAIL)  # machine B re-uploads it
        assert second.asset_ref != first.asset_ref
        again = a.resolve(png("a"), email=EMAIL)  # A must find B's upload, not upload a third
        assert again.reused and again.asset_ref == second.asset_ref
        assert len(emu.uploads) == 2
        a.close()
        b.close()


def test_a_stopped_server_fails_readers_and_lock_waiters_within_the_deadline(
    make_postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assetcache.ledger import postgres as _postgres

    monkeypatch.setattr(_postgres, "SESSION_DEADLINE_S", 1.0)
    server = make_postgres_server()
    url = server.create_database("frozen")
    with Emulator() as emu, AssetCache(db=url, token=emu.token, base_url=emu.base_url) as cache:
        cache.resolve(png("warm"), email=EMAIL)  # sessions (and the lock session) open, pooled
        pids = server.freeze()
        try:
            began = time.monotonic()
            with pytest.raises(LedgerError, match="did not answer within 1 s") as read:
                cache.assets()
            # The cut session is gone; a waiter's claim needs a new one, which the frozen server
            # never finishes starting: libpq's connect_timeout ends it.
            waiter = cache._steps.locks.hold("some-key")
            stalled = "did not answer within 1 s|cannot be reached"
            with pytest.raises(LedgerError, match=stalled), waiter:
                pass
            took = time.monotonic() - began
        finally:
            server.thaw(pids)
        assert server.password not in str(read.value)
        assert took < 20  # a deadline and a connect timeout, not the kernel's or LOCK_WAIT_S
        # Once the server answers again, so does the cache: cut sessions were never pooled.
        assert cache.resolve(png("warm"), email=EMAIL).reused
        assert len(emu.uploads) == 1


def test_reads_on_sessions_a_restart_dropped_are_asked_again_once(
    make_postgres_server: Any,
) -> None:
    server = make_postgres_server()
    url = server.create_database("restarted")
    with Emulator() as emu, AssetCache(db=url, token=emu.token, base_url=emu.base_url) as cache:
        cache.resolve(png("before"), email=EMAIL)
        server.restart(crash=True)  # every pooled session (and the lock session) is now dead
        assert [a.asset_ref for a in cache.assets()] != []
        cache.import_rows(cache.export())  # a write transaction, idempotent, also asked again
        assert cache.resolve(png("after"), email=EMAIL).reused is False  # the lock session too
        assert len(emu.uploads) == 2


def test_an_upload_the_ledger_could_not_record_is_spooled_then_merged(
    make_postgres_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The server goes away while an upload is in flight and stays away past the recording
    budget: the paid ref is still the answer, kept in this machine's spool, and the next
    session that reaches the server (a later process here) records it there."""
    from assetcache.ledger import postgres as _postgres

    monkeypatch.setattr(_postgres, "RECORD_RETRY_S", 0.5)
    server = make_postgres_server()
    url = server.create_database("spool")
    with Emulator(latency=1.0) as emu:
        with AssetCache(db=url, token=emu.token, base_url=emu.base_url) as cache:
            cache.assets()  # migrated
            outcome: list[Asset] = []
            worker = threading.Thread(
                target=lambda: outcome.append(cache.resolve(png("paid"), email=EMAIL))
            )
            worker.start()
            time.sleep(0.4)
            server.stop()  # from this thread: the server dies with the thread that started it
            worker.join()
        (asset,) = outcome
        assert asset.reused is False and len(emu.uploads) == 1
        assert "kept in this machine's spool" in caplog.text
        assert server.password not in caplog.text
        server.start()
        with AssetCache(db=url, token=emu.token, base_url=emu.base_url) as later:
            assert [a.asset_ref for a in later.assets()] == [asset.asset_ref]
            assert later.resolve(png("paid"), email=EMAIL).asset_ref == asset.asset_ref
            assert later._steps.ledger._local.spooled(10) == []  # type: ignore[attr-defined]
        assert len(emu.uploads) == 1


def test_the_console_scripts_mirror_hit_keeps_the_mirrors_bound(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean path reads this machine's mirror with the same rule as PostgresLedger: a forget
    made on another machine is news here within MIRROR_TTL, and after it no hit is printed."""
    import contextlib
    import io
    import types
    from datetime import UTC, datetime

    from assetcache import _hit, _rules
    from assetcache._entry import fast_ref
    from assetcache.content import stat_cache

    real = time.time_ns  # hashed "3 s after" the write: the stat cache trusts the file
    monkeypatch.setattr(stat_cache, "time", types.SimpleNamespace(time_ns=lambda: real() + 3 * 10**9))
    path = tmp_path / "k.png"
    path.write_bytes(png("kept"))
    monkeypatch.setenv("ASSETCACHE_DB", postgres_url)

    def console_ref() -> tuple[int | None, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = fast_ref(["ref", str(path), "-e", EMAIL])
        return code, out.getvalue().strip()

    with Emulator() as emu, AssetCache(token=emu.token, base_url=emu.base_url) as here:
        ref = here.resolve(path, email=EMAIL).asset_ref
    assert console_ref() == (0, ref)
    with monkeypatch.context() as another_machine:
        another_machine.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
        with AssetCache() as elsewhere:
            assert len(elsewhere.forget(ref)) == 1
    assert console_ref() == (0, ref)  # within the bound: the mirror's documented staleness
    later = datetime.now(UTC) + _rules.MIRROR_TTL + timedelta(seconds=1)
    monkeypatch.setattr(_hit, "utcnow", lambda: later)
    assert console_ref() == (None, "")  # the full CLI asks the server, which says: revoked


def test_a_spooled_upload_is_merged_by_the_next_session_of_the_same_process(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived process spooled an upload; the server answers again. Its next session, not
    only its next recording, merges the spool: the image is not paid for twice, and a forget of
    the spooled ref reaches the shared ledger instead of being undone by a later merge."""
    with Emulator() as emu:
        cache = AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url)
        with cache:
            ledger = cache._steps.ledger
            cache.assets()  # migrated

            def spooled_upload(source: bytes) -> Asset:
                with monkeypatch.context() as down:  # RECORD_RETRY_S passed: spooled
                    down.setattr(ledger, "record", lambda a: ledger.spool(a, LedgerError("down")))
                    return cache.resolve(source, email=EMAIL)

            paid = spooled_upload(png("paid"))
            assert cache.resolve(png("paid"), email=EMAIL).asset_ref == paid.asset_ref
            assert len(emu.uploads) == 1  # not paid for twice
            forgotten = spooled_upload(png("forgotten"))
            assert [a.asset_ref for a in cache.forget(forgotten.asset_ref)] == [
                forgotten.asset_ref
            ]
            cache.resolve(png("third"), email=EMAIL)  # a recording: it merges what is spooled
        with AssetCache(db=postgres_url, token=emu.token, base_url=emu.base_url) as later:
            live = {a.asset_ref for a in later.assets() if a.revoked_at is None}
    assert paid.asset_ref in live
    assert forgotten.asset_ref not in live  # never a dead ref handed out
