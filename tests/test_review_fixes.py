"""Regression tests for defects found in review: each test failed before its fix."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from assetcache import (
    Asset,
    AssetCache,
    InvalidImageError,
    RemoteError,
    RetryPolicy,
    ServerError,
    UnauthorizedError,
)
from assetcache._cli import cli
from assetcache._client import LumaClient
from assetcache._entry import fast_ref
from assetcache._ledger import Ledger
from assetcache._locks import KeyLocks

from .conftest import EMAIL, FAST_RETRY, TOKEN, FakeLuma, png, write


@pytest.mark.parametrize("bad", ["tok\x00en-SECRET", "tok\nen-SECRET", "tök-SECRET", "two words"])
def test_tokens_no_header_can_carry_are_refused_without_quoting_them(
    bad: str, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    with pytest.raises(UnauthorizedError) as info:
        make_cache(token=bad).resolve(png(), email=EMAIL)
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value)
    assert luma.requests == []


def test_token_read_from_a_crlf_file_works(
    make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    assert make_cache(token=TOKEN + "\r\n").resolve(png(), email=EMAIL).reused is False
    assert luma.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_cli_never_prints_a_malformed_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(tmp_path / "l.db"),
            "-vv",
            "upload",
            str(write(tmp_path / "a.png", png())),
            "--email",
            EMAIL,
            "--json",
        ],
        env={"USEAPI_TOKEN": "tok\rSECRET\r"},
    )
    assert result.exit_code == 5
    assert "SECRET" not in result.output


def test_server_echoing_the_token_is_scrubbed() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": f"bad header {request.headers['authorization']}"})

    client = LumaClient(
        token=TOKEN, base_url="https://api.test", transport=httpx.MockTransport(echo)
    )
    with pytest.raises(InvalidImageError) as info:
        client.upload(png(), content_type="image/png", email=EMAIL)
    assert TOKEN not in str(info.value) and "***" in str(info.value)


def test_configuration_errors_are_not_retried() -> None:
    slept: list[float] = []
    client = LumaClient(
        token=TOKEN, base_url="ftp://127.0.0.1:9", retry=RetryPolicy(), sleep=slept.append
    )
    with pytest.raises(RemoteError, match="ASSETCACHE_BASE_URL") as info:
        client.upload(png(), content_type="image/png", email=EMAIL)
    assert not isinstance(info.value, ServerError)
    assert slept == []


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


def test_forced_bytes_upload_on_a_new_ledger(
    make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    assert make_cache().resolve(png("forced"), email=EMAIL, force=True).reused is False


def test_batches_do_not_leak_connections(make_cache: Callable[..., AssetCache]) -> None:
    cache = make_cache()
    cache.resolve_many([png(str(i)) for i in range(4)], email=EMAIL, jobs=4)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        cache.resolve_many([png(str(i)) for i in range(4)], email=EMAIL, jobs=4)
    assert len(os.listdir("/proc/self/fd")) <= before + 2


def test_a_nul_byte_path_fails_alone(make_cache: Callable[..., AssetCache], tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.png", png("ok"))
    out = make_cache().resolve_many([str(tmp_path / "f\0.png"), ok], email=EMAIL, jobs=2)
    assert isinstance(out[0], InvalidImageError) and "not a valid file path" in str(out[0])
    assert isinstance(out[1], Asset)


def test_cli_stdin_with_a_nul_byte_goes_on(tmp_path: Path, luma: FakeLuma) -> None:
    ok = write(tmp_path / "ok.png", png("ok"))
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "l.db"), "upload", "-", "--email", EMAIL],
        input=f"{tmp_path}/f\0.png\n{ok}\n",
        env={"USEAPI_TOKEN": TOKEN},
        obj={"transport": luma.transport, "retry": FAST_RETRY},
    )
    assert result.exit_code == 4
    assert str(ok) in result.stdout


@pytest.mark.parametrize("command", ["ref", "upload"])
def test_min_remaining_out_of_range_is_a_usage_error(command: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "l.db"), command, "x.png", "-e", EMAIL, "--min-remaining", "30d"],
    )
    assert result.exit_code == 2
    assert "uploads live 30 days" in result.output


def test_fast_path_treats_an_empty_email_like_click(
    tmp_path: Path, luma: FakeLuma, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.db"
    path = write(tmp_path / "a.png", png("a"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        cache.resolve(path, email=EMAIL)
    monkeypatch.setenv("ASSETCACHE_EMAIL", EMAIL)
    assert fast_ref(["--db", str(db), "ref", str(path), "--email="]) is None
    assert fast_ref(["--db", str(db), "ref", str(path)]) == 0


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
