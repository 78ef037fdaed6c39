"""The lean SQL in ledger/schema.py returns exactly what the ORM models read from the same ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, create_engine, select

from assetcache import AssetCache
from assetcache.ledger.models import FileStatRow, UploadRow

from .conftest import EMAIL, Clock, png, write


def test_lean_reads_equal_orm_reads(
    make_cache: Callable[..., AssetCache], db: Path, tmp_path: Path, clock: Clock
) -> None:
    cache = make_cache()
    for i in range(3):
        cache.resolve(write(tmp_path / f"{i}.png", png(str(i))), email=EMAIL)
        clock.advance(timedelta(hours=5, microseconds=123))
    lean = {a.id: a for a in cache.assets()}
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        rows = session.exec(select(UploadRow)).all()
        stats = session.exec(select(FileStatRow)).all()
    engine.dispose()
    assert len(rows) == 3 and len(stats) == 3
    for row in rows:
        asset = lean[row.id]
        assert row.asset_ref == asset.asset_ref
        assert row.uploaded_at == asset.uploaded_at
        assert row.expires_at == asset.expires_at
        assert row.uploaded_at.tzinfo is not None
        assert (row.sha256, row.email, row.source) == (asset.sha256, asset.email, asset.source)
    assert {s.path for s in stats} == {str(tmp_path / f"{i}.png") for i in range(3)}


def test_orm_writes_are_read_back_by_lean_queries(
    make_cache: Callable[..., AssetCache], db: Path, clock: Clock
) -> None:
    cache = make_cache()
    cache.assets()  # creates the ledger
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        session.add(
            UploadRow(
                sha256=__import__("hashlib").sha256(png()).hexdigest(),
                email=EMAIL,
                asset_ref="ref-from-orm",
                content_type="image/png",
                size=len(png()),
                uploaded_at=clock.now,
                expires_at=clock.now + timedelta(days=30),
                upload_id="u",
                media_url="m",
            )
        )
        session.commit()
    engine.dispose()
    hit = cache.lookup(png(), email=EMAIL)
    assert hit is not None and hit.asset_ref == "ref-from-orm"
    assert hit.expires_at == clock.now + timedelta(days=30)


def test_hot_queries_seek_an_index(tmp_path: Path) -> None:
    """Scale without timing: each hot query must SEARCH an index, never SCAN the table."""
    import sqlite3

    from assetcache.ledger import schema as _schema
    from assetcache.ledger.sqlite import Ledger

    db = tmp_path / "plan.db"
    Ledger(str(db)).close()
    t = "2026-01-01 00:00:00.000000"
    cases = {
        _schema.SELECT_NEWEST: {"sha256": "x", "email": "e", "now": t, "latest": t},
        _schema.select_assets("live_after", "expires_until"): {"live_after": t, "expires_until": t},
        _schema.select_assets("email", "live_after"): {"email": "e", "live_after": t},
        _schema.SELECT_STAT: {"path": "/p"},
        # A shared ledger's machine file: the lean hit (mirror or spool), the spool's candidate.
        _schema.SELECT_MIRRORED: {
            "sha256": "x",
            "email": "e",
            "now": t,
            "latest": t,
            "seen_after": t,
            "seen_after_ns": 0,
            "now_ns": 1,
        },
        _schema.SELECT_SPOOLED_NEWEST: {"sha256": "x", "email": "e", "now": t, "latest": t},
        _schema.SELECT_PRUNE_BATCH: {
            "after": 0,
            "email": None,
            "expired_before": t,
            "uploaded_before": None,
            "limit": 10,
            "now": t,
            "latest": t,
        },
    }
    with sqlite3.connect(db) as conn:
        for sql, params in cases.items():
            plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "SEARCH" in plan and "SCAN" not in plan, (sql, plan)


def test_listing_filters_match_a_python_filter(
    make_cache: Callable[..., AssetCache], clock: Clock
) -> None:
    cache = make_cache()
    for i in range(6):
        cache.resolve(png(f"row {i}"), email=EMAIL if i % 2 else "b@example.com")
        clock.advance(timedelta(days=7))
    every = cache.assets()
    now = clock.now
    assert cache.assets(expired=True) == [a for a in every if a.expires_at <= now]
    assert cache.assets(expired=False) == [a for a in every if a.expires_at > now]
    window = [a for a in every if now < a.expires_at <= now + timedelta(days=10)]
    assert cache.assets(expiring_within=timedelta(days=10)) == window
    assert cache.assets(email="b@example.com", expired=False) == [
        a for a in every if a.email == "b@example.com" and a.expires_at > now
    ]


def test_per_account_queries_seek_the_email_index(tmp_path: Path) -> None:
    import sqlite3

    from assetcache.ledger import schema as _schema
    from assetcache.ledger.sqlite import Ledger

    db = tmp_path / "plan.db"
    Ledger(str(db)).close()
    with sqlite3.connect(db) as conn:
        plan = " ".join(
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + _schema.select_assets("email"), {"email": "e"}
            )
        )
    assert "SEARCH" in plan and "ix_uploads_email_expires_at" in plan and "SCAN" not in plan


def test_exported_fields_are_the_upload_columns() -> None:
    """An Asset exports the ledger's upload row: the ref first, without the row id (the value
    type names its fields itself, as it never imports the ledger)."""
    from assetcache._asset import EXPORT_FIELDS
    from assetcache.ledger.schema import UPLOAD_COLUMNS

    exported = list(EXPORT_FIELDS)
    assert exported == ["asset_ref", *(c for c in UPLOAD_COLUMNS if c not in ("id", "asset_ref"))]
