"""What the command line adds for a person at a terminal, through click's CliRunner (the real
terminal is tests/test_at_a_terminal.py's): -q, which bar each command draws and what it
counts, the retry notice, when colour is on, the time left capped at the retention, and
shell completion of file names."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result

from assetcache import RetryPolicy
from assetcache._retry import RETRY_LOGGER, RetryWait
from assetcache.cli import cli, terminal

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, png, write

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def run(luma: FakeLuma, clock: Clock, db: Path) -> Any:
    def invoke(
        *args: str, input: str | bytes | None = None, retry: RetryPolicy = FAST_RETRY
    ) -> Result:
        return CliRunner().invoke(
            cli,
            ["--db", str(db), *args],
            obj={"clock": clock, "transport": luma.transport, "retry": retry},
            env={"USEAPI_TOKEN": TOKEN, "ASSETCACHE_EMAIL": None, "NO_COLOR": None},
            input=input,
            catch_exceptions=False,
        )

    return invoke


class FakeBar:
    """Stands for the tqdm bar: records what a command asked of it."""

    made: ClassVar[list[FakeBar]] = []

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.steps = 0
        self.closed = False
        FakeBar.made.append(self)

    def advance(self, steps: int = 1, /) -> None:
        self.steps += steps

    def echo(self, line: str, *, err: bool = False) -> None:
        terminal.above_bar(line, err=err)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[FakeBar]:
    """Stderr is a terminal, and each bar drawn is recorded."""
    monkeypatch.setattr(terminal, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(terminal, "_Bar", FakeBar)
    FakeBar.made = []
    return FakeBar.made


def files(folder: Path, count: int) -> list[str]:
    return [str(write(folder / f"{i}.png", png(str(i)))) for i in range(count)]


# -- -q ------------------------------------------------------------------------------------------


def test_quiet_and_verbose_are_exclusive(run: Any) -> None:
    result = run("-q", "-v", "path")
    assert result.exit_code == 2
    assert "-q and -v are exclusive" in result.stderr


def test_quiet_upload_prints_errors_only(run: Any, tmp_path: Path, bars: list[FakeBar]) -> None:
    paths = [*files(tmp_path, 2), str(tmp_path / "missing.png")]
    result = run("-q", "upload", *paths, "--email", EMAIL)
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.startswith("assetcache: error: ") and len(result.stderr.splitlines()) == 1
    assert bars == []  # no bar either, though stderr is a terminal
    as_json = run("-q", "upload", *paths, "--email", EMAIL, "--json")  # data asked for stays
    assert as_json.exit_code == 4
    assert [("error" in json.loads(line)) for line in as_json.stdout.splitlines()] == [
        False,
        False,
        True,
    ]


def test_quiet_keeps_the_data_a_command_exists_to_print(run: Any, tmp_path: Path) -> None:
    (path,) = files(tmp_path, 1)
    ref = run("-q", "ref", path, "--email", EMAIL)
    assert ref.exit_code == 0 and ref.stdout.startswith("u1-")
    for command in (["ls"], ["audit"], ["export"], ["path"], ["ls", "--json"]):
        result = run("-q", *command)
        assert result.exit_code == 0 and result.stdout, command
    payload = json.dumps({"prompt": "p", "imageStart": path, "email": EMAIL})
    filled = run("-q", "fill", input=payload)
    assert filled.exit_code == 0 and json.loads(filled.stdout)["imageStart"].startswith("u1-")


def test_quiet_drops_summaries_and_per_file_lines(
    run: Any, tmp_path: Path, clock: Clock, luma: FakeLuma
) -> None:
    paths = files(tmp_path, 2)
    run("upload", *paths, "--email", EMAIL)
    exported = run("export").stdout
    clock.advance(timedelta(days=28))
    refreshed = run("-q", "refresh")
    assert (refreshed.exit_code, refreshed.stdout, refreshed.stderr) == (0, "", "")
    assert luma.uploads == 4
    forgot = run("-q", "forget", paths[0], "--email", EMAIL)
    assert (forgot.exit_code, forgot.stdout, forgot.stderr) == (0, "", "")
    report = tmp_path / "r.html"
    wrote = run("-q", "report", "-o", str(report))
    assert (wrote.exit_code, wrote.stdout) == (0, "") and report.exists()
    clock.advance(timedelta(days=40))
    pruned = run("-q", "prune")
    assert (pruned.exit_code, pruned.stdout, pruned.stderr) == (0, "", "")
    assert run("ls", "--json").stdout.strip() == "[]"
    empty = run("-q", "ls")
    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "")  # no "no entries"
    imported = run("-q", "import", input=exported)
    assert (imported.exit_code, imported.stdout, imported.stderr) == (0, "", "")


def test_quiet_refresh_says_its_failures_as_errors(
    run: Any, tmp_path: Path, clock: Clock, luma: FakeLuma
) -> None:
    run("upload", *files(tmp_path, 1), "--email", EMAIL)
    clock.advance(timedelta(days=28))
    luma.script = [401]
    result = run("-q", "refresh")
    assert result.exit_code == 5
    assert result.stdout == ""
    assert result.stderr.startswith("assetcache: error: cannot refresh ")


# -- which bar each command draws, and what it counts ---------------------------------------------


def test_upload_counts_files_on_a_bar(run: Any, tmp_path: Path, bars: list[FakeBar]) -> None:
    result = run("upload", *files(tmp_path, 3), "--email", EMAIL)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3
    ((bar),) = bars
    assert (bar.label, bar.total, bar.unit, bar.steps, bar.closed) == (
        "resolving",
        3,
        "file",
        3,
        True,
    )
    run("upload", *files(tmp_path, 1), "--email", EMAIL)
    assert len(bars) == 1  # one file: nothing to wait for


def test_fill_and_refresh_count_the_images_they_resolve(
    run: Any, tmp_path: Path, clock: Clock, bars: list[FakeBar]
) -> None:
    paths = files(tmp_path, 3)
    lines = [json.dumps({"imageStart": p, "imageEnd": paths[2], "email": EMAIL}) for p in paths[:2]]
    assert run("fill", input="\n".join(lines)).exit_code == 0
    (fill,) = bars
    assert (fill.label, fill.total, fill.unit, fill.steps) == (
        "resolving",
        None,
        "image",
        4,
    )  # a field each
    clock.advance(timedelta(days=28))
    assert run("refresh", "--dry-run").exit_code == 0
    assert len(bars) == 1  # a dry run uploads nothing
    refreshed = run("refresh")
    assert refreshed.exit_code == 0 and "refreshed 3, cannot refresh 0" in refreshed.stdout
    assert (bars[1].label, bars[1].unit, bars[1].steps) == ("re-uploading", "ref", 3)


def test_prune_export_and_import_count_rows_and_bytes(
    run: Any, tmp_path: Path, clock: Clock, bars: list[FakeBar]
) -> None:
    run("upload", *files(tmp_path, 4), "--email", EMAIL)
    assert run("export").exit_code == 0  # CliRunner's stdout is not a terminal: a bar
    assert _drawn(bars[1]) == ("exporting", None, "row", 4)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(run("export").stdout)
    imported = run("import", str(rows))
    assert imported.exit_code == 0
    assert imported.stdout == "added 0, revoked 0, skipped 4 already present\n"
    size = rows.stat().st_size
    assert _drawn(bars[3]) == ("importing", size, "B", size)  # a regular file: its bytes
    assert run("import", input=rows.read_text()).exit_code == 0
    assert _drawn(bars[4]) == ("importing", None, "line", 4)  # a pipe: lines, no end known
    clock.advance(timedelta(days=31))
    pruned = run("prune")
    assert pruned.exit_code == 0 and pruned.stdout.endswith("removed 4 entries\n")
    assert _drawn(bars[5]) == ("pruning", None, "row", 4)


def _drawn(bar: FakeBar) -> tuple[str, int | None, str, int]:
    return bar.label, bar.total, bar.unit, bar.steps


def test_export_to_a_terminal_draws_no_bar(
    run: Any, tmp_path: Path, bars: list[FakeBar], monkeypatch: pytest.MonkeyPatch
) -> None:
    run("upload", *files(tmp_path, 2), "--email", EMAIL)
    monkeypatch.setattr("assetcache.cli.commands.move._elsewhere", lambda: False)
    result = run("export")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    assert [bar.label for bar in bars] == ["resolving"]


def test_the_real_bar_draws_on_stderr_only(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminal, "stderr_is_terminal", lambda: True)
    result = run("upload", *files(tmp_path, 3), "--email", EMAIL)
    assert result.exit_code == 0
    assert "resolving" in result.stderr
    assert len(result.stdout.splitlines()) == 3  # the bar never mixes into stdout


# -- the retry notice ---------------------------------------------------------------------------

NO_WAIT = RetryPolicy(attempts=4, max_elapsed=30, initial=0, max_backoff=0, jitter=0)


def test_each_wait_is_said_on_a_terminal(
    run: Any, tmp_path: Path, luma: FakeLuma, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminal, "stderr_is_terminal", lambda: True)
    luma.script = [503, (429, {"Retry-After": "0"}, b"")]
    (path,) = files(tmp_path, 1)
    result = run("upload", path, "--email", EMAIL, retry=NO_WAIT)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "waiting under 1 s for api.useapi.net: HTTP 503 (try 2 of 4)",
        "waiting under 1 s for api.useapi.net: rate limited (HTTP 429) (try 3 of 4)",
    ]
    assert logging.getLogger(RETRY_LOGGER).handlers == []  # the listener ends with the command
    assert logging.getLogger(RETRY_LOGGER).level == logging.NOTSET


@pytest.mark.parametrize("terminal_there", [False, True])
def test_no_notice_on_a_pipe_nor_with_quiet(
    run: Any, tmp_path: Path, luma: FakeLuma, monkeypatch: pytest.MonkeyPatch, terminal_there: bool
) -> None:
    monkeypatch.setattr(terminal, "stderr_is_terminal", lambda: terminal_there)
    luma.script = [503]
    (path,) = files(tmp_path, 1)
    args = ["-q"] if terminal_there else []
    result = run(*args, "upload", path, "--email", EMAIL, retry=NO_WAIT)
    assert result.exit_code == 0 and result.stderr == ""


def _record(wait: RetryWait) -> logging.LogRecord:
    record = logging.LogRecord(RETRY_LOGGER, logging.INFO, __file__, 1, "waiting", None, None)
    record.retry_wait = wait
    return record


def test_uploads_waiting_together_are_announced_once_per_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said: list[str] = []
    notices = terminal._RetryNotices(said.append)
    now = [100.0]
    monkeypatch.setattr(terminal.time, "monotonic", lambda: now[0])
    first = RetryWait("api.useapi.net", "connection refused", 4.2, 3, 6)
    for _ in range(4):  # four uploads in flight fail at once
        notices.handle(_record(first))
    notices.handle(_record(RetryWait("other.host", "HTTP 502", 4, 2, 6)))  # another server
    now[0] += 4.3  # that wait is over: the next one is news
    notices.handle(_record(RetryWait("api.useapi.net", "connection refused", 8, 4, 6)))
    assert said == [
        "waiting 4 s for api.useapi.net: connection refused (try 3 of 6)",
        "waiting 4 s for other.host: HTTP 502 (try 2 of 6)",
        "waiting 8 s for api.useapi.net: connection refused (try 4 of 6)",
    ]


# -- colour, and the time left -----------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(
    ("tty", "env", "coloured"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"NO_COLOR": ""}, True),  # no-color.org: set and not empty
        (True, {"TERM": "dumb"}, False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(
    tty: bool, env: dict[str, str], coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert terminal.colour_on(_Stream(tty)) is coloured


class _RunningBackwards(Clock):
    """Each reading an hour earlier: a batch's "now" read before its uploads, at its worst."""

    def __call__(self) -> Any:
        self.now -= timedelta(hours=1)
        return self.now


def test_upload_never_shows_more_left_than_the_retention(
    luma: FakeLuma, db: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", str(db), "upload", *files(tmp_path, 3), "--email", EMAIL],
        obj={"clock": _RunningBackwards(), "transport": luma.transport, "retry": FAST_RETRY},
        env={"USEAPI_TOKEN": TOKEN},
    )
    assert result.exit_code == 0
    assert [line.split("  ")[2] for line in result.stdout.splitlines()] == ["30d left"] * 3


# -- shell completion -----------------------------------------------------------------------------


def _complete(words: str, shell: str = "bash") -> str:
    env = {"_ASSETCACHE_COMPLETE": f"{shell}_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    return CliRunner().invoke(cli, [], prog_name="assetcache", env=env).output


@pytest.mark.parametrize(
    "words",
    [
        "assetcache upload fr",
        "assetcache upload a.png fr",
        "assetcache ref fr",
        "assetcache forget fr",
        "assetcache fill fr",
        "assetcache import fr",
        "assetcache report -o fr",
        "assetcache --db fr",
    ],
)
def test_file_arguments_complete_as_file_names(words: str) -> None:
    assert _complete(words) == "file,fr\n"
    assert _complete(words, "zsh") == "file\nfr\n_\n"


def test_options_and_commands_still_complete() -> None:
    assert "plain,upload" in _complete("assetcache up")
    assert "plain,--email" in _complete("assetcache upload --em")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_scripts_the_readme_names_come_from_the_console_script(shell: str) -> None:
    """``_ASSETCACHE_COMPLETE=bash_source assetcache`` goes past the fast path to click."""
    done = subprocess.run(
        [sys.executable, "-c", "from assetcache._entry import main; main()"],
        env={**os.environ, "PYTHONPATH": ROOT, "_ASSETCACHE_COMPLETE": f"{shell}_source"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "_ASSETCACHE_COMPLETE" in done.stdout and f"{shell}_complete" in done.stdout
    readme = Path(ROOT, "README.md").read_text()
    assert f"_ASSETCACHE_COMPLETE={shell}_source assetcache" in readme


def test_no_terminal_no_tqdm(tmp_path: Path) -> None:
    """A batch whose stderr is a pipe draws no bar, and never imports tqdm."""
    with_emulator = (
        "import sys\n"
        "from assetcache import Emulator\n"
        "from assetcache.cli import main\n"
        "with Emulator() as emu:\n"
        "    sys.argv = ['assetcache', '--db', sys.argv[1], 'upload', *sys.argv[2:], '-e', 'a@b.c']\n"
        "    import os; os.environ.update(ASSETCACHE_BASE_URL=emu.base_url, USEAPI_TOKEN=emu.token)\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as end:\n"
        "        print('tqdm' in sys.modules, end.code, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", with_emulator, str(tmp_path / "l.db"), *files(tmp_path, 3)],
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stderr.splitlines()[-1] == "False 0", done.stderr
    assert len(done.stdout.splitlines()) == 3
