"""A row another program wrote with a time assetcache cannot read is a LedgerError naming the
ledger and what to do, from every query that decodes rows: never a bare ValueError."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assetcache import Asset, AssetCache, LedgerError
from assetcache.ledger.sqlite import Ledger

from .conftest import EMAIL

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


def ledger_with(tmp_path: Path, column: str, value: object) -> Path:
    path = tmp_path / "l.db"
    ledger = Ledger(str(path))
    ledger.record(
        Asset(
            asset_ref="r",
            sha256=SHA,
            email=EMAIL,
            content_type="image/png",
            size=1,
            uploaded_at=NOW - timedelta(days=1),
            expires_at=NOW + timedelta(days=29),
            upload_id="u",
            media_url="m",
        )
    )
    ledger.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(f"UPDATE uploads SET {column} = ?", (value,))
    conn.close()
    return path


def refused(path: Path, info: pytest.ExceptionInfo[LedgerError]) -> None:
    message = str(info.value)
    assert info.value.path == str(path) and str(path) in message
    assert "cannot read" in message and "move the ledger aside" in message


@pytest.mark.parametrize("value", ["garbage", "", 12345, "2026-13-45 99:99:99.000000"])
@pytest.mark.parametrize("column", ["uploaded_at", "expires_at"])
def test_listing_and_pruning_refuse_an_unreadable_time(
    tmp_path: Path, column: str, value: object
) -> None:
    path = ledger_with(tmp_path, column, value)
    ledger = Ledger(str(path))
    with pytest.raises(LedgerError) as info:
        ledger.assets()
    refused(path, info)
    # A bound on the other (readable) column selects the row for pruning.
    far = datetime(9999, 1, 1, tzinfo=UTC)
    bounds = {"expired_before": far, "uploaded_before": None}
    if column == "expires_at":
        bounds = {"expired_before": None, "uploaded_before": far}
    with pytest.raises(LedgerError) as info:
        list(ledger.prune(email=None, dry_run=True, **bounds))
    refused(path, info)
    ledger.close()


@pytest.mark.parametrize("value", ["", 12345])
@pytest.mark.parametrize("column", ["uploaded_at", "expires_at"])
def test_a_lookup_refuses_an_unreadable_time(tmp_path: Path, column: str, value: object) -> None:
    path = ledger_with(tmp_path, column, value)
    ledger = Ledger(str(path))
    with pytest.raises(LedgerError) as info:
        ledger.newest(SHA, EMAIL, now=NOW)
    refused(path, info)
    ledger.close()


def test_the_cache_reports_it_as_a_ledger_error(tmp_path: Path) -> None:
    path = ledger_with(tmp_path, "uploaded_at", "garbage")
    with AssetCache(db=path) as cache, pytest.raises(LedgerError, match="cannot read"):
        cache.assets()
