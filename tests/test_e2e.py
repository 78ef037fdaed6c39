"""End to end over real loopback HTTP: the library and the CLI against the emulator."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from assetcache import (
    AccountNotFoundError,
    Asset,
    AssetCache,
    Emulator,
    InvalidImageError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    SessionExpiredError,
    UnauthorizedError,
)
from assetcache._client import LumaClient

from .conftest import EMAIL, png, write

NO_WAIT = RetryPolicy(attempts=8, max_elapsed=60, initial=0, max_backoff=0, jitter=0)
EXPIRED = "expired@example.com"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(accounts=[EMAIL, EXPIRED], session_errors=[EXPIRED], retry_after=0) as server:
        yield server


@pytest.fixture
def live(emu: Emulator, db: Path) -> Iterator[AssetCache]:
    with AssetCache(token=emu.token, db=db, base_url=emu.base_url, retry=NO_WAIT) as cache:
        yield cache


def cli_env(emu: Emulator, db: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        USEAPI_TOKEN=emu.token, ASSETCACHE_BASE_URL=emu.base_url, ASSETCACHE_DB=str(db), **extra
    )
    return env


def test_upload_then_reuse_without_a_request(
    live: AssetCache, emu: Emulator, tmp_path: Path
) -> None:
    path = write(tmp_path / "a.png", png("a"))
    first = live.resolve(path, email=EMAIL)
    assert emu.request_count == 1
    assert first.asset_ref.startswith("u") and f"-email:{EMAIL}-image:" in first.asset_ref
    (upload,) = emu.uploads
    assert upload.upload_id == first.upload_id and upload.content_type == "image/png"
    again = live.resolve(path, email=EMAIL)
    assert again.reused and again.asset_ref == first.asset_ref
    assert emu.request_count == 1


def test_email_with_reserved_characters_round_trips(emu: Emulator, db: Path) -> None:
    odd = "a/b?c#d%e+f g@example.com"
    with (
        Emulator(retry_after=0) as open_emu,
        AssetCache(token=open_emu.token, db=db, base_url=open_emu.base_url, retry=NO_WAIT) as cache,
    ):
        asset = cache.resolve(png(), email=odd)
        assert [u.email for u in open_emu.uploads] == [odd]
        assert asset.email == odd


def test_every_error_status(emu: Emulator, db: Path, live: AssetCache) -> None:
    with (
        AssetCache(token="wrong", db=db, base_url=emu.base_url, retry=NO_WAIT) as bad,
        pytest.raises(UnauthorizedError),
    ):
        bad.resolve(png("401"), email=EMAIL)
    with pytest.raises(AccountNotFoundError, match="nobody@example.com"):
        live.resolve(png("404"), email="nobody@example.com")
    with pytest.raises(SessionExpiredError):
        live.resolve(png("596"), email=EXPIRED)
    client = LumaClient(token=emu.token, base_url=emu.base_url, retry=NO_WAIT)
    with pytest.raises(InvalidImageError, match=r"image/bmp"):
        client.upload(b"BM....", content_type="image/bmp", email=EMAIL)
    client.close()
    assert emu.status_counts() == {401: 1, 404: 1, 596: 1, 400: 1}  # one request each
    assert live.assets() == []


def test_transient_failures_are_retried(live: AssetCache, emu: Emulator) -> None:
    emu.fail_next(429, 503, 500)
    assert live.resolve(png(), email=EMAIL).reused is False
    assert emu.request_count == 4


def test_retry_budget_exhausted(emu: Emulator, db: Path) -> None:
    emu.fail_next(*([429] * 3))
    policy = RetryPolicy(attempts=3, initial=0, max_backoff=0, jitter=0)
    with (
        AssetCache(token=emu.token, db=db, base_url=emu.base_url, retry=policy) as cache,
        pytest.raises(RateLimitedError),
    ):
        cache.resolve(png(), email=EMAIL)
    emu.fail_next(*([503] * 3))
    with (
        AssetCache(token=emu.token, db=db, base_url=emu.base_url, retry=policy) as cache,
        pytest.raises(ServerError),
    ):
        cache.resolve(png(), email=EMAIL)


def test_flaky_server_batch_completes(db: Path, tmp_path: Path) -> None:
    with (
        Emulator(fail_rate=0.3, seed=7, retry_after=0) as flaky,
        AssetCache(token=flaky.token, db=db, base_url=flaky.base_url, retry=NO_WAIT) as cache,
    ):
        paths = [write(tmp_path / f"{i}.png", png(str(i))) for i in range(20)]
        outcomes = cache.resolve_many(paths, email=EMAIL, jobs=4)
        assert all(isinstance(o, Asset) for o in outcomes), outcomes
        assert len(flaky.uploads) == 20
        assert flaky.request_count > 20  # some were refused and retried


def test_connection_refused_is_a_server_error(db: Path) -> None:
    with Emulator() as gone:
        base, token = gone.base_url, gone.token
    policy = RetryPolicy(attempts=2, initial=0, max_backoff=0, jitter=0)
    with (
        AssetCache(token=token, db=db, base_url=base, retry=policy) as cache,
        pytest.raises(ServerError, match="connection"),
    ):
        cache.resolve(png(), email=EMAIL)


def test_cli_against_the_emulator(emu: Emulator, db: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", png("cli"))
    env = cli_env(emu, db)
    run = [sys.executable, "-m", "assetcache"]
    ref = subprocess.run(
        [*run, "ref", str(path), "--email", EMAIL],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ref.returncode == 0, ref.stderr
    assert ref.stdout == emu.uploads[0].asset_ref + "\n"
    offline = subprocess.run(
        [*run, "ref", str(path), "--email", EMAIL, "--offline"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert offline.stdout == ref.stdout
    up = subprocess.run(
        [*run, "upload", str(path), "--email", EXPIRED, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert up.returncode == 5
    assert json.loads(up.stdout)["exit_code"] == 5
    assert emu.request_count == 2


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_published_curl_example(emu: Emulator, tmp_path: Path) -> None:
    path = write(tmp_path / "example.png", png("curl"))
    url = f"{emu.base_url}/v1/luma/assets/{quote(EMAIL, safe='')}"
    result = subprocess.run(
        [
            "curl",
            "-s",
            "-H",
            f"Authorization: Bearer {emu.token}",
            "-H",
            "Content-Type: image/png",
            "--data-binary",
            f"@{path}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    body = json.loads(result.stdout)
    assert body["email"] == EMAIL
    assert (
        body["assetRef"]
        == f"{body['assetRef'].split('-email:')[0]}-email:{EMAIL}-image:{body['upload']['id']}"
    )
    assert body["upload"]["media"]["url"].startswith(emu.base_url)


def test_emulator_command_serves_and_stops_on_ctrl_c(tmp_path: Path, db: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "assetcache",
            "emulator",
            "--port",
            "0",
            "--token",
            "t0k",
            "--account",
            EMAIL,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        base = proc.stdout.readline().strip().removeprefix("export ASSETCACHE_BASE_URL=")
        with AssetCache(token="t0k", db=db, base_url=base, retry=NO_WAIT) as cache:
            assert cache.resolve(png(), email=EMAIL).reused is False
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "POST /v1/luma/assets/me%40example.com -> 200" in err
    assert "t0k" not in err


def test_demo_runs_offline_and_exits_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "assetcache", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "-> 3 request(s) sent" in result.stdout
    assert "-> 0 request(s) sent" in result.stdout
    assert "$ assetcache ls" in result.stdout and "$ assetcache audit" in result.stdout
    assert not list(Path(os.environ["HOME"]).rglob("ledger.db"))  # never the user's ledger
    # The report outlives the demo, in the user's cache folder rather than the current one
    # (a checkout would show it as an untracked file), with its thumbnails in it.
    assert list(tmp_path.iterdir()) == []
    report = Path(os.environ["XDG_CACHE_HOME"], "assetcache", "demo", "report.html")
    assert f"wrote {report}\n" in result.stdout
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3 and "127.0.0.1" not in page
