"""One database, one machine file: every spelling of a shared ledger's URL names the same local
SQLite file (stat cache, mirror, spool, lock folder), and the file an older version kept under
a digest of the URL is adopted, never lost, never torn, whoever else is opening it."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assetcache import Asset, _rules
from assetcache._errors import LedgerError
from assetcache.content.stat_cache import FileStat
from assetcache.ledger.machine import MachineFile, open_machine_file
from assetcache.ledger.sqlite_file import legacy_machine_file, machine_file

from .conftest import EMAIL

ROOT = str(Path(__file__).resolve().parent.parent)
URL = "postgresql://ann:s3cret-PW@db.internal:5432/ledger"
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGHOSTADDR", "PGSERVICE", "PGPASSWORD")


@pytest.fixture(autouse=True)
def _no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PG_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _asset(n: int) -> Asset:
    now = datetime.now(UTC).replace(microsecond=0)
    return Asset(
        asset_ref=f"u1-email:{EMAIL}-image:{n}",
        sha256=f"{n:064x}",
        email=EMAIL,
        content_type="image/png",
        size=10,
        uploaded_at=now,
        expires_at=now + timedelta(days=30),
        upload_id=str(n),
        media_url=f"https://cdn/{n}",
    )


def _legacy_with_content(url: str = URL) -> str:
    """An older version's machine file for ``url``: a spooled upload, a mirrored row, a stat
    cache entry and a lock folder."""
    legacy = legacy_machine_file(url)
    ledger = MachineFile(legacy)
    ledger.record(_asset(1))  # spooled: mirrored_at NULL
    ledger.mirror(
        _asset(2).sha256, EMAIL, _asset(2), seen_at=datetime.now(UTC), seen_ns=_rules.machine_ns()
    )
    ledger.put_file_stat(FileStat("/frames/a.png", 1, 2, 3, 4, 5, "ab" * 32, 6))
    with ledger.locks.hold("some key"):
        pass
    ledger.close()
    return legacy


def test_spellings_of_one_database_share_one_machine_file(monkeypatch: pytest.MonkeyPatch) -> None:
    spellings = [
        URL,
        "postgresql://ann@db.internal/ledger",  # no password: ~/.pgpass or PGPASSWORD
        "postgres://ann:s3cret-PW@db.internal/ledger",
        "postgresql+psycopg://ann:s3cret-PW@DB.internal:5432/ledger?sslmode=require",
        "postgresql://db.internal:5432/ledger?user=ann&password=s3cret-PW&application_name=x",
        "postgresql:///ledger?host=db.internal&port=5432&user=ann&connect_timeout=5",
    ]
    assert len({machine_file(url) for url in spellings}) == 1
    monkeypatch.setenv("PGPASSWORD", "s3cret-PW")
    assert machine_file("postgresql://ann@db.internal/ledger") == machine_file(URL)
    others = [
        "postgresql://bob@db.internal/ledger",
        "postgresql://ann@db.internal/other",
        "postgresql://ann@db.internal:5433/ledger",
    ]
    assert len({machine_file(url) for url in [URL, *others]}) == 4
    # No database named: libpq's default (the user's name), with or without the slash.
    assert (
        machine_file("postgresql://ann@db.internal:5432/")
        == machine_file("postgresql://ann@db.internal")
        == machine_file("postgresql://ann@db.internal/ann")
    )
    # Older versions named one file per spelling: this is what is adopted.
    assert len({legacy_machine_file(url) for url in spellings}) == len(spellings)


def test_a_legacy_file_is_adopted_with_its_spool_stat_cache_and_lock_folder() -> None:
    legacy = _legacy_with_content()
    ledger = open_machine_file(URL)
    try:
        assert ledger.path == machine_file(URL) != legacy
        assert not os.path.lexists(legacy) and not os.path.lexists(legacy + ".locks")
        assert [a.asset_ref for a in ledger.spooled(10)] == [_asset(1).asset_ref]
        assert ledger.file_stat("/frames/a.png") is not None
        assert os.path.isdir(ledger.path + ".locks")
        with ledger.locks.hold("some key"):
            pass
    finally:
        ledger.close()
    assert sorted(os.listdir(os.path.dirname(ledger.path))) == sorted(
        [os.path.basename(ledger.path), os.path.basename(ledger.path) + ".locks", "adopt.lock"]
    )


ADOPT = """
import sys
from assetcache.ledger.machine import MachineFile, open_machine_file
ledger = open_machine_file(sys.argv[1])
print(ledger.path, len(ledger.spooled(10)), flush=True)
ledger.close()
"""


def test_processes_adopting_at_once_keep_one_file_and_every_spooled_upload() -> None:
    legacy = _legacy_with_content()
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADOPT, URL],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "left where it is" not in err
    assert {out.strip() for out, _ in outputs} == {f"{machine_file(URL)} 1"}
    assert not os.path.lexists(legacy)
    with contextlib.closing(sqlite3.connect(machine_file(URL))) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM uploads").fetchone()
print("open", flush=True)
sys.stdin.readline()
"""


def test_a_legacy_file_still_in_use_is_left_alone_then_merged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An older assetcache still running has the old file open: it keeps it, untouched; the
    next open after it is gone moves the spooled upload over and removes the old file."""
    legacy = _legacy_with_content()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, legacy], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        ledger = open_machine_file(URL)
        assert os.path.exists(legacy) and ledger.spooled(10) == []  # a fresh file meanwhile
        ledger.close()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    with contextlib.closing(sqlite3.connect(legacy)) as conn:  # the old file is as it was
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM uploads").fetchone() == (2,)
    ledger = open_machine_file(URL)
    try:
        assert [a.asset_ref for a in ledger.spooled(10)] == [_asset(1).asset_ref]
        assert not os.path.lexists(legacy) and not os.path.lexists(legacy + ".locks")
    finally:
        ledger.close()


def test_a_legacy_file_of_another_spelling_gives_its_spool_to_the_databases_file() -> None:
    other = "postgres://ann@DB.internal/ledger?sslmode=require"
    legacy = _legacy_with_content(other)
    open_machine_file(URL).close()  # the database's file, made under this spelling first
    ledger = open_machine_file(other)
    try:
        assert ledger.path == machine_file(URL)
        assert [a.asset_ref for a in ledger.spooled(10)] == [_asset(1).asset_ref]
        assert not os.path.lexists(legacy) and not os.path.lexists(legacy + ".locks")
    finally:
        ledger.close()


def test_a_legacy_file_others_may_write_is_not_adopted(caplog: pytest.LogCaptureFixture) -> None:
    legacy = _legacy_with_content()
    os.chmod(legacy, 0o620)  # group-writable: its rows could have been planted
    with caplog.at_level(logging.WARNING, logger="assetcache"):
        ledger = open_machine_file(URL)
    ledger.close()
    assert os.path.exists(legacy) and os.stat(legacy).st_mode & 0o777 == 0o620
    assert "left where it is" in caplog.text and "s3cret" not in caplog.text
    assert ledger.path == machine_file(URL)


def test_a_url_no_libpq_can_read_is_a_ledger_error_saying_what_to_do() -> None:
    with pytest.raises(LedgerError, match="write '%' itself as %25") as info:
        open_machine_file("postgresql://ann:Qx7%zzSECRET@db.internal/ledger")
    assert "SECRET" not in str(info.value) and "SECRET" not in str(info.value.path)


def test_naming_the_machine_file_imports_nothing_a_hit_does_without() -> None:
    from .test_entry import LEAN, _imported

    script = f"""
        import assetcache.ledger.sqlite_file as engine
        engine.machine_file({URL!r})
        engine.machine_file("postgresql://ann@/ledger?host=/run/postgresql")
        """
    assert _imported(textwrap.dedent(script), LEAN) == []


@pytest.mark.slow
def test_an_upload_an_older_version_spooled_reaches_the_shared_ledger(postgres_url: str) -> None:
    from assetcache import AssetCache

    legacy = _legacy_with_content(postgres_url)
    with AssetCache(db=postgres_url) as cache:
        assert [a.asset_ref for a in cache.assets()] == [_asset(1).asset_ref]
    assert not os.path.lexists(legacy)
    assert os.path.exists(machine_file(postgres_url))


@pytest.mark.slow
def test_a_hit_under_another_spelling_is_answered_from_the_same_mirror(
    postgres_url: str, tmp_path: Path
) -> None:
    """Uploaded through one spelling of the URL, answered on the console script's lean path
    (no psycopg) through another: the password in PGPASSWORD, postgres://, options."""
    import time
    from urllib.parse import urlsplit

    from assetcache import Emulator

    from .conftest import png

    path = tmp_path / "a.png"
    path.write_bytes(png("a"))
    time.sleep(2.1)  # past the racy window: the stat cache will trust the file
    parts = urlsplit(postgres_url)
    other = (
        f"postgres://{parts.username}@{parts.hostname}{parts.path}"
        f"?port={parts.port}&sslmode=disable&application_name=render-farm"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    with Emulator() as emu:
        env.update(USEAPI_TOKEN=emu.token, ASSETCACHE_BASE_URL=emu.base_url)
        miss = subprocess.run(
            [sys.executable, "-m", "assetcache", "ref", str(path), "-e", EMAIL],
            env=dict(env, ASSETCACHE_DB=postgres_url), capture_output=True, text=True,
            check=True,
        )  # fmt: skip
    probe = (
        "import sys, io, contextlib\n"
        "from assetcache._entry import fast_ref\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = fast_ref(['ref', {str(path)!r}, '-e', {EMAIL!r}])\n"
        "lean = not any(m in sys.modules for m in ('assetcache._cache', 'psycopg'))\n"
        "print(code, out.getvalue().strip(), lean)\n"
    )
    env.update(ASSETCACHE_DB=other, PGPASSWORD=parts.password or "")
    hit = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert hit.stdout.split() == ["0", miss.stdout.strip(), "True"]
    assert len(list(Path(os.path.dirname(machine_file(other))).glob("shared-*.db"))) == 1
