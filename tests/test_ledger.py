"""Opening ledgers: damaged, foreign, newer, read-only. Never overwritten; errors name the path."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from assetcache import AssetCache, LedgerError
from assetcache.ledger.sqlite import Ledger
from assetcache.ledger.sqlite_file import ledger_path

from .conftest import EMAIL, png


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    junk = b"this is not sqlite at all\n" * 200
    path.write_bytes(junk)
    with pytest.raises(LedgerError, match="not a readable SQLite database.*left untouched") as info:
        Ledger(str(path))
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert path.read_bytes() == junk


def test_corrupt_database(tmp_path: Path, make_cache: Callable[..., AssetCache]) -> None:
    path = tmp_path / "c.db"
    cache = make_cache(db=path)
    cache.resolve(png(), email=EMAIL)
    cache.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xde\xad" * ((4096 - 100) // 2)  # smash the schema page
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerError, match=str(path)):
        make_cache(db=path).lookup(png(), email=EMAIL)
    assert path.read_bytes() == bytes(data)


def test_foreign_sqlite_database_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x)")
    with pytest.raises(LedgerError, match="not an assetcache ledger"):
        Ledger(str(path))
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Ledger(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(LedgerError, match="newer assetcache") as info:
        Ledger(str(path))
    assert "upgrade assetcache" in str(info.value)


def test_read_only_ledger_reads_but_refuses_writes_clearly(
    tmp_path: Path, make_cache: Callable[..., AssetCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ro" / "ro.db"
    cache = make_cache(db=path)
    cache.resolve(png(), email=EMAIL)
    cache.close()
    # Root ignores permission bits, so open the file through SQLite's read-only URI instead.
    real_connect = sqlite3.connect

    def read_only(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        return real_connect(f"file:{database}?mode=ro", *args, uri=True, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", read_only)
    ro = make_cache(db=path)
    assert ro.lookup(png(), email=EMAIL) is not None
    with pytest.raises(LedgerError, match=str(path)):
        ro.resolve(png("new"), email=EMAIL)


def test_directory_given_as_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="directory"):
        Ledger(str(tmp_path))


def test_unwritable_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # Each missing level is made with os.mkdir (0700 whatever the umask), not os.makedirs.
    monkeypatch.setattr(os, "mkdir", deny)
    with pytest.raises(LedgerError, match="permission denied"):
        Ledger(str(tmp_path / "a" / "b" / "l.db"))


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("sqlite:////abs/l.db", "/abs/l.db"),
        ("rel.db", os.path.abspath("rel.db")),
        ("~/x.db", "HOME/x.db"),
    ],
)
def test_locations(location: str, expected: str) -> None:
    assert ledger_path(location) == expected.replace("HOME", os.environ["HOME"])


def test_a_three_slash_url_is_refused_naming_the_four_slash_one() -> None:
    """sqlite:///tmp/x.db meant ./tmp/x.db (SQLAlchemy's reading) without a word: refused."""
    with pytest.raises(LedgerError) as caught:
        ledger_path("sqlite:///tmp/x.db")
    message = str(caught.value)
    assert "sqlite:////tmp/x.db" in message and "relative path tmp/x.db" in message


@pytest.mark.parametrize("location", ["postgresql://u@h/db", "sqlite://", "sqlite:///:memory:"])
def test_unsupported_locations(location: str) -> None:
    with pytest.raises(LedgerError):
        ledger_path(location)


def test_existing_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "loose.db"
    Ledger(str(path)).close()
    path.chmod(0o644)
    Ledger(str(path)).close()
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann:s3cr%40t-PASS@127.0.0.1:9/ledger",
        "postgresql+psycopg://ann:s3cr%40t-PASS@127.0.0.1:9/ledger?sslmode=disable",
        "mysql://root:s3cr%40t-PASS@127.0.0.1:9/x",
    ],
)
def test_a_ledger_url_never_shows_its_password(url: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from assetcache import AssetCache
    from assetcache.cli import cli

    with pytest.raises(LedgerError) as info:  # unsupported, or no server on port 9
        AssetCache(db=url).assets()
    assert "PASS" not in str(info.value) and "PASS" not in repr(info.value.path)
    assert info.value.path is not None and ":***@" in info.value.path
    for args in (["ls"], ["path"], ["-vv", "audit"]):
        result = CliRunner().invoke(cli, ["--db", url, *args])
        assert "PASS" not in result.output, args
        assert result.exit_code == (0 if args == ["path"] and "postgres" in url else 1), args


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://a:b@h/d", "postgresql://a:***@h/d"),
        ("postgresql://a@h/d", "postgresql://a@h/d"),
        # PostgreSQL: the target libpq connects to, built from its parts (tests/test_pgurl.py)
        ("postgresql:///d?host=/run/pg&password=s3cret&sslmode=disable",
         "postgresql://:***@/d?host=/run/pg&sslmode=disable"),
        ("postgres://a:p%40ss@[::1]:5433/d?PASSWORD=x", "postgresql://a:***@[::1]:5433/d?PASSWORD=***"),
        ("/plain/path.db", "/plain/path.db"),
        ("postgresql://alice:Tr0ub4dor?SECRETPW@host/t3", "postgresql://alice:***@host/t3"),
        ("postgresql://alice:SECRET/PW@host/t3", "postgresql://alice:***/***@host/t3"),
        ("postgresql:///d?pass%77ord=SECRET", "postgresql://:***@/d"),
        ("mysql://root:Qx7@Zk9secret@h/x?password=s3cret", "mysql://root:***@h/x?password=***"),
    ],
)  # fmt: skip
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    from assetcache.ledger.sqlite_file import without_password

    assert without_password(url) == shown


def test_a_password_libpq_quotes_in_its_error_is_scrubbed() -> None:
    from assetcache import AssetCache

    for url in ("postgresql://ann:SECRETPW%zz@127.0.0.1:9/x", "postgresql://ann:S%41CRET@127.0.0.1:9/x"):
        with pytest.raises(LedgerError) as info:
            AssetCache(db=url).assets()
        assert "SECRET" not in str(info.value) and "SACRET" not in str(info.value)
