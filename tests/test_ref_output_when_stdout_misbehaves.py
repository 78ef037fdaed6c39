"""`assetcache ref` whose stdout is closed, whose reader went away (`| head -0`), or whose
stdout encoding cannot spell the ref: the fast path and the click CLI end the same way, with
no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assetcache import AssetCache

from .conftest import EMAIL, TOKEN, FakeLuma, png, write

ROOT = str(Path(__file__).resolve().parent.parent)
#: The console script as installed (fast path first), and the click CLI alone.
FAST = [sys.executable, "-m", "assetcache"]
CLICK = [sys.executable, "-c", "import sys; from assetcache.cli import main; main()"]


@pytest.fixture
def hit(tmp_path: Path, luma: FakeLuma) -> tuple[dict[str, str], Path]:
    """The environment and file of a `ref` that hits."""
    db = tmp_path / "l.db"
    path = write(tmp_path / "a.png", png("closed"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        cache.resolve(path, email=EMAIL)
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    env.update(ASSETCACHE_DB=str(db), ASSETCACHE_EMAIL=EMAIL, PYTHONPATH=ROOT)
    return env, path


def _into_closed_pipe(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write fails (EPIPE)
    try:
        result = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, env=env)
    finally:
        os.close(write_end)
    return result.returncode, result.stderr.decode()


def _with_stdout_closed(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    shell = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
    result = subprocess.run(shell, capture_output=True, env=env)
    assert result.stdout == b""
    return result.returncode, result.stderr.decode()


def test_a_broken_pipe_ends_both_paths_quietly_with_exit_1(
    hit: tuple[dict[str, str], Path],
) -> None:
    env, path = hit
    for command in (FAST, CLICK):
        assert _into_closed_pipe([*command, "ref", str(path)], env) == (1, ""), command


def test_a_closed_stdout_is_answered_as_the_click_cli_answers_it(
    hit: tuple[dict[str, str], Path],
) -> None:
    env, path = hit
    fast = _with_stdout_closed([*FAST, "ref", str(path)], env)
    assert "Traceback" not in fast[1]
    assert fast == _with_stdout_closed([*CLICK, "ref", str(path)], env)


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "utf-8"])
def test_a_ref_naming_an_accented_account_prints_as_the_click_cli_prints_it(
    tmp_path: Path, luma: FakeLuma, encoding: str
) -> None:
    email = "josé@example.com"
    db = tmp_path / "l.db"
    path = write(tmp_path / "a.png", png("accent"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        ref = cache.resolve(path, email=email).asset_ref
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    env.update(ASSETCACHE_DB=str(db), PYTHONPATH=ROOT, PYTHONIOENCODING=encoding)
    results = [
        subprocess.run([*command, "ref", str(path), "-e", email], capture_output=True, env=env)
        for command in (FAST, CLICK)
    ]
    fast, click = ((r.returncode, r.stdout, r.stderr) for r in results)
    assert fast == click
    assert fast[0] == 0 and ref.encode("latin-1" if encoding == "latin-1" else "utf-8") in fast[1]
