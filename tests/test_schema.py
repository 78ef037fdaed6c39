"""The lean SQL in _schema.py returns exactly what the ORM models read from the same ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, create_engine, select

from assetcache import AssetCache
from assetcache._models import FileStatRow, UploadRow

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
