"""A render farm on one PostgreSQL (issue #17): hundreds of processes, a server with few
connection slots, behind a transaction pooler, and no connection cliff.

- 100 real processes (not threads) over 5 simulated machines (each its own HOME and cache
  dir), all started at once, each running ``assetcache upload --jobs 4 --json`` on the same
  20 images, against a server with ``max_connections=20`` (16 for the farm's ordinary role: 3
  are reserved for superusers, and the superuser's session watching pg_stat_activity takes
  one): directly, and again through PgBouncer in transaction pooling mode with a pool of 10. Every process
  exits 0, the emulator sees exactly 20 uploads, every process prints the same 20 refs, and
  the server never holds more client sessions than it allows (through PgBouncer: than the
  pool). The peaks are printed at the end of the run ("farm reports").
- No cliff: a process that finds every slot taken waits and retries, and gets its answer once
  a slot frees; when none frees within its budget it exits 1 saying that the server has no
  free connection slots (max_connections). Likewise a server that is starting up (57P03).

The farm itself is tests/farm.py (the benchmarks run it too).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assetcache import Emulator

from .conftest import FARM_REPORTS
from .farm import (
    EMAIL,
    TOO_MANY,
    FarmResult,
    FarmSpec,
    SessionWatch,
    farm_env,
    run_farm,
    write_images,
)
from .postgres_server import PgBouncer, PostgresServer, RefusingProxy

pytestmark = [pytest.mark.slow, pytest.mark.farm]

#: The farm's server: few slots, as a small managed PostgreSQL has.
MAX_CONNECTIONS = 20
#: What PgBouncer may hold on that server for the farm's database and role.
POOL_SIZE = 10
ROLE = "farm"
DATABASE = "farm"


class FarmServer:
    """A private server with MAX_CONNECTIONS slots, an ordinary role and its database."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.password = secrets.token_hex(12)
        server.create_role(ROLE, self.password)
        server.create_database(DATABASE, owner=ROLE)
        self.url = server.url_as(ROLE, self.password, DATABASE)

    def watch(self, bouncer: PgBouncer | None = None) -> SessionWatch:
        return SessionWatch(self.server.url, database=DATABASE, user=ROLE, bouncer=bouncer)

    def slots_for_the_role(self) -> int:
        """How many sessions the server lets an ordinary role have when nobody else is on."""
        import psycopg

        with psycopg.connect(self.server.url, autocommit=True) as admin:
            most, reserved = admin.execute(
                "SELECT current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int"
                " + coalesce(current_setting('reserved_connections', true), '0')::int"
            ).fetchone()  # type: ignore[misc]
        return int(most) - int(reserved)


@pytest.fixture
def farm_server(make_postgres_server: Callable[..., PostgresServer]) -> FarmServer:
    return FarmServer(make_postgres_server(settings={"max_connections": MAX_CONNECTIONS}))


def report(title: str, result: FarmResult) -> None:
    FARM_REPORTS.append(f"{title}\n{result.summary()}")
    print(f"{title}\n{result.summary()}")


def assert_a_healthy_farm(result: FarmResult, images: int, session_limit: int) -> None:
    why = result.summary() + "\n" + "\n".join(p.why() for p in result.failed[:10])
    assert result.failed == [], why
    assert result.uploads == images, why
    (answer,) = result.answers  # every process printed the same refs...
    assert len(answer) == images, why  # ...one for each image
    assert len(result.distinct_refs) == images, why
    assert result.peaks.samples > 0, why
    assert result.peaks.sessions <= session_limit, why


def test_a_hundred_processes_on_five_machines_share_a_server_with_twenty_slots(
    farm_server: FarmServer, tmp_path: Path
) -> None:
    spec = FarmSpec(processes=100, machines=5, images=20, jobs=4)
    limit = farm_server.slots_for_the_role()
    with Emulator(latency=0.3) as emu:
        result = run_farm(
            farm_server.url,
            emu,
            tmp_path,
            spec,
            watch=farm_server.watch(),
            server_log=farm_server.server.log_path,
        )
    report(f"farm, directly on a server with max_connections={MAX_CONNECTIONS}:", result)
    assert_a_healthy_farm(result, spec.images, limit)


def test_the_same_farm_through_pgbouncer_in_transaction_pooling_mode(
    farm_server: FarmServer, make_pgbouncer: Callable[..., PgBouncer], tmp_path: Path
) -> None:
    bouncer = make_pgbouncer(
        farm_server.server,
        pool_mode="transaction",
        pool_size=POOL_SIZE,
        max_client_conn=2000,
        users={ROLE: farm_server.password},
    )
    spec = FarmSpec(processes=100, machines=5, images=20, jobs=4)
    with Emulator(latency=0.3) as emu:
        result = run_farm(
            bouncer.through(farm_server.url),
            emu,
            tmp_path,
            spec,
            watch=farm_server.watch(bouncer),
            server_log=farm_server.server.log_path,
        )
    report(
        f"farm, through PgBouncer (transaction pooling, pool of {POOL_SIZE}) on a server with"
        f" max_connections={MAX_CONNECTIONS}:",
        result,
    )
    assert_a_healthy_farm(result, spec.images, POOL_SIZE)


# -- no cliff --------------------------------------------------------------------------------


def take_every_slot(farm: FarmServer) -> list[Any]:
    """Open idle sessions as the farm's role until the server refuses one for lack of slots;
    return them (the caller closes them)."""
    import psycopg

    held: list[Any] = []
    refusals = 0
    try:
        while True:
            try:
                held.append(psycopg.connect(farm.url, autocommit=True, connect_timeout=10))
            except psycopg.OperationalError as exc:
                assert "too many clients" in str(exc) or "reserved" in str(exc), exc
                refusals += 1
                if refusals == 2:
                    return held
                # A session that just ended (the fixture's uploader, an earlier test) may hold
                # its slot a moment longer, while its server process exits: take that one too,
                # or the test's latecomer would find it free.
                time.sleep(1.0)
                continue
            refusals = 0
            assert len(held) <= MAX_CONNECTIONS, "the server let more sessions in than it has"
    except BaseException:
        for conn in held:
            conn.close()
        raise


@pytest.fixture
def a_known_image(farm_server: FarmServer, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An image whose ref the shared ledger knows (uploaded from another machine), and that
    ref: asking for it is a read of the server, not an upload."""
    (path,) = write_images(tmp_path / "frames", 1)
    with Emulator() as emu:
        env = farm_env(farm_server.url, emu, tmp_path / "uploader", EMAIL)
        done = subprocess.run(
            [sys.executable, "-m", "assetcache", "ref", str(path)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield path, done.stdout.strip()


def test_a_process_that_finds_every_slot_taken_waits_for_one(
    farm_server: FarmServer, a_known_image: tuple[Path, str], tmp_path: Path
) -> None:
    path, ref = a_known_image
    held = take_every_slot(farm_server)
    try:
        with Emulator() as emu:  # a machine that never read the ref: it must ask the server
            env = farm_env(farm_server.url, emu, tmp_path / "latecomer", EMAIL)
            log = farm_server.server.log_path
            since = log.stat().st_size
            latecomer = subprocess.Popen(
                [sys.executable, "-m", "assetcache", "-v", "ref", str(path)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            refused = wait_for_a_refusal(log, since, latecomer)
            time.sleep(2.0)  # the server stays full a while longer...
            for conn in held[:3]:  # ...then a few sessions end
                conn.close()
            out, err = latecomer.communicate(timeout=120)
    finally:
        for conn in held:
            conn.close()
    assert refused, "the latecomer never met the full server"
    assert latecomer.returncode == 0, err
    assert out.strip() == ref
    assert "connection slots" in err  # the wait is logged at -v, saying why


def wait_for_a_refusal(log: Path, since: int, proc: subprocess.Popen[str]) -> bool:
    """Whether the server's log, past ``since``, says it refused a session for lack of slots
    before ``proc`` ended (or a minute passed)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(since)
            if TOO_MANY.search(f.read().decode(errors="replace")):
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def test_a_server_that_stays_full_is_named_once_the_budget_runs_out(
    farm_server: FarmServer,
    a_known_image: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from assetcache.cli import cli
    from assetcache.ledger import postgres as _postgres

    path, _ = a_known_image
    # The budget, shortened. A process gives up when its next wait (at most 2 s) would end past
    # the budget, so with 4 s it has waited more than 2 s, whatever the jitter.
    monkeypatch.setattr(_postgres, "SLOT_WAIT_S", 4.0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "latecomer"))  # no mirror of the ref
    held = take_every_slot(farm_server)
    try:
        began = time.monotonic()
        result = CliRunner().invoke(
            cli, ["--db", farm_server.url, "ref", str(path), "-e", EMAIL], env={}
        )
        took = time.monotonic() - began
    finally:
        for conn in held:
            conn.close()
    assert result.exit_code == 1, result.output
    # Not PostgreSQL's own "remaining connection slots are reserved for …": what to do.
    assert "no free connection slots" in result.output, result.output
    assert "max_connections" in result.output, result.output
    assert farm_server.password not in result.output
    assert "Traceback" not in result.output
    assert took >= 2.0, f"gave up after {took:.1f} s: no wait, a cliff"


def test_a_server_that_is_starting_up_is_waited_for(
    farm_server: FarmServer, a_known_image: tuple[Path, str], tmp_path: Path
) -> None:
    """57P03 ("the database system is starting up"), as a restarted server answers while it
    recovers: a proxy answers so for 2 s from the first session asked for, then lets sessions
    through to the server."""
    path, ref = a_known_image
    with RefusingProxy(farm_server.server.port, sqlstate="57P03", seconds=2.0) as proxy:
        with Emulator() as emu:
            env = farm_env(proxy.through(farm_server.url), emu, tmp_path / "latecomer", EMAIL)
            done = subprocess.run(
                [sys.executable, "-m", "assetcache", "-v", "ref", str(path)],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        refused = proxy.refused
    assert refused >= 1  # it did try while the server was "starting up"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ref


def test_the_farm_reports_say_what_a_failure_looks_like() -> None:
    """The summary a failing farm prints names the failures' errors and counts."""
    from .farm import ProcessResult

    spec = FarmSpec(processes=2, machines=1, images=1)
    result = FarmResult(
        spec,
        [
            ProcessResult(0, 0, 0, "", "", 1.0, {"frame00.png": "r1"}),
            ProcessResult(0, 1, 1, "", "assetcache: error: too many clients (port 54321)", 2.0),
        ],
        uploads=1,
        seconds=2.5,
    )
    text = result.summary()
    assert "1 failed (1: 1)" in text and "1 uploads" in text and "2 distinct answers" in text
    assert "too many clients (port N)" in text
