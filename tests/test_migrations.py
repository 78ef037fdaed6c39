"""Alembic revisions: one head, empty -> head equals the models, and the lean constants agree."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from assetcache.ledger import schema as _schema
from assetcache.ledger.migrate import migrations_dir
from assetcache.ledger.models import metadata
from assetcache.ledger.sqlite import Ledger


def scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return ScriptDirectory.from_config(config)


def test_exactly_one_head_and_it_is_the_code_head() -> None:
    heads = scripts().get_heads()
    assert heads == [_schema.HEAD]


def test_revision_list_matches_the_scripts() -> None:
    chain = [rev.revision for rev in scripts().walk_revisions()]
    assert tuple(reversed(chain)) == _schema.REVISIONS


@pytest.mark.both_engines
def test_empty_to_head_equals_the_models(ledger_location: str, engine: str) -> None:
    from assetcache import AssetCache

    with AssetCache(db=ledger_location) as cache:
        cache.assets()  # created and migrated on first use
    url = (
        f"sqlite:///{ledger_location}"
        if engine == "sqlite"
        else ledger_location.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    sql = create_engine(url)
    with sql.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == _schema.HEAD
    sql.dispose()


def test_many_processes_opening_a_new_postgresql_ledger_at_once_all_succeed(
    postgres_url: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    code = "import sys; from assetcache import AssetCache; AssetCache(db=sys.argv[1]).assets()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, postgres_url],
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / f"m{i}")},
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    engine.dispose()
    assert versions == [(_schema.HEAD,)]


def test_lean_column_lists_match_the_models() -> None:
    uploads = tuple(metadata.tables[_schema.UPLOADS].columns.keys())
    assert uploads == _schema.UPLOAD_COLUMNS + _schema.MIRROR_ONLY_COLUMNS
    assert tuple(metadata.tables[_schema.FILE_STATS].columns.keys()) == _schema.FILE_STAT_COLUMNS


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    from alembic import command

    path = tmp_path / "round.db"
    Ledger(str(path)).close()
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.cmd_opts = None
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    with sqlite3.connect(path) as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert _schema.UPLOADS not in names
    engine.dispose()
    Ledger(str(path)).close()  # opening upgrades again
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone()[0] == _schema.HEAD


def test_wal_mode_is_on(tmp_path: Path) -> None:
    Ledger(str(tmp_path / "w.db")).close()
    with sqlite3.connect(tmp_path / "w.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_existing_ledger_is_upgraded_in_place_keeping_its_rows(tmp_path: Path) -> None:
    from alembic import command

    path = tmp_path / "old.db"
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, _schema.REVISIONS[0])  # a ledger from the first release
        conn.exec_driver_sql(
            "INSERT INTO uploads (sha256, email, asset_ref, content_type, size, uploaded_at, "
            "expires_at, upload_id, media_url) VALUES ('s', 'e@x', 'kept', 'image/png', 1, "
            "'2026-01-01 00:00:00.000000', '2026-01-31 00:00:00.000000', 'u', 'm')"
        )
    engine.dispose()
    ledger = Ledger(str(path))  # opening migrates to head
    assert [a.asset_ref for a in ledger.assets()] == ["kept"]
    ledger.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone()[0] == _schema.HEAD
        indexes = {r[1] for r in raw.execute("PRAGMA index_list(uploads)")}
    assert "ix_uploads_email_expires_at" in indexes


@pytest.mark.both_engines
def test_copies_of_one_upload_are_folded_into_one_row_keeping_a_revocation(
    ledger_location: str, engine: str
) -> None:
    """Before 0006 two concurrent imports could insert one upload twice: the upgrade keeps the
    oldest copy, revoked if any copy was, and from then on the database refuses copies."""
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    url = (
        f"sqlite:///{ledger_location}"
        if engine == "sqlite"
        else ledger_location.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    if engine == "sqlite":
        Path(ledger_location).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    insert = (
        "INSERT INTO uploads (sha256, email, asset_ref, content_type, size, uploaded_at, "
        "expires_at, upload_id, media_url, revoked_at) VALUES ('s', 'e@x', :ref, 'image/png', 1, "
        "'2026-01-01 00:00:00', '2026-01-31 00:00:00', 'u', 'm', :revoked)"
    )
    from sqlalchemy import text

    sql = create_engine(url)
    with sql.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005_mirrored_at")
        for ref, revoked in [("r1", None), ("r1", "2026-01-02 00:00:00"), ("r1", None)]:
            conn.execute(text(insert), {"ref": ref, "revoked": revoked})
        conn.execute(text(insert), {"ref": "r2", "revoked": None})
    with sql.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with sql.connect() as conn:
        rows = conn.execute(
            text("SELECT id, asset_ref, revoked_at IS NOT NULL FROM uploads ORDER BY id")
        ).fetchall()
    assert [(r[1], r[2]) for r in rows] == [("r1", True), ("r2", False)]
    assert rows[0][0] == 1  # the oldest copy is the one kept
    with pytest.raises(IntegrityError), sql.begin() as conn:
        conn.execute(text(insert), {"ref": "r2", "revoked": None})
    sql.dispose()
