"""Hostile input and secrets: clear errors, never a traceback, never the token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assetcache import Asset, AssetCache, Emulator, InvalidImageError
from assetcache.cli import cli

from .conftest import EMAIL, FAST_RETRY, TOKEN, FakeLuma, png, write

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6}


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assetcache", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "hostile"
    d.mkdir()
    (d / "a dir").mkdir()
    os.mkfifo(d / "fifo.png")
    (d / "dangling.png").symlink_to(d / "nowhere.png")
    write(d / "with space.png", png("space"))
    with open(os.fsencode(d) + b"/latin1-\xe9.png", "wb") as f:
        f.write(png("latin1"))
    return d


@pytest.mark.both_engines
def test_hostile_files_through_the_cli(hostile_dir: Path, tmp_path: Path, ledger_location: str) -> None:
    env = dict(os.environ, ASSETCACHE_DB=ledger_location, ASSETCACHE_EMAIL=EMAIL)
    cases = {
        str(hostile_dir / "a dir"): "directory",
        str(hostile_dir / "fifo.png"): "FIFO",
        str(hostile_dir / "dangling.png"): "no such file",
        "/dev/zero": "device",
        str(hostile_dir / "missing.png"): "no such file",
    }
    assert run_cli(["prune"], env).returncode == 0  # opens the ledger: a read of one that does not exist is an error
    for path, words in cases.items():
        result = run_cli(["ref", path, "--offline"], env, timeout=15)  # a FIFO must not block
        assert result.returncode == 4, (path, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1


@pytest.mark.both_engines
def test_odd_but_valid_paths_work(hostile_dir: Path, tmp_path: Path, ledger_location: str) -> None:
    with Emulator() as emu:
        env = dict(
            os.environ,
            ASSETCACHE_DB=ledger_location,
            ASSETCACHE_EMAIL=EMAIL,
            USEAPI_TOKEN=emu.token,
            ASSETCACHE_BASE_URL=emu.base_url,
        )
        spaced = run_cli(["ref", str(hostile_dir / "with space.png")], env)
        assert spaced.returncode == 0, spaced.stderr
        latin1 = subprocess.run(
            [
                sys.executable,
                "-m",
                "assetcache",
                "ref",
                os.fsencode(hostile_dir) + b"/latin1-\xe9.png",
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        assert latin1.returncode == 0, latin1.stderr
        assert latin1.stdout.startswith(b"u")
        listing = run_cli(["ls"], env)
        assert listing.returncode == 0 and "with space.png" in listing.stdout
        assert len(emu.uploads) == 2


@pytest.mark.both_engines
@pytest.mark.parametrize(
    "email", ["a/b@x.com", "a?b@x.com", "a#b@x.com", "a%b@x.com", "a+b@x.com", "a b@x.com"]
)
def test_reserved_characters_in_emails_are_one_segment(email: str, tmp_path: Path, ledger_location: str) -> None:
    with Emulator() as emu:
        env = dict(
            os.environ,
            ASSETCACHE_DB=ledger_location,
            USEAPI_TOKEN=emu.token,
            ASSETCACHE_BASE_URL=emu.base_url,
        )
        path = write(tmp_path / "a.png", png(email))
        result = run_cli(["ref", str(path), "--email", email], env)
        assert result.returncode == 0, result.stderr
        assert [u.email for u in emu.uploads] == [email]


def test_token_appears_nowhere(tmp_path: Path) -> None:
    secret = "SeCrEt-token-0123456789-abcdef"
    db = tmp_path / "ledger" / "ledger.db"
    with Emulator(token=secret, accounts=[EMAIL]) as emu:
        env = dict(
            os.environ,
            ASSETCACHE_DB=str(db),
            USEAPI_TOKEN=secret,
            ASSETCACHE_BASE_URL=emu.base_url,
            ASSETCACHE_EMAIL=EMAIL,
        )
        path = write(tmp_path / "a.png", png("secret"))
        outputs = []
        commands = [
            ["ref", str(path)],
            ["upload", str(path), "--json", "--force"],
            ["ls"],
            ["audit"],
            ["refresh"],
            ["ref", str(tmp_path / "no.png")],
            ["upload", str(path), "--email", "nobody@x.com"],
        ]
        for args in commands:
            result = run_cli(["-vv", *args], env)  # the most verbose output there is
            outputs.append(result.stdout + result.stderr)
        bad_token = dict(env, USEAPI_TOKEN=secret + "-wrong")
        result = run_cli(["-vv", "upload", str(path), "--force"], bad_token)
        assert result.returncode == 5
        outputs.append(result.stdout + result.stderr)
    assert any("POST" in o for o in outputs)  # -v really logged requests
    for output in outputs:
        assert secret not in output
    for root, _dirs, files in os.walk(db.parent):
        for name in files:
            assert secret.encode() not in (Path(root) / name).read_bytes(), name
    assert db.stat().st_mode & 0o777 == 0o600


ARGS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "upload",
                "ref",
                "ls",
                "audit",
                "prune",
                "refresh",
                "path",
                "--email",
                "-e",
                "--json",
                "--csv",
                "--offline",
                "--force",
                "--dry-run",
                "--expired",
                "--min-remaining",
                "--expiring-within",
                "--older-than",
                "--jobs",
                "-",
                "-v",
                "3d",
                "0",
                "1d12h",
                "x@y.z",
                "nope",
                "/dev/null",
                "/dev/zero",
                ".",
                "-1",
                "99w",
            ]
        ),
        st.text(max_size=12),
    ),
    max_size=6,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=ARGS)
def test_fuzzed_arguments_never_crash(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "fuzz.db"), *args],
        env={
            "USEAPI_TOKEN": None,
            "ASSETCACHE_EMAIL": None,
            "ASSETCACHE_BASE_URL": "http://127.0.0.1:9",
        },
        input="",
    )
    assert result.exit_code in DOCUMENTED, (args, result.output)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        # Only a genuinely unusable ledger may exit 1 here; never an unexpected crash.
        assert "unexpected error" not in result.output, (args, result.output)


def test_unix_socket_is_refused(tmp_path: Path) -> None:
    sock_path = tmp_path / "s.png"
    env = dict(os.environ, ASSETCACHE_DB=str(tmp_path / "l.db"), ASSETCACHE_EMAIL=EMAIL)
    assert run_cli(["prune"], env).returncode == 0  # opens the ledger: a read of one that does not exist is an error
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        result = run_cli(["ref", str(sock_path), "--offline"], env)
    assert result.returncode == 4 and "Traceback" not in result.stderr



@pytest.mark.both_engines
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
