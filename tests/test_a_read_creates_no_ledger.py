"""A command that only reads never creates a ledger (issue #19, item 7): on a ledger that does
not exist, ``ls``, ``audit``, ``export``, ``ref --offline`` and ``report`` exit 1 with one
line naming its path, and create nothing (no folder, no file); ``path`` says where it would
be. A ``sqlite:///`` URL with a relative path is refused, naming the four-slash form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assetcache._entry import fast_ref
from assetcache.cli import cli

from .conftest import EMAIL, TOKEN, png, write

READS = [
    ["ls"],
    ["ls", "--history", "--json"],
    ["audit"],
    ["audit", "--json"],
    ["export"],
    ["report", "-o", "{out}/page.html"],
    ["ref", "{out}/a.png", "--email", EMAIL, "--offline"],
]


def _files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize("args", READS, ids=lambda args: " ".join(args))
def test_a_read_of_a_missing_ledger_is_an_error_creating_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write(out / "a.png", png("a"))
    before = _files_under(tmp_path)
    ledger = tmp_path / "typo" / "l.db"
    argv = ["--db", str(ledger), *(a.replace("{out}", str(out)) for a in args)]
    result = CliRunner().invoke(cli, argv, env={"USEAPI_TOKEN": TOKEN})
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("assetcache: error: ledger ") and str(ledger) in line
    assert "there is no ledger there" in line and "--db or ASSETCACHE_DB" in line
    assert _files_under(tmp_path) == before  # no folder, no ledger, no page


def test_the_variable_names_the_missing_ledger_too(tmp_path: Path) -> None:
    ledger = tmp_path / "l.db"
    result = CliRunner().invoke(cli, ["ls"], env={"ASSETCACHE_DB": str(ledger)})
    assert result.exit_code == 1 and str(ledger) in result.stderr
    assert not ledger.exists()


def test_the_fast_path_leaves_a_missing_ledger_to_the_full_cli(tmp_path: Path) -> None:
    """``assetcache ref --offline`` is answered before click when it hits; on a missing ledger
    it must neither create it nor answer, and the full command line says what is wrong."""
    image = write(tmp_path / "a.png", png("a"))
    ledger = tmp_path / "typo" / "l.db"
    argv = ["--db", str(ledger), "ref", str(image), "--email", EMAIL, "--offline"]
    assert fast_ref(argv) is None
    assert not ledger.parent.exists()
    script = "from assetcache._entry import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert str(ledger) in done.stderr and len(done.stderr.splitlines()) == 1
    assert not ledger.parent.exists()


def test_path_says_where_it_would_be_and_creates_nothing(tmp_path: Path) -> None:
    ledger = tmp_path / "typo" / "l.db"
    result = CliRunner().invoke(cli, ["--db", str(ledger), "path"])
    assert result.exit_code == 0
    assert result.stdout == f"{ledger}  (not created yet)\n"
    assert not ledger.parent.exists()


def test_reads_of_an_existing_ledger_still_work(tmp_path: Path) -> None:
    ledger = tmp_path / "l.db"
    assert CliRunner().invoke(cli, ["--db", str(ledger), "upload", "--help"]).exit_code == 0
    from assetcache import AssetCache

    with AssetCache(db=ledger) as cache:
        cache.assets()  # the library creates its ledger on first use, as before
    for args in (["ls"], ["audit"], ["export"]):
        result = CliRunner().invoke(cli, ["--db", str(ledger), *args])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", [["ls"], ["ref", "a.png", "--email", EMAIL]])
def test_a_three_slash_url_is_refused_naming_the_four_slash_one(
    tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///tmp/x.db`` silently meant ``./tmp/x.db``: now an error that says both."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.png", png("a"))
    url = "sqlite:///tmp/x.db"
    result = CliRunner().invoke(cli, ["--db", url, *command], env={"USEAPI_TOKEN": TOKEN})
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "sqlite:////tmp/x.db" in line and "relative path tmp/x.db" in line
    assert _files_under(tmp_path) == [tmp_path / "a.png"]
