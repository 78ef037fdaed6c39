"""Whatever goes wrong on the console script's fast path, expected or not, is left to the click
CLI, which reports it in one line with a documented exit code: the fast path never crashes."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from assetcache import AssetCache, _config
from assetcache._entry import fast_ref
from assetcache.cli import cli
from assetcache.content import stat_cache

from .conftest import EMAIL, TOKEN, FakeLuma, png, write


@pytest.fixture
def settled(tmp_path: Path, luma: FakeLuma, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A ledger whose stat cache trusts its one file: the lean path reads the row itself."""
    real = time.time_ns  # hashed "3 s after" its last change: past the racy window
    monkeypatch.setattr(stat_cache, "time", types.SimpleNamespace(time_ns=lambda: real() + 3 * 10**9))
    db = tmp_path / "l.db"
    path = write(tmp_path / "a.png", png("fallback"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        cache.resolve(path, email=EMAIL)
    return db, path


def _fast(argv: list[str]) -> tuple[int | None, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fast_ref(argv)
    return code, out.getvalue()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("uploaded_at", "0001-01-01 00:00:00+05:00"),  # before year 1 in UTC: OverflowError
        ("expires_at", "0001-01-01 00:00:00+05:00"),
        ("uploaded_at", "2000-13-01 00:00:00"),  # no month 13: ValueError
    ],
)
def test_a_row_another_program_wrote_is_reported_by_the_click_cli(
    settled: tuple[Path, Path], column: str, value: str
) -> None:
    db, path = settled
    # Each value sorts (as text) within the bounds the query asks for, so the row is read.
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(f"UPDATE uploads SET {column} = ?", (value,))
    conn.close()
    argv = ["--db", str(db), "ref", str(path), "-e", EMAIL]
    assert _fast(argv) == (None, "")
    slow = CliRunner().invoke(cli, argv, env={"USEAPI_TOKEN": None})
    assert slow.exit_code == 1 and "cannot read" in slow.output, slow.output


def test_a_home_platformdirs_cannot_resolve_is_reported_by_the_click_cli(
    settled: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = settled

    def no_home() -> str:  # what platformdirs raises for a relative HOME and no passwd entry
        raise RuntimeError("could not determine the home directory")

    monkeypatch.setattr(_config, "user_dir", no_home)
    argv = ["ref", str(path), "-e", EMAIL]
    assert _fast(argv) == (None, "")
    slow = CliRunner().invoke(cli, argv, env={"USEAPI_TOKEN": None})
    assert slow.exit_code == 1 and "RuntimeError" in slow.output, slow.output
