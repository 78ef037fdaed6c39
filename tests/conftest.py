"""Shared fixtures. Every test runs with a private HOME and no assetcache/useapi variables,
so nothing can reach the real user dir or a real token."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from assetcache import AssetCache, AsyncAssetCache, RetryPolicy

TOKEN = "tok-SECRET-4f9a1c2e7b"
EMAIL = "me@example.com"
FAST_RETRY = RetryPolicy(attempts=4, max_elapsed=30, initial=0, max_backoff=0, jitter=0)

PNG_SIG = b"\x89PNG\r\n\x1a\n"
JPEG_SIG = b"\xff\xd8\xff\xe0"


def png(payload: bytes | str = b"x") -> bytes:
    """Bytes that sniff as PNG, distinct per payload."""
    if isinstance(payload, str):
        payload = payload.encode()
    return PNG_SIG + b"\x00\x00\x00\rIHDR" + payload


def jpeg(payload: bytes | str = b"x") -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return JPEG_SIG + payload


def webp(payload: bytes | str = b"x") -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return b"RIFF" + (len(payload) + 4).to_bytes(4, "little") + b"WEBP" + payload


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    for name in ("USEAPI_TOKEN", "ASSETCACHE_DB", "ASSETCACHE_BASE_URL", "ASSETCACHE_EMAIL"):
        monkeypatch.delenv(name, raising=False)


class Clock:
    """A settable clock for time travel."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class FakeLuma:
    """An httpx.MockTransport handler that answers like the upload endpoint.

    ``script`` holds responses to give first (status or (status, headers, body)); after it is
    used up every request succeeds.
    """

    token: str = TOKEN
    script: list[int | tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    uploads: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            if isinstance(scripted, int):
                return httpx.Response(scripted, json={"error": f"scripted {scripted}"})
            status, headers, body = scripted
            return httpx.Response(status, headers=headers, content=body)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": "Unauthorized"})
        email = request.url.path.rsplit("/", 1)[-1]
        upload_id = str(uuid.uuid4())
        with self.lock:
            self.uploads += 1
        digest = hashlib.sha256(request.content).hexdigest()[:8]
        return httpx.Response(
            200,
            content=json.dumps(
                {
                    "assetRef": f"u1-email:{email}-image:{upload_id}",
                    "email": email,
                    "upload": {"id": upload_id, "media": {"url": f"https://cdn/{digest}"}},
                }
            ).encode(),
        )

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture
def luma() -> FakeLuma:
    return FakeLuma()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "ledger.db"


def _cache_options(
    luma: FakeLuma, clock: Clock, default_db: Path | str, **kwargs: object
) -> dict[str, Any]:
    options: dict[str, object] = {
        "token": TOKEN,
        "db": default_db,
        "base_url": "https://api.test",
        "transport": luma.transport,
        "retry": FAST_RETRY,
        "clock": clock,
    }
    options.update(kwargs)
    return options


#: AsyncAssetCache methods that return an async iterator (``async for``, no await).
ASYNC_ITERATORS = frozenset({"iter_prune", "export"})


class BlockingAsyncCache:
    """An AsyncAssetCache driven from synchronous tests, so that one behavioural suite runs
    against both caches: every coroutine runs to completion on a private event loop, and
    async iterators are drained into plain ones."""

    def __init__(self, cache: AsyncAssetCache) -> None:
        self.wrapped = cache
        self._loop = asyncio.new_event_loop()

    def __repr__(self) -> str:
        return repr(self.wrapped)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.wrapped, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._loop.run_until_complete(attr(*a, **k))
        if callable(attr) and name in ASYNC_ITERATORS:
            return lambda *a, **k: iter(self._loop.run_until_complete(_drain(attr(*a, **k))))
        return attr

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.wrapped.aclose())
            self._loop.close()

    def __enter__(self) -> BlockingAsyncCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _drain(rows: AsyncIterator[Any]) -> list[Any]:
    return [row async for row in rows]


@pytest.fixture
def make_sync_cache(
    luma: FakeLuma, clock: Clock, db: Path
) -> Iterator[Callable[..., AssetCache]]:
    """AssetCache only: for tests about threads sharing one cache."""
    made: list[AssetCache] = []

    def make(**kwargs: object) -> AssetCache:
        cache = AssetCache(**_cache_options(luma, clock, db, **kwargs))
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Which cache a behavioural test runs against: every such test runs against both."""
    return str(request.param)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The ledger engine under test: "sqlite", or both for tests marked ``both_engines``
    ("sqlite", "postgres"), and a third, "pgbouncer" (PostgreSQL through PgBouncer in
    transaction pooling mode), for those that also run through PgBouncer (see
    ``through_pgbouncer``). Anything not "sqlite" is a PostgreSQL ledger."""
    return str(getattr(request, "param", "sqlite"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Engine-neutral behaviour runs against both engines by parametrizing, not by copying.
    bouncer = through_pgbouncer(metafunc.definition)
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_engines"
    ):
        engines = ["sqlite", "postgres", *(["pgbouncer"] if bouncer else [])]
        metafunc.parametrize("engine", engines, indirect=True)
    elif "postgres_route" in metafunc.fixturenames and bouncer:
        # Tests that take postgres_url run once directly and once through PgBouncer.
        metafunc.parametrize("postgres_route", ["direct", "pgbouncer"], indirect=True)


@pytest.fixture
def ledger_location(db: Path, engine: str, request: pytest.FixtureRequest) -> str:
    """Where the ``engine`` under test keeps this test's ledger: a file, or a new database
    (reached directly, or through PgBouncer)."""
    if engine == "sqlite":
        return str(db)
    fixture = "pgbouncer_url" if engine == "pgbouncer" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def make_cache(
    luma: FakeLuma,
    clock: Clock,
    db: Path,
    flavour: str,
    engine: str,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., AssetCache]]:
    """AssetCache, or AsyncAssetCache behind the same blocking interface (see ``flavour``),
    over the ``engine``'s ledger."""
    made: list[AssetCache | BlockingAsyncCache] = []
    ledger: Path | str = db if engine == "sqlite" else request.getfixturevalue("ledger_location")

    def make(**kwargs: object) -> AssetCache:
        options = _cache_options(luma, clock, ledger, **kwargs)
        cache: AssetCache | BlockingAsyncCache
        if flavour == "sync":
            cache = AssetCache(**options)
        else:
            cache = BlockingAsyncCache(AsyncAssetCache(**options))
        made.append(cache)
        return cache  # type: ignore[return-value]  # the same interface, blocking

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def cache(make_cache: Callable[..., AssetCache]) -> AssetCache:
    return make_cache()


@pytest.fixture
def run(luma: FakeLuma, clock: Clock, db: Path) -> Callable[..., Any]:
    """The click CLI on this test's SQLite ledger, with the fake server and clock; extra
    keyword arguments are environment variables. (test_cli.py has an engine-parametrized one.)"""

    def invoke(*args: str, input: str | None = None, **env: str) -> Any:
        from click.testing import CliRunner

        from assetcache.cli import cli

        return CliRunner().invoke(
            cli,
            ["--db", str(db), *args],
            obj={"clock": clock, "transport": luma.transport, "retry": FAST_RETRY},
            env={"USEAPI_TOKEN": TOKEN, "ASSETCACHE_EMAIL": None, **env},
            input=input,
        )

    return invoke


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    # Age the file past the racy-clean window so the stat cache may trust it.
    old = os.stat(path).st_mtime_ns - 10_000_000_000
    os.utime(path, ns=(old, old))
    return path


def _mount(target: Path, *args: str) -> None:
    """Mount for a test, or skip it when this machine cannot (not root, no loop devices)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a test filesystem needs root (CI runs as root)")
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a test filesystem here: {done.stderr.strip()}")


def _unmount(target: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


@pytest.fixture
def coarse_fs(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem with 1-second timestamps: ext4 with 128-byte inodes, loop-mounted."""
    import subprocess

    image = tmp_path / "coarse.img"
    with image.open("wb") as f:
        f.truncate(8 << 20)
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-I", "128", str(image)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 is not usable here: {made.stderr.strip()}")
    mount = tmp_path / "coarse"
    _mount(mount, "-o", "loop", str(image))
    try:
        yield mount
    finally:
        _unmount(mount)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, for filling a disk for real."""
    mount = tmp_path / "small"
    _mount(mount, "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs")
    try:
        yield mount
    finally:
        _unmount(mount)


def fill(directory: Path) -> None:
    """Write until the filesystem holding ``directory`` is full."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


# ============================================================================================
# PostgreSQL: a real server for the tests that need one (see tests/postgres_server.py).
#
# postgres_server (session): the server named by $ASSETCACHE_TEST_POSTGRES_URL (an existing
#     server and an administrator's URL, able to CREATE DATABASE) if set, else a private server
#     started on first use (about a second) and stopped at the end of the session.
# postgres_url: a fresh, empty database on it per test, dropped (WITH (FORCE)) afterwards.
# make_postgres_server: a private server of the test's own, to stop, kill and restart; with
#     settings={"max_connections": 20}, one with that few connection slots (a farm's server).
#
# PgBouncer (Debian's package), in transaction pooling mode, in front of those servers:
# pgbouncer (session): in front of postgres_server, started on first use.
# pgbouncer_url: like postgres_url, a fresh database per test, but reached THROUGH pgbouncer.
# make_pgbouncer: a private PgBouncer in front of a server of the test's own (pool_size=10 by
#     default), for farms and for stopping.
#
# When no server can be had the test is skipped, with the reason, unless
# $ASSETCACHE_REQUIRE_POSTGRES=1 (as CI sets it): then it fails, with the reason. Likewise for
# PgBouncer with $ASSETCACHE_REQUIRE_PGBOUNCER=1 (CI sets it too).
#
# Through PgBouncer: the PostgreSQL tests of a module also run through PgBouncer when
#   - the module's name is in THROUGH_PGBOUNCER below (the switch: add a module once the
#     engine supports a transaction pooler for what it tests), or
#   - the module or test is marked ``through_pgbouncer``, or
#   - $ASSETCACHE_TEST_THROUGH_PGBOUNCER names it (a comma-separated list of module names),
#     or says "wanted" (the modules of WANTED_THROUGH_PGBOUNCER) or "all" (every module): to
#     try the engine out without editing anything.
# Then tests marked ``both_engines`` get a third engine, "pgbouncer", and tests that take
# postgres_url run twice, [direct] and [pgbouncer] (postgres_route). Tests on a private
# server (make_postgres_server) are not rerouted.
# ============================================================================================

import re  # noqa: E402
from typing import NoReturn  # noqa: E402

from .postgres_server import (  # noqa: E402
    ExistingServer,
    PgBouncer,
    PgBouncerUnavailable,
    PostgresServer,
    PostgresUnavailable,
)

POSTGRES_URL_VAR = "ASSETCACHE_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VAR = "ASSETCACHE_REQUIRE_POSTGRES"
REQUIRE_PGBOUNCER_VAR = "ASSETCACHE_REQUIRE_PGBOUNCER"
THROUGH_PGBOUNCER_VAR = "ASSETCACHE_TEST_THROUGH_PGBOUNCER"

#: What issue #17 asks to work through PgBouncer in transaction pooling mode: single flight,
#: migrations, the spool, the mirror and every command. ASSETCACHE_TEST_THROUGH_PGBOUNCER=wanted
#: runs them all through it; once they pass, THROUGH_PGBOUNCER = WANTED_THROUGH_PGBOUNCER.
WANTED_THROUGH_PGBOUNCER: frozenset[str] = frozenset(
    {
        "test_cache",  # the cache's behaviour, both_engines
        "test_cli",  # every command, both_engines
        "test_concurrency",  # single flight: processes and threads, both_engines
        "test_migrations",  # migrations, including processes opening a new database at once
        "test_postgres_ledger",  # machines, the mirror, every command, the spool
        "test_postgres_asyncio",  # the asyncio driver's single flight and recording
        "test_spool_on_a_shared_machine",  # the spool
        "test_forget",  # a forget and the mirror, both_engines
        "test_moving_ledgers",  # export and import, both_engines
    }
)

#: Modules whose PostgreSQL tests also run through PgBouncer (transaction pooling): all of the
#: above pass through it (ASSETCACHE_TEST_THROUGH_PGBOUNCER=that_module tries another).
THROUGH_PGBOUNCER: frozenset[str] = WANTED_THROUGH_PGBOUNCER


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def through_pgbouncer(item: pytest.Item) -> bool:
    """Whether this test's PostgreSQL runs also go through PgBouncer (see the block above)."""
    if item.get_closest_marker("through_pgbouncer"):
        return True
    found = getattr(item, "module", None)
    module = found.__name__.rsplit(".", 1)[-1] if found is not None else ""
    chosen = {m.strip() for m in os.environ.get(THROUGH_PGBOUNCER_VAR, "").split(",")}
    if "wanted" in chosen:
        chosen |= WANTED_THROUGH_PGBOUNCER
    return module in THROUGH_PGBOUNCER or module in chosen or "all" in chosen


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when PostgreSQL is required."""
    if _truthy(REQUIRE_POSTGRES_VAR):
        pytest.fail(f"PostgreSQL is required ({REQUIRE_POSTGRES_VAR}) but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL ({reason}); {REQUIRE_POSTGRES_VAR}=1 makes this a failure")


def pgbouncer_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when PgBouncer is required."""
    if _truthy(REQUIRE_PGBOUNCER_VAR):
        pytest.fail(f"PgBouncer is required ({REQUIRE_PGBOUNCER_VAR}) but {reason}", pytrace=False)
    pytest.skip(f"no PgBouncer ({reason}); {REQUIRE_PGBOUNCER_VAR}=1 makes this a failure")


def _start_pgbouncer(bouncer: PgBouncer) -> PgBouncer:
    try:
        return bouncer.start()
    except PgBouncerUnavailable as exc:
        reason = f"cannot start PgBouncer: {exc}"
    except (PostgresUnavailable, OSError) as exc:  # psycopg missing: PostgreSQL's own problem
        reason = f"cannot start PgBouncer: {exc}"
        bouncer.close()
        postgres_unavailable(reason)
    bouncer.close()
    pgbouncer_unavailable(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | ExistingServer]:
    # The reason is reported outside the ``except``, so that it stands alone.
    reason = ""
    url = os.environ.get(POSTGRES_URL_VAR, "").strip()
    if url:
        existing = ExistingServer(url)
        try:
            existing.check()
        except PostgresUnavailable as exc:
            reason = f"${POSTGRES_URL_VAR} is unusable: {exc}"
        if reason:
            postgres_unavailable(reason)
        yield existing
        return
    server = PostgresServer()
    try:
        server.start()
    except (PostgresUnavailable, OSError) as exc:
        server.close()
        reason = f"cannot start a PostgreSQL server: {exc}"
    if reason:
        postgres_unavailable(reason)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_route(request: pytest.FixtureRequest) -> str:
    """How postgres_url reaches the server: "direct", or "pgbouncer" for the second run of a
    test that also runs through PgBouncer (see ``through_pgbouncer``)."""
    return str(getattr(request, "param", "direct"))


def _test_database_name(request: pytest.FixtureRequest) -> str:
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def postgres_url(
    postgres_server: PostgresServer | ExistingServer,
    postgres_route: str,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """The URL of a new, empty database, for this test alone (through PgBouncer on the
    [pgbouncer] run of a test that has one)."""
    if postgres_route == "pgbouncer":
        yield str(request.getfixturevalue("pgbouncer_url"))
        return
    name = _test_database_name(request)
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer | ExistingServer) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode (a pool of 10) in front of postgres_server."""
    bouncer = _start_pgbouncer(PgBouncer(postgres_server))
    try:
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture
def pgbouncer_url(pgbouncer: PgBouncer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database, for this test alone, reached through PgBouncer."""
    name = _test_database_name(request)
    url = pgbouncer.create_database(name)
    yield url
    pgbouncer.drop_database(name)


@pytest.fixture
def make_pgbouncer() -> Iterator[Callable[..., PgBouncer]]:
    """Start private PgBouncers (``PgBouncer(server, **kwargs)``), all closed after the test."""
    made: list[PgBouncer] = []

    def make(server: PostgresServer | ExistingServer, **kwargs: Any) -> PgBouncer:
        bouncer = PgBouncer(server, **kwargs)
        made.append(bouncer)
        return _start_pgbouncer(bouncer)

    yield make
    for bouncer in made:
        bouncer.close()


@pytest.fixture
def make_postgres_server() -> Iterator[Callable[..., PostgresServer]]:
    """Start private servers (``PostgresServer(**kwargs)``), all closed after the test."""
    made: list[PostgresServer] = []

    def make(**kwargs: Any) -> PostgresServer:
        # e.g. settings={"max_connections": 20}: a server with that few connection slots.
        server = PostgresServer(**kwargs)
        made.append(server)
        try:
            return server.start()
        except (PostgresUnavailable, OSError) as exc:
            reason = f"cannot start a PostgreSQL server: {exc}"
        postgres_unavailable(reason)

    yield make
    for server in made:
        server.close()


#: What the farm tests (tests/test_farm.py) measured: printed at the end of the run.
FARM_REPORTS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FARM_REPORTS:
        terminalreporter.section("farm reports")
        for text in FARM_REPORTS:
            terminalreporter.write_line(text)


# ============================================================================================
# End of the PostgreSQL block.
# ============================================================================================


# ============================================================================================
# A real browser, for the HTML report: Debian's chromium driven by Playwright. Skipped only
# when chromium or Playwright is missing, unless ASSETCACHE_REQUIRE_BROWSER=1 (CI sets it,
# after installing chromium): then that is a failure.
# ============================================================================================

REQUIRE_BROWSER_VAR = "ASSETCACHE_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_BROWSER_VAR, "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"the browser test must run here ({REQUIRE_BROWSER_VAR}): {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless chromium (Playwright's ``Browser``), closed after the test."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        browser_unavailable("no chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("Playwright is not installed (the test extra brings it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
