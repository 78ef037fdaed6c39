"""A ``--db`` that is not a ledger is refused and left exactly as it was.

Byte for byte and mode for mode, journal mode included, and with nothing new beside it (no
-wal/-shm, no lock folder): whatever the path names, directly or through a symlink.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, LedgerError
from assetcache.ledger.sqlite import Ledger

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, png


def _sqlite(path: Path, *statements: str, wal: bool = False) -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def foreign_sqlite(path: Path) -> None:
    _sqlite(path, "CREATE TABLE notes (x)", "INSERT INTO notes VALUES ('mine')")


def foreign_sqlite_wal(path: Path) -> None:
    _sqlite(path, "CREATE TABLE notes (x)", "INSERT INTO notes VALUES ('mine')", wal=True)


def foreign_alembic(path: Path) -> None:
    # Another program that uses Alembic too: its revision is not one of ours.
    _sqlite(
        path,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version VALUES ('3f2a9c1b7d4e')",
        "CREATE TABLE things (x)",
    )


def foreign_alembic_at_base(path: Path) -> None:
    _sqlite(
        path,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "CREATE TABLE things (x)",
    )


def text_file(path: Path) -> None:
    path.write_text("shopping list\n" * 100)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def char_device(path: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("mknod needs root (CI runs as root)")


def directory(path: Path) -> None:
    path.mkdir()


KINDS: dict[str, Callable[[Path], None]] = {
    "foreign sqlite": foreign_sqlite,
    "foreign sqlite in WAL mode": foreign_sqlite_wal,
    "foreign alembic": foreign_alembic,
    "foreign alembic at base": foreign_alembic_at_base,
    "text file": text_file,
    "fifo": fifo,
    "char device": char_device,
    "directory": directory,
}


def snapshot(*folders: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry of the folders: mode, device number, and bytes for regular files."""
    seen = {}
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            path = folder / name
            st = os.lstat(path)
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            seen[str(path)] = (st.st_mode, st.st_rdev, data)
    return seen


@pytest.mark.parametrize("through_symlink", [False, True], ids=["direct", "symlink"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_mistaken_db_is_refused_and_left_untouched(
    tmp_path: Path, luma: FakeLuma, clock: Clock, kind: str, through_symlink: bool
) -> None:
    home = tmp_path / "other-program"
    home.mkdir()
    victim = home / "data"
    KINDS[kind](victim)
    if not stat.S_ISDIR(os.lstat(victim).st_mode):
        os.chmod(victim, 0o644)  # readable by others: the old code "tightened" it
    given = victim
    if through_symlink:
        given = tmp_path / "link.db"
        given.symlink_to(victim)
    before = snapshot(home, tmp_path)

    with pytest.raises(LedgerError) as info:
        Ledger(str(given))
    assert str(victim) in str(info.value)
    expected = "is a directory" if kind == "directory" else "left untouched"
    assert expected in str(info.value)
    cache = AssetCache(
        token=TOKEN, db=given, transport=luma.transport, retry=FAST_RETRY, clock=clock
    )
    with cache, pytest.raises(LedgerError):
        cache.resolve(png(), email=EMAIL)

    assert snapshot(home, tmp_path) == before
    assert luma.uploads == 0


def test_a_foreign_database_keeps_its_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    foreign_sqlite(path)
    with pytest.raises(LedgerError, match="not an assetcache ledger"):
        Ledger(str(path))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("SELECT x FROM notes").fetchall() == [("mine",)]
    conn.close()


def test_an_empty_file_becomes_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    path.write_bytes(b"")
    path.chmod(0o644)
    Ledger(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM uploads").fetchone() == (0,)
    conn.close()


def test_a_current_ledger_opens_with_one_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checks before opening must not cost the fast path a second connection.
    path = tmp_path / "l.db"
    Ledger(str(path)).close()
    connects: list[object] = []
    real_connect = sqlite3.connect

    def counting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connects.append(args)
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        return conn

    monkeypatch.setattr(sqlite3, "connect", counting)
    ledger = Ledger(str(path))
    assert ledger.newest("0" * 64, EMAIL) is None
    ledger.close()
    assert len(connects) == 1
