"""The command line as a person at a terminal meets it: ``python -m assetcache`` runs in a real
pseudo-terminal against the emulator, and what it wrote is played on a VT100 screen (pyte),
so the assertions are about what the person sees: results on their own lines, the progress bar
gone once done and never glued to a result, colour only on a terminal and never with NO_COLOR,
the retry notice, and ``-q``."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyte
import pytest

from assetcache import AssetCache, Emulator

from .conftest import EMAIL, png, write

ROOT = str(Path(__file__).resolve().parent.parent)
COLUMNS, LINES = 400, 80
RESULT = re.compile(
    r"u\d+-email:me@example\.com-image:[0-9a-f-]{36}  (uploaded|reused)  30d left  "
)

pytestmark = pytest.mark.slow


@dataclass
class Run:
    """What a command left: its exit code, every byte it wrote to the terminal, and the
    screen a person sees at the end (lines with trailing blanks removed, empty ones dropped)."""

    code: int
    raw: bytes
    screen: pyte.Screen

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display if line.strip()]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(accounts=[EMAIL], latency=0.15) as emu:
        yield emu


def environment(emu: Emulator | None, db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env.update(PYTHONPATH=ROOT, TERM="xterm-256color", ASSETCACHE_DB=str(db))
    if emu is not None:
        env.update(ASSETCACHE_BASE_URL=emu.base_url, USEAPI_TOKEN=emu.token)
    env.update(extra)
    return env


def at_a_terminal(
    args: Sequence[str],
    env: dict[str, str],
    *,
    stdout: int | None = None,
    until: bytes | None = None,
    timeout: float = 60,
) -> Run:
    """Run ``python -m assetcache ARGS`` with a pseudo-terminal as stdin, stderr and (unless
    ``stdout`` says otherwise) stdout; read everything it writes, or up to ``until`` and a
    fifth of a second more (then the command is stopped, and its exit code is -1)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "assetcache", *args],
        stdin=slave,
        stdout=slave if stdout is None else stdout,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    raw = _read_all(master, process, until, time.monotonic() + timeout)
    os.close(master)
    if until is not None and process.poll() is None:
        process.kill()
        process.wait()
        code = -1
    else:
        code = process.wait(timeout=timeout)
    screen = pyte.Screen(COLUMNS, LINES)
    pyte.ByteStream(screen).feed(raw)
    return Run(code, raw, screen)


def _read_all(
    master: int, process: subprocess.Popen[bytes], until: bytes | None, end: float
) -> bytes:
    raw = b""
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            if process.poll() is not None and not select.select([master], [], [], 0.2)[0]:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        raw += chunk
        if until is not None and until in raw:
            settled = time.monotonic() + 0.2  # what it writes right after (a bar's redraw)
            while select.select([master], [], [], max(0.0, settled - time.monotonic()))[0]:
                raw += os.read(master, 65536)
            break
    else:
        process.kill()
        pytest.fail(f"the command did not end in time; it wrote {raw[-2000:]!r}")
    return raw


def images(folder: Path, count: int) -> list[str]:
    return [str(write(folder / f"frame_{i:03}.png", png(f"frame {i}"))) for i in range(count)]


# -- upload: results above the bar ---------------------------------------------------------------


def test_upload_prints_each_result_on_its_own_line_above_the_bar(
    tmp_path: Path, emulator: Emulator
) -> None:
    files = images(tmp_path, 6)
    run = at_a_terminal(
        ["upload", *files, "-e", EMAIL, "--jobs", "2"], environment(emulator, tmp_path / "l.db")
    )
    assert run.code == 0, run.raw
    assert b"resolving" in run.raw  # the bar was drawn while the uploads ran...
    assert len(run.lines) == len(files), run.lines  # ...and is gone: only the results stay
    for line, path in zip(run.lines, files, strict=True):
        assert RESULT.match(line), line  # nothing glued before it
        assert line.endswith(f"  {path}"), line  # nor after it


def test_upload_bar_redraws_below_each_result(tmp_path: Path) -> None:
    """While it runs, the bar is the last line: every result lands above it (stopped after the
    third result, the screen shows three results and then the bar)."""
    files = images(tmp_path, 6)
    with Emulator(accounts=[EMAIL], latency=0.6) as slow:  # no result within the settling
        env = environment(slow, tmp_path / "l.db")
        run = at_a_terminal(
            ["upload", *files, "-e", EMAIL, "--jobs", "1"], env, until=b"frame_002.png"
        )
    lines = run.lines
    assert [RESULT.match(line) is not None for line in lines[:-1]] == [True] * (len(lines) - 1)
    assert len(lines) >= 3 and lines[-1].startswith("resolving:"), lines


def test_upload_to_a_pipe_draws_no_bar_and_no_colour(tmp_path: Path, emulator: Emulator) -> None:
    files = images(tmp_path, 3)
    env = environment(emulator, tmp_path / "l.db")
    done = subprocess.run(
        [sys.executable, "-m", "assetcache", "upload", *files, "-e", EMAIL],
        capture_output=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0
    assert done.stderr == b""
    assert [RESULT.match(line) is not None for line in done.stdout.decode().splitlines()] == [
        True
    ] * 3


def test_upload_quiet_shows_nothing_but_errors(tmp_path: Path, emulator: Emulator) -> None:
    files = [*images(tmp_path, 2), str(tmp_path / "missing.png")]
    run = at_a_terminal(
        ["-q", "upload", *files, "-e", EMAIL], environment(emulator, tmp_path / "l.db")
    )
    assert run.code == 4
    assert b"resolving" not in run.raw
    assert run.lines[0].startswith("assetcache: error: "), run.lines  # (it may wrap)
    assert "missing.png" in "".join(run.lines)
    assert not any(RESULT.match(line) for line in run.lines)


# -- the retry notice ----------------------------------------------------------------------------


def test_a_retried_upload_says_when_the_next_try_is(tmp_path: Path, emulator: Emulator) -> None:
    emulator.fail_next(429, retry_after=2)
    (path,) = images(tmp_path, 1)
    run = at_a_terminal(["upload", path, "-e", EMAIL], environment(emulator, tmp_path / "l.db"))
    assert run.code == 0, run.raw
    notice = "waiting 2 s for 127.0.0.1: rate limited (HTTP 429) (try 2 of 6)"
    assert run.lines[0] == notice
    assert RESULT.match(run.lines[1]) and len(run.lines) == 2, run.lines


def test_a_server_that_refuses_connections_is_announced_at_once(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (path,) = images(tmp_path, 1)
    env = environment(
        None, tmp_path / "l.db", ASSETCACHE_BASE_URL=f"http://127.0.0.1:{port}", USEAPI_TOKEN="t"
    )
    started = time.monotonic()
    run = at_a_terminal(["upload", path, "-e", EMAIL], env, until=b"(try 2 of 6)")
    assert time.monotonic() - started < 20  # not 35 s of silence
    assert re.fullmatch(
        r"waiting [12] s for 127\.0\.0\.1: connection refused \(try 2 of 6\)", run.lines[-1]
    ), run.lines


def test_a_retried_upload_is_quiet_with_q_and_on_a_pipe(tmp_path: Path, emulator: Emulator) -> None:
    emulator.fail_next(429, 429, retry_after=0.5)
    paths = images(tmp_path, 2)
    quiet = at_a_terminal(
        ["-q", "upload", paths[0], "-e", EMAIL], environment(emulator, tmp_path / "l.db")
    )
    assert quiet.code == 0 and quiet.lines == []
    piped = subprocess.run(
        [sys.executable, "-m", "assetcache", "upload", paths[1], "-e", EMAIL],
        capture_output=True,
        env=environment(emulator, tmp_path / "l.db"),
        check=False,
    )
    assert piped.returncode == 0 and piped.stderr == b""
    assert emulator.status_counts()[429] == 2


# -- colour --------------------------------------------------------------------------------------


@pytest.fixture
def ledger_of_every_status(tmp_path: Path, emulator: Emulator) -> Path:
    """One ref of each status: live, live expiring within 24 h, expired, revoked, recorded
    in the future (the clock ran ahead)."""
    db = tmp_path / "l.db"
    now = datetime.now(UTC)
    ages = {
        "live": timedelta(days=1),
        "soon": timedelta(days=29, hours=12),
        "expired": timedelta(days=31),
        "revoked": timedelta(days=2),
        "future": -timedelta(days=3),
    }
    for name, age in ages.items():
        path = write(tmp_path / f"{name}.png", png(name))
        cache = AssetCache(
            token=emulator.token, base_url=emulator.base_url, db=db, clock=lambda age=age: now - age
        )
        with cache:
            cache.resolve(path, email=EMAIL)
            if name == "revoked":
                cache.forget(path)
    return db


def _colours_by_status(run: Run) -> dict[str, set[str]]:
    """For each row of ls's table, the colours of its STATUS cell, keyed by its source file."""
    colours: dict[str, set[str]] = {}
    header = next(y for y, line in enumerate(run.screen.display) if line.startswith("REF"))
    status_at = run.screen.display[header].index("STATUS")
    for y in range(header + 1, LINES):
        line = run.screen.display[y]
        match = re.search(r"/(\w+)\.png", line)
        if match:
            row = run.screen.buffer[y]
            colours[match.group(1)] = {row[x].fg for x in range(status_at, status_at + 7)}
    return colours


def test_ls_colours_statuses_at_a_terminal(tmp_path: Path, ledger_of_every_status: Path) -> None:
    run = at_a_terminal(["ls"], environment(None, ledger_of_every_status))
    assert run.code == 0, run.raw
    colours = _colours_by_status(run)
    assert colours == {
        "live": {"default"},
        "soon": {"brown", "default"},  # pyte calls ANSI yellow "brown"; "live" is 4 of 7 cells
        "expired": {"red"},
        "revoked": {"magenta"},
        "future": {"brown"},  # FUTURE(clock)
    }


def test_no_color_and_pipes_get_no_colour(tmp_path: Path, ledger_of_every_status: Path) -> None:
    env = environment(None, ledger_of_every_status)
    run = at_a_terminal(["ls"], {**env, "NO_COLOR": "1"})
    assert run.code == 0 and b"\x1b[3" not in run.raw
    assert {fg for colours in _colours_by_status(run).values() for fg in colours} == {"default"}
    audit = at_a_terminal(["audit"], {**env, "NO_COLOR": "1"})
    assert audit.code == 0 and b"\x1b[3" not in audit.raw
    for command in (["ls"], ["audit"]):
        piped = subprocess.run(
            [sys.executable, "-m", "assetcache", *command],
            capture_output=True,
            env=env,
            check=False,
        )
        assert piped.returncode == 0 and b"\x1b" not in piped.stdout
    assert b"\x1b[3" in at_a_terminal(["audit"], env).raw  # while a terminal gets it


def test_audit_colours_what_needs_attention(tmp_path: Path, ledger_of_every_status: Path) -> None:
    run = at_a_terminal(["audit"], environment(None, ledger_of_every_status))
    assert run.code == 0
    (y, line) = next((y, line) for y, line in enumerate(run.screen.display) if "expired" in line)
    row = run.screen.buffer[y]

    def colour_of(words: str) -> str:
        return row[line.index(words)].fg

    assert colour_of("1 expiring within 24h") == "brown"
    assert colour_of("1 expired") == "red"
    assert colour_of("1 revoked") == "magenta"
    assert colour_of("1 recorded in the future") == "brown"


# -- progress wherever a person waits --------------------------------------------------------------


def _filled_ledger(tmp_path: Path, emulator: Emulator, rows: int, *, age: timedelta) -> Path:
    db = tmp_path / "l.db"
    paths = images(tmp_path, rows)
    when = datetime.now(UTC) - age
    with AssetCache(
        token=emulator.token, base_url=emulator.base_url, db=db, clock=lambda: when
    ) as cache:
        cache.resolve_many(paths, email=EMAIL, jobs=8)
    return db


def test_prune_shows_a_bar_and_prints_rows_above_it(tmp_path: Path) -> None:
    with Emulator(accounts=[EMAIL]) as emu:
        db = _filled_ledger(tmp_path, emu, 40, age=timedelta(days=31))
    run = at_a_terminal(["prune"], environment(None, db))
    assert run.code == 0
    assert b"pruning" in run.raw
    assert run.lines[-1] == "removed 40 entries"
    assert all(
        re.match(r"u\d+-email:\S+  me@example\.com  uploaded 31d ago  /", line)
        for line in run.lines[:-1]
    )
    assert len(run.lines) == 41
    quiet = at_a_terminal(["-q", "prune"], environment(None, db))
    assert quiet.code == 0 and quiet.lines == [] and b"pruning" not in quiet.raw


def test_export_shows_a_bar_while_its_rows_go_to_a_file_and_import_reads_it_with_one(
    tmp_path: Path,
) -> None:
    with Emulator(accounts=[EMAIL]) as emu:
        db = _filled_ledger(tmp_path, emu, 30, age=timedelta(days=1))
    exported = tmp_path / "rows.jsonl"
    with exported.open("wb") as out:
        run = at_a_terminal(["export"], environment(None, db), stdout=out.fileno())
    assert run.code == 0 and b"exporting" in run.raw and run.lines == []
    assert len(exported.read_text().splitlines()) == 30
    to_screen = at_a_terminal(["export"], environment(None, db))  # rows scroll: no bar
    assert b"exporting" not in to_screen.raw
    rows = [json.loads(line) for line in to_screen.raw.decode().splitlines()]  # lines wrap
    assert [row["email"] for row in rows] == [EMAIL] * 30
    other = tmp_path / "other.db"
    run = at_a_terminal(["import", str(exported)], environment(None, other))
    assert run.code == 0 and b"importing" in run.raw
    assert run.lines == ["added 30, revoked 0, skipped 0 already present"]
    quiet = at_a_terminal(["-q", "import", str(exported)], environment(None, other))
    assert quiet.code == 0 and quiet.lines == [] and b"importing" not in quiet.raw


def test_refresh_and_fill_show_a_bar_while_they_upload(tmp_path: Path, emulator: Emulator) -> None:
    db = _filled_ledger(tmp_path, emulator, 3, age=timedelta(days=28))
    run = at_a_terminal(["refresh"], environment(emulator, db))
    assert run.code == 0, run.raw
    assert b"re-uploading" in run.raw
    assert run.lines[-1] == "refreshed 3, cannot refresh 0"
    assert all(line.startswith("refreshed  /") for line in run.lines[:-1]) and len(run.lines) == 4
    payload = tmp_path / "job.json"
    payload.write_text(json.dumps({"prompt": "p", "imageStart": "frame_000.png", "email": EMAIL}))
    filled = at_a_terminal(["fill", str(payload)], environment(emulator, db))
    assert filled.code == 0, filled.raw
    assert b"resolving" in filled.raw
    (line,) = filled.lines
    assert json.loads(line)["imageStart"].startswith("u")
