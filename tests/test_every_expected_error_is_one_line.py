"""Every expected error is one line on stderr, ``assetcache: error: …``, with its documented exit
code and nothing on stdout: click's usage errors, ledger errors, forget's miss, -o paths that
cannot be written, malformed input; and each in the command line's words, never Python's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import EMAIL, FakeLuma, png, write

ROOT = Path(__file__).resolve().parent.parent
HINT_DB = "; the ledger is chosen by --db or ASSETCACHE_DB"
NO_TOKEN = (
    "assetcache: error: an upload is needed but no API token is set; set USEAPI_TOKEN to your "
    "useapi.net API token (it is at https://useapi.net)\n"
)


def _one_line(result: Any, code: int, line: str) -> None:
    assert (result.exit_code, result.stderr, result.stdout) == (code, line, "")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--zzz"], "no such option '--zzz' (see 'assetcache --help')"),
        (["nope"], "no such command 'nope' (see 'assetcache --help')"),
        (["ref"], "missing argument 'FILE...' (see 'assetcache ref --help')"),
        (
            ["ref", "a.png"],
            "no account email: pass --email or set ASSETCACHE_EMAIL (see 'assetcache ref --help')",
        ),
        (["ls", "--json", "--csv"], "--json and --csv are exclusive (see 'assetcache ls --help')"),
        (
            ["upload", "a.png", "-e", EMAIL, "--jobs", "0"],
            "invalid value for '--jobs' / '-j': 0 is not in the range 1<=x<=64 "
            "(see 'assetcache upload --help')",
        ),
        (
            ["ls", "--expiring-within", "3x"],
            "invalid value for '--expiring-within': '3x' is not a duration: use a number and a "
            "unit (s, m, h, d, w), e.g. 90s, 45m, 12h, 3d, 2w or 1d12h "
            "(see 'assetcache ls --help')",
        ),
        (["forget"], "name a FILE or a --ref to forget (see 'assetcache forget --help')"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    run: Callable[..., Any], args: list[str], line: str
) -> None:
    _one_line(run(*args), 2, f"assetcache: error: {line}\n")


def test_no_arguments_at_all_still_show_the_help() -> None:
    from click.testing import CliRunner

    from assetcache.cli import cli

    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2 and result.output.startswith("Usage: assetcache")


def test_through_the_console_script_too(tmp_path: Path) -> None:
    """The installed entry point (``_entry.main``, then click's main) prints the same line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "USEAPI_TOKEN": ""}
    code = "import sys; from assetcache._entry import main; sys.argv[0] = 'assetcache'; main()"
    usage = subprocess.run(
        [sys.executable, "-c", code, "ref", "--zzz", "a.png"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert (usage.returncode, usage.stdout) == (2, "")
    assert usage.stderr == "assetcache: error: no such option '--zzz' (see 'assetcache ref --help')\n"
    (tmp_path / "notes.db").write_text("my notes\n")
    ledger = subprocess.run(
        [sys.executable, "-c", code, "--db", str(tmp_path / "notes.db"), "ls"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert (ledger.returncode, ledger.stdout, ledger.stderr.count("\n")) == (1, "", 1)
    assert ledger.stderr.startswith(f"assetcache: error: ledger {tmp_path / 'notes.db'}: ")
    assert ledger.stderr.endswith(f"{HINT_DB}\n")


def test_a_ledger_error_is_one_line_naming_the_option(run: Callable[..., Any]) -> None:
    _one_line(
        run("--db", "mysql://me:secret@db.example.com/assets", "ls"),
        1,
        "assetcache: error: unsupported ledger URL scheme 'mysql': a ledger is a file path, a "
        "sqlite:/// URL (SQLite on this machine) or a postgresql:// URL (a ledger shared by "
        f"machines){HINT_DB}\n",
    )


def test_forgets_miss_is_an_error_line_with_exit_3(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    path = write(tmp_path / "a.png", png("a"))
    _one_line(
        run("forget", str(path), "-e", EMAIL),
        3,
        f"assetcache: error: no live ref to forget for {path}\n",
    )


@pytest.mark.parametrize("command", ["report", "fill"])
def test_an_output_path_that_cannot_be_written_is_a_usage_error_before_any_work(
    run: Callable[..., Any], luma: FakeLuma, tmp_path: Path, command: str
) -> None:
    write(tmp_path / "a.png", png("a"))
    target = tmp_path / "missing-dir" / "out"
    args = [command, "-o", str(target)]
    if command == "fill":
        args += [str(tmp_path / "job.json"), "-e", EMAIL]
        (tmp_path / "job.json").write_text('{"imageStart": "a.png"}')
    _one_line(
        run(*args),
        2,
        f"assetcache: error: invalid value for '--output' / '-o': cannot write {target}: there "
        f"is no folder {target.parent} (see 'assetcache {command} --help')\n",
    )
    assert luma.uploads == 0 and not target.parent.exists()
    folder = run(*[str(tmp_path) if arg == str(target) else arg for arg in args])
    assert folder.exit_code == 2 and f"cannot write {tmp_path}: it is a folder" in folder.stderr


def test_a_command_that_fails_leaves_no_output_file(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    """The file is opened only once there is something to write."""
    target = tmp_path / "r.html"
    result = run("--db", "mysql://me@db.example.com/assets", "report", "-o", str(target))
    assert result.exit_code == 1 and not target.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["report", "fill"])
def test_an_output_that_fails_while_written_is_one_line_and_exit_1(
    run: Callable[..., Any], command: str
) -> None:
    """A full disk: the last buffer fails as the file is closed, which click would swallow."""
    payload = '{"imageStart": "https://example.com/a.png", "email": "me@example.com"}'
    run("prune")  # opens the ledger: a read of one that does not exist is an error
    result = run(command, "-o", "/dev/full", input=payload if command == "fill" else None)
    _one_line(result, 1, "assetcache: error: cannot write /dev/full: No space left on device\n")


def test_report_to_stdout(run: Callable[..., Any], tmp_path: Path) -> None:
    run("ref", str(write(tmp_path / "a.png", png("a"))), "-e", EMAIL)
    result = run("report", "-o", "-")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("<!DOCTYPE html>") and "wrote" not in result.stdout
    assert not (Path.cwd() / "-").exists()
    to_file = run("report", "-o", str(tmp_path / "r.html"))
    assert to_file.stdout == f"wrote {tmp_path / 'r.html'}\n"


def test_malformed_input_is_exit_2_without_pointing_at_help(run: Callable[..., Any]) -> None:
    _one_line(
        run("import", "-", input="{oops\n"),
        2,
        "assetcache: error: line 1 of the input is not JSON; nothing was imported\n",
    )
    _one_line(
        run("fill", "-", "-e", EMAIL, input='{"a": 1}\n{oops\n'),
        2,
        "assetcache: error: line 2 of the payload is not JSON\n",
    )


# -- the command line's words, never Python's --------------------------------------------------


def test_no_token_names_the_variable_not_a_parameter(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    path = write(tmp_path / "a.png", png("a"))
    _one_line(run("ref", str(path), "-e", EMAIL, USEAPI_TOKEN=None), 5, NO_TOKEN)
    spaced = run("ref", str(path), "-e", EMAIL, USEAPI_TOKEN="two words")
    assert spaced.exit_code == 5 and "token=" not in spaced.stderr
    assert spaced.stderr == (
        "assetcache: error: the API token contains spaces, control or non-ASCII characters, "
        "which no API token has; set USEAPI_TOKEN to your useapi.net API token "
        "(it is at https://useapi.net)\n"
    )


def test_a_rejected_token_names_the_variable(
    run: Callable[..., Any], luma: FakeLuma, tmp_path: Path
) -> None:
    luma.script = [401]
    result = run("ref", str(write(tmp_path / "a.png", png("a"))), "-e", EMAIL)
    _one_line(
        result,
        5,
        "assetcache: error: useapi.net rejected the API token (HTTP 401): scripted 401; set "
        "USEAPI_TOKEN to your useapi.net API token (it is at https://useapi.net)\n",
    )


def test_batch_errors_speak_cli_too(run: Callable[..., Any], tmp_path: Path) -> None:
    import json

    path = write(tmp_path / "a.png", png("a"))
    uploaded = run("upload", str(path), "-e", EMAIL, "--json", USEAPI_TOKEN=None)
    assert uploaded.exit_code == 5
    assert json.loads(uploaded.stdout)["error"] == NO_TOKEN.removeprefix("assetcache: error: ")[:-1]
    several = run("ref", str(path), str(path), "-e", EMAIL, USEAPI_TOKEN=None)
    assert several.exit_code == 5 and several.stdout == "\n\n"
    assert several.stderr == NO_TOKEN * 2
    filled = run("fill", "-", input='{"imageStart": "https://example.com/a.png"}')
    _one_line(
        filled,
        2,
        "assetcache: error: the payload: no account email given; pass --email or set "
        "ASSETCACHE_EMAIL\n",
    )


def test_a_failed_refresh_speaks_cli(
    run: Callable[..., Any], tmp_path: Path, clock: Any
) -> None:
    from datetime import timedelta

    path = write(tmp_path / "a.png", png("a"))
    run("ref", str(path), "-e", EMAIL)
    clock.advance(timedelta(days=28))
    result = run("refresh", USEAPI_TOKEN=None)
    assert result.exit_code == 5
    assert f"cannot refresh  {path}: upload failed: an upload is needed but no API token is " in (
        result.stdout
    )
    assert "USEAPI_TOKEN to your useapi.net API token" in result.stdout
    assert "token=" not in result.stdout + result.stderr
