"""The fast `ref` path answers exactly what the click CLI answers, and imports nothing heavy."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from assetcache import AssetCache, RetryPolicy
from assetcache._cli import cli
from assetcache._entry import _parse_ref, fast_ref

from .conftest import EMAIL, TOKEN, FakeLuma, png, write

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def seeded(tmp_path: Path, luma: FakeLuma) -> tuple[Path, Path]:
    db = tmp_path / "l.db"
    path = write(tmp_path / "a b.png", png("fast"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        cache.resolve(path, email=EMAIL)
    return db, path


@pytest.mark.parametrize(
    "args",
    [
        ["ref", "{file}", "--email", EMAIL],
        ["ref", "{file}", f"--email={EMAIL}"],
        ["ref", "-e", EMAIL, "{file}"],
        ["ref", "{file}", "--email", EMAIL, "--offline"],
        ["ref", "{file}", "--email", EMAIL, "--min-remaining", "2d"],
        ["ref", "{file}", "--email", EMAIL, "--min-remaining=29d23h", "--offline"],
        ["ref", "{file}", "--email", "  me@EXAMPLE.com "],  # same account, normalised
        ["ref", "{file}", "--email", "ME@example.com"],  # local part is case-sensitive: a miss
        ["ref", "{file}", "--email", "other@example.com", "--offline"],
        ["ref", "{missing}", "--email", EMAIL, "--offline"],
        ["ref", "{file}", "--email", "bad", "--offline"],
        ["ref", "{file}", "{file}", "--email", EMAIL],  # several files, all hits
        ["ref", "{file}", "{missing}", "--email", EMAIL, "--offline"],  # one miss: click
    ],
)
def test_fast_path_agrees_with_click(
    args: list[str], seeded: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, path = seeded
    argv = ["--db", str(db)] + [
        a.format(file=path, missing=path.with_name("missing.png")) for a in args
    ]
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fast = fast_ref(argv)
    slow = CliRunner().invoke(
        cli, argv, env={"USEAPI_TOKEN": None}, obj={"retry": RetryPolicy(attempts=1)}
    )
    if fast is None:  # no hit: the full CLI answers
        assert out.getvalue() == ""
        assert slow.exit_code in (2, 3, 4, 5)  # the full CLI finds no hit either
    else:
        assert (fast, out.getvalue()) == (slow.exit_code, slow.stdout)


def test_parse_hands_unusual_command_lines_to_click() -> None:
    for argv in (
        [],
        ["ls"],
        ["-v", "ref", "f", "-e", "x@y"],
        ["ref", "--help"],
        ["ref", "f", "-e"],
        ["ref", "f", "-e", "x@y", "--min-remaining", "soon"],
        ["--db"],
        ["ref", "-"],
        ["ref", "f", "-ex@y"],
    ):
        assert _parse_ref(argv) is None, argv
    assert _parse_ref(["--db=x.db", "ref", "f", "-e", "a@b"]) == ("x.db", ["f"], "a@b", None, False)
    assert _parse_ref(["ref", "a", "-e", "x@y", "b"]) == (None, ["a", "b"], "x@y", None, False)
    assert _parse_ref(["ref", "f", "--email=a@b", "--min-remaining", "1d", "--offline"]) == (
        None,
        ["f"],
        "a@b",
        timedelta(days=1),
        True,
    )


HEAVY = ("click", "httpx", "sqlalchemy", "sqlmodel", "alembic", "asyncio", "tenacity", "psycopg")


def test_hits_import_nothing_heavy(seeded: tuple[Path, Path]) -> None:
    db, path = seeded
    script = textwrap.dedent(
        f"""
        import sys
        from assetcache._entry import fast_ref
        assert fast_ref(["--db", {str(db)!r}, "ref", {str(path)!r}, "-e", {EMAIL!r}]) == 0
        from assetcache import AssetCache
        with AssetCache(db={str(db)!r}) as cache:
            assert cache.resolve({str(path)!r}, email={EMAIL!r}).reused
            assert cache.lookup({str(path)!r}, email={EMAIL!r}) is not None
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    env["PYTHONPATH"] = ROOT
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_console_entry_point_hit_and_miss(seeded: tuple[Path, Path], tmp_path: Path) -> None:
    db, path = seeded
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    env.update(ASSETCACHE_DB=str(db), ASSETCACHE_EMAIL=EMAIL)
    hit = subprocess.run(
        [sys.executable, "-m", "assetcache", "ref", str(path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert hit.returncode == 0 and hit.stdout.startswith("u1-") and hit.stderr == ""
    other = write(tmp_path / "other.png", png("other"))
    miss = subprocess.run(
        [sys.executable, "-m", "assetcache", "ref", str(other)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert miss.returncode == 5 and "USEAPI_TOKEN" in miss.stderr  # the full CLI answered



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


@pytest.mark.parametrize("argv", [["--db=", "ref", "f", "-e", "a@b"], ["--db", "", "ref", "f"]])
def test_fast_path_leaves_an_empty_db_to_click(argv: list[str]) -> None:
    assert _parse_ref(argv) is None
