"""Every command and exit code through click's CliRunner, with time travel by injected clock."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from assetcache.cli import cli

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, jpeg, png, write

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.both_engines


@pytest.fixture
def run(luma: FakeLuma, clock: Clock, ledger_location: str) -> object:
    def invoke(
        *args: str, input: str | None = None, token: str | None = TOKEN, **env: str
    ) -> Result:
        environ = {"USEAPI_TOKEN": token, "ASSETCACHE_EMAIL": None}
        environ.update(env)
        return CliRunner().invoke(
            cli,
            ["--db", ledger_location, *args],
            obj={"clock": clock, "transport": luma.transport, "retry": FAST_RETRY},
            env=environ,
            input=input,
            catch_exceptions=False,
        )

    return invoke


def test_ref_prints_exactly_the_ref(run, tmp_path: Path, luma: FakeLuma) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "a.png", png("a"))
    first = run("ref", str(path), "--email", EMAIL)
    assert first.exit_code == 0, first.output
    assert re.fullmatch(r"u1-email:\S+-image:[0-9a-f-]{36}\n", first.stdout)
    assert first.stderr == ""
    again = run("ref", str(path), "--email", EMAIL)
    assert again.stdout == first.stdout
    assert luma.uploads == 1


def test_ref_offline(run, tmp_path: Path, luma: FakeLuma) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "a.png", png("a"))
    run("prune")  # opens the ledger: a read of one that does not exist is an error
    miss = run("ref", str(path), "--email", EMAIL, "--offline")
    assert miss.exit_code == 3
    assert miss.stdout == ""
    assert "no live assetRef" in miss.stderr
    assert luma.requests == []
    run("ref", str(path), "--email", EMAIL)
    hit = run("ref", str(path), "--email", EMAIL, "--offline", token=None)
    assert hit.exit_code == 0 and hit.stdout.startswith("u1-")


def test_email_from_environment(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "a.png", png("a"))
    assert run("ref", str(path), ASSETCACHE_EMAIL=EMAIL).exit_code == 0
    missing = run("ref", str(path))
    assert missing.exit_code == 2
    assert "--email" in missing.stderr


@pytest.mark.parametrize(
    ("script", "code", "words"),
    [
        ([401], 5, "rejected the API token"),
        ([404], 5, "no Luma account configured"),
        ([596], 5, "re-add the account"),
        ([500] * 10, 6, "HTTP 500"),
        ([429] * 10, 6, "rate limiting"),
        ([(200, {}, b"oops")], 6, "not JSON"),
        ([400], 4, "refused the image"),
    ],
)
def test_remote_errors_map_to_exit_codes(  # type: ignore[no-untyped-def]
    run, luma: FakeLuma, tmp_path: Path, script: list[object], code: int, words: str
) -> None:
    luma.script = list(script)  # type: ignore[assignment]  # a copy: params are shared
    result = run("ref", str(write(tmp_path / "a.png", png())), "--email", EMAIL)
    assert result.exit_code == code
    assert result.stdout == ""
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_no_token_is_exit_5(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("ref", str(write(tmp_path / "a.png", png())), "--email", EMAIL, token=None)
    assert result.exit_code == 5
    assert "USEAPI_TOKEN" in result.stderr


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: (p.write_bytes(b"GIF89a..."), p)[1], "GIF"),
        (lambda p: p.parent, "directory"),
    ],
)
def test_invalid_input_is_exit_4(run, tmp_path: Path, make, words: str) -> None:  # type: ignore[no-untyped-def]
    target = make(tmp_path / "x.png")
    result = run("ref", str(target), "--email", EMAIL)
    assert result.exit_code == 4
    assert words in result.stderr


def test_bad_email_is_usage_error(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("ref", str(write(tmp_path / "a.png", png())), "--email", "nope")
    assert result.exit_code == 2
    assert "not an email address" in result.stderr


def test_upload_human_output_and_reuse(run, tmp_path: Path, luma: FakeLuma) -> None:  # type: ignore[no-untyped-def]
    a = write(tmp_path / "a.png", png("a"))
    b = write(tmp_path / "b.jpg", jpeg("b"))
    first = run("upload", str(a), str(b), "--email", EMAIL)
    assert first.exit_code == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(str(a)) and "  uploaded  30d left  " in lines[0]
    second = run("upload", str(a), "--email", EMAIL)
    assert "  reused  30d left  " in second.stdout
    assert luma.uploads == 2


def test_upload_json_goes_on_past_failures_and_exits_with_worst(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, luma: FakeLuma
) -> None:
    good = write(tmp_path / "good.png", png("g"))
    bad = write(tmp_path / "bad.gif", b"GIF89a....")
    result = run(
        "upload", str(good), str(bad), str(tmp_path / "missing.png"), "--email", EMAIL, "--json"
    )
    assert result.exit_code == 4
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(good), str(bad), str(tmp_path / "missing.png")]
    assert set(records[0]) == {
        "path",
        "sha256",
        "email",
        "asset_ref",
        "reused",
        "uploaded_at",
        "expires_at",
    }
    assert records[0]["reused"] is False and records[0]["email"] == EMAIL
    assert records[1]["exit_code"] == 4 and "GIF" in records[1]["error"]
    assert records[2]["exit_code"] == 4


def test_upload_worst_code_wins(run, tmp_path: Path, luma: FakeLuma) -> None:  # type: ignore[no-untyped-def]
    luma.script = [500] * 10
    result = run(
        "upload",
        str(write(tmp_path / "a.png", png("a"))),
        str(tmp_path / "nope.png"),
        "--email",
        EMAIL,
        "--jobs",
        "1",
    )
    assert result.exit_code == 6


def test_upload_reads_paths_from_stdin(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = [write(tmp_path / f"{i}.png", png(str(i))) for i in range(3)]
    result = run("upload", "-", "--email", EMAIL, "--json", input="\n".join(map(str, paths)) + "\n")
    assert result.exit_code == 0
    assert [json.loads(x)["path"] for x in result.stdout.splitlines()] == list(map(str, paths))


def test_upload_force_and_min_remaining(run, tmp_path: Path, luma: FakeLuma, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    a = str(write(tmp_path / "a.png", png("a")))
    run("upload", a, "--email", EMAIL)
    run("upload", a, "--email", EMAIL, "--force")
    assert luma.uploads == 2
    clock.advance(timedelta(days=27))
    assert "reused" in run("upload", a, "--email", EMAIL).stdout
    assert "uploaded" in run("upload", a, "--email", EMAIL, "--min-remaining", "3d1h").stdout
    assert run("upload", a, "--email", EMAIL, "--min-remaining", "soon").exit_code == 2


def test_ls_table_json_csv(run, tmp_path: Path, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    a = write(tmp_path / "a.png", png("a"))
    run("ref", str(a), "--email", EMAIL)
    clock.advance(timedelta(days=26, hours=20))
    run("ref", str(write(tmp_path / "b.jpg", jpeg("b"))), "--email", "b@example.com")
    table = run("ls")
    assert table.exit_code == 0
    header, first, second = table.stdout.splitlines()
    assert header.split() == [
        "REF", "EMAIL", "SIZE", "TYPE", "UPLOADED", "EXPIRES", "STATUS", "SOURCE"
    ]  # fmt: skip
    assert "in 3d 4h" in first and " live " in first and "26d 20h ago" in first and str(a) in first and "png" in first
    assert "in 30d" in second and "b@example.com" in second
    data = json.loads(run("ls", "--json").stdout)
    assert [d["email"] for d in data] == [EMAIL, "b@example.com"]
    assert data[0]["expires_at"].endswith("+00:00")
    assert [d["status"] for d in data] == ["live", "live"]
    rows = list(csv.DictReader(io.StringIO(run("ls", "--csv").stdout)))
    assert rows[1]["email"] == "b@example.com" and rows[1]["status"] == "live"
    assert len(json.loads(run("ls", "--expiring-within", "4d", "--json").stdout)) == 1
    assert json.loads(run("ls", "--email", "b@example.com", "--json").stdout)[0]["size"] > 0
    clock.advance(timedelta(days=4))
    assert len(json.loads(run("ls", "--expired", "--json").stdout)) == 1
    assert run("ls", "--json", "--csv").exit_code == 2
    assert run("ls", "--expired", "--expiring-within", "1d").exit_code == 2


def test_ls_empty(run) -> None:  # type: ignore[no-untyped-def]
    run("prune")  # opens the ledger: a read of one that does not exist is an error
    result = run("ls")
    assert result.exit_code == 0 and result.stdout == "" and "no entries" in result.stderr
    assert json.loads(run("ls", "--json").stdout) == []


def test_audit_text_and_json(run, tmp_path: Path, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    run("prune")  # opens the ledger: a read of one that does not exist is an error
    assert "empty" in run("audit").stdout
    run("ref", str(write(tmp_path / "a.png", png("a"))), "--email", EMAIL)
    clock.advance(timedelta(days=25))
    text = run("audit")
    assert text.exit_code == 0
    assert (
        f"{EMAIL}: 1 live (0 expiring within 24h, 1 within 7d), 0 expired, 1 refreshable"
        in text.stdout
    )
    assert text.stdout.splitlines()[-1] == "next: assetcache refresh --expiring-within 7d"
    data = json.loads(run("audit", "--json").stdout)
    assert data["accounts"][0]["refreshable"] == 1
    assert data["next"] == "assetcache refresh --expiring-within 7d"


def test_prune(run, tmp_path: Path, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    run("ref", str(write(tmp_path / "a.png", png("a"))), "--email", EMAIL)
    clock.advance(timedelta(days=10))
    run("ref", str(write(tmp_path / "b.png", png("b"))), "--email", EMAIL)
    clock.advance(timedelta(days=21))
    dry = run("prune", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.splitlines()[-1] == "would remove 1 entry"
    done = run("prune")
    assert done.stdout.splitlines()[-1] == "removed 1 entry"
    assert str(tmp_path / "a.png") in done.stdout
    assert run("prune").stdout.strip() == "removed 0 entries"
    assert run("prune", "--older-than", "20d").stdout.strip().endswith("removed 1 entry")
    assert json.loads(run("ls", "--json").stdout) == []


def test_refresh(run, tmp_path: Path, clock: Clock, luma: FakeLuma) -> None:  # type: ignore[no-untyped-def]
    keep = write(tmp_path / "keep.png", png("keep"))
    gone = write(tmp_path / "gone.png", png("gone"))
    run("upload", str(keep), str(gone), "--email", EMAIL)
    clock.advance(timedelta(days=28))
    gone.unlink()
    dry = run("refresh", "--dry-run")
    assert f"would refresh  {keep}" in dry.stdout
    assert f"cannot refresh  {gone}: source file is gone" in dry.stdout
    assert dry.stdout.splitlines()[-1] == "would refresh 1, cannot refresh 1"
    assert luma.uploads == 2
    done = run("refresh", "--expiring-within", "3d")
    assert done.exit_code == 0
    assert f"refreshed  {keep}  u1-" in done.stdout
    assert luma.uploads == 3


def test_refresh_failure_exit_code(run, tmp_path: Path, clock: Clock, luma: FakeLuma) -> None:  # type: ignore[no-untyped-def]
    run("ref", str(write(tmp_path / "a.png", png("a"))), "--email", EMAIL)
    clock.advance(timedelta(days=28))
    luma.script = [596]
    result = run("refresh")
    assert result.exit_code == 5
    assert "upload failed" in result.stdout


def test_path(run, db: Path, tmp_path: Path, engine: str, ledger_location: str) -> None:  # type: ignore[no-untyped-def]
    before = run("path")
    assert before.exit_code == 0
    if engine != "sqlite":  # a URL, its password masked; no file to measure
        password = ledger_location.split(":")[2].split("@")[0]
        assert password not in before.stdout and before.stdout.endswith(
            "  (shared PostgreSQL ledger)\n"
        )
        return
    assert before.stdout.strip() == f"{db}  (not created yet)"
    assert not db.exists()
    run("ref", str(write(tmp_path / "a.png", png("a"))), "--email", EMAIL)
    after = run("path")
    assert re.fullmatch(re.escape(str(db)) + r"  \(\d+\.\d KiB\)\n", after.stdout)


def test_unexpected_error_suggests_verbose(
    run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    run("prune")  # opens the ledger: a read of one that does not exist is an error
    monkeypatch.setattr("assetcache._cache.AssetCache.assets", boom)
    quiet = run("ls")
    assert quiet.exit_code == 1
    assert "rerun with -v" in quiet.stderr and "Traceback" not in quiet.stderr
    loud = run("-v", "ls")
    assert loud.exit_code == 1 and "Traceback" in loud.stderr


def test_verbose_logs_requests_but_never_the_token(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("-vv", "ref", str(write(tmp_path / "a.png", png("a"))), "--email", EMAIL)
    assert result.exit_code == 0
    assert "POST https://" in result.stderr or "POST" in result.stderr
    assert TOKEN not in result.stderr and TOKEN not in result.stdout


def test_version(run) -> None:  # type: ignore[no-untyped-def]
    from assetcache import __version__

    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 20, name
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output
        assert f"assetcache {name}" in readme, f"{name} missing from README"
    top = CliRunner().invoke(cli, ["--help"]).output
    for code in range(7):
        assert f"  {code}  " in top
    for code in range(7):
        assert f"| {code} |" in readme


def test_assetcache_email_is_a_default_only_where_an_account_is_needed(  # type: ignore[no-untyped-def]
    run, tmp_path: Path
) -> None:
    run("ref", str(write(tmp_path / "a.png", png("a"))), "--email", "other@example.com")
    listed = run("ls", "--json", ASSETCACHE_EMAIL=EMAIL)
    assert [a["email"] for a in json.loads(listed.stdout)] == ["other@example.com"]
    assert "other@example.com" in run("audit", ASSETCACHE_EMAIL=EMAIL).stdout


def test_upload_progress_bar_only_on_a_terminal_with_several_files(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [str(write(tmp_path / f"{i}.png", png(str(i)))) for i in range(3)]
    assert "resolving" not in run("upload", *files, "--email", EMAIL).stderr  # not a TTY
    monkeypatch.setattr("assetcache.cli.terminal.stderr_is_terminal", lambda: True)
    several = run("upload", *files, "--email", EMAIL, "--force")
    assert several.exit_code == 0
    assert "resolving" in several.stderr
    assert len(several.stdout.splitlines()) == 3  # the bar never mixes into stdout
    assert "resolving" not in run("upload", files[0], "--email", EMAIL).stderr



@pytest.mark.parametrize("command", ["ref", "upload"])
def test_min_remaining_out_of_range_is_a_usage_error(command: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "l.db"), command, "x.png", "-e", EMAIL, "--min-remaining", "30d"],
    )
    assert result.exit_code == 2
    assert "uploads live 30 days" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["prune", "--older-than", "10000000d"],
        ["ls", "--expiring-within", "99999999w"],
        ["refresh", "--expiring-within", "10000000d"],
    ],
)
def test_huge_durations_are_usage_errors(run, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "too long a duration" in result.stderr


def test_human_output_escapes_control_characters(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, clock: Clock
) -> None:
    hostile = tmp_path / "evil\x1b[2J\nname\u202egnp.png"
    write(hostile, png("h"))
    assert run("upload", str(hostile), "--email", EMAIL).exit_code == 0
    clock.advance(timedelta(minutes=1))
    for args in (["ls"], ["prune", "--older-than", "0", "--dry-run"], ["upload", str(hostile)]):
        out = run(*args, "--email", EMAIL) if args[0] == "upload" else run(*args)
        assert out.exit_code == 0, out.output
        assert "\x1b" not in out.stdout and "\u202e" not in out.stdout
        assert "evil\\x1b[2J\\nname\\u202egnp.png" in out.stdout
    missing = run("ref", str(tmp_path / "gone\x1b]0;pwned\x07.png"), "--email", EMAIL)
    assert missing.exit_code == 4
    assert "\x1b" not in missing.stderr and "\x07" not in missing.stderr
    assert "gone\\x1b]0;pwned\\x07.png" in missing.stderr


@given(st.text())
def test_shown_escapes_exactly_what_the_escape_table_does(text: str) -> None:
    """shown() skips the table for printable ASCII: it must never change what gets escaped."""
    from assetcache.cli.output import _ESCAPES, shown

    assert shown(text) == text.translate(_ESCAPES)


def test_ref_of_several_files_one_line_each_in_order(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, luma: FakeLuma
) -> None:
    a, b = write(tmp_path / "a.png", png("a")), write(tmp_path / "b.png", png("b"))
    first = run("ref", str(a), "--email", EMAIL)
    both = run("ref", str(b), str(a), str(b), "--email", EMAIL)  # b is a miss: uploaded
    assert both.exit_code == 0 and both.stderr == ""
    ref_b, ref_a, again_b = both.stdout.splitlines()
    assert ref_a == first.stdout.strip() and ref_b == again_b != ref_a
    assert luma.uploads == 2
    missing, bad = tmp_path / "missing.png", write(tmp_path / "bad.png", b"GIF89a")
    mixed = run("ref", str(a), str(missing), str(bad), str(b), "--email", EMAIL)
    assert mixed.exit_code == 4
    assert mixed.stdout.split("\n") == [ref_a, "", "", ref_b, ""]  # failures keep their line
    assert mixed.stderr.count("assetcache: error:") == 2
    offline = run("ref", str(a), str(write(tmp_path / "c.png", png("c"))), "--offline", "-e", EMAIL)
    assert offline.exit_code == 3 and offline.stdout.split("\n") == [ref_a, "", ""]
    assert luma.uploads == 2
