"""The pieces every hit runs through, against the slow, obvious versions they replace: the
fast path's row decoding, the answer's copy, and the stored time format."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from assetcache import Asset
from assetcache._asset import answered
from assetcache._hit import StoredRow
from assetcache.ledger.base import asset_from_row
from assetcache.ledger.schema import UPLOAD_COLUMNS, from_db_time, to_db_time

aware = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
)


def _asset(**changes: object) -> Asset:
    fields: dict[str, object] = {
        "asset_ref": "u1-email:a@b.com-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11",
        "sha256": "ab" * 32,
        "email": "a@b.com",
        "content_type": "image/png",
        "size": 10,
        "uploaded_at": datetime(2026, 11, 1, tzinfo=UTC),
        "expires_at": datetime(2026, 12, 1, tzinfo=UTC),
        "upload_id": "u",
        "media_url": "https://cdn/x",
        "source": "/old/path.png",
        "revoked_at": None,
        "host": "old-host",
        "id": 7,
    }
    fields.update(changes)
    return Asset(**fields)  # type: ignore[arg-type]


@given(aware)
def test_stored_times_read_back_and_keep_strftimes_text(moment: datetime) -> None:
    text = to_db_time(moment)
    assert text == moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert from_db_time(text) == moment


@given(aware, aware)
def test_stored_text_order_is_time_order(a: datetime, b: datetime) -> None:
    assert (to_db_time(a) < to_db_time(b)) == (a < b)


def test_an_answer_is_the_row_reused_with_the_path_it_came_from() -> None:
    row = _asset(revoked_at=None)
    copy = answered(row, source="/new.png", host="here")
    assert copy == dataclasses.replace(row, source="/new.png", host="here", reused=True)
    assert copy.id == row.id and row.reused is False  # the row itself is untouched


@given(st.sampled_from([None, datetime(2026, 11, 20, tzinfo=UTC)]), st.integers(1, 10**9))
def test_the_fast_paths_row_reads_as_an_asset_does(revoked: datetime | None, row_id: int) -> None:
    asset = _asset(revoked_at=revoked, id=row_id)
    stored = tuple(_to_db(getattr(asset, column)) for column in UPLOAD_COLUMNS)
    decoded, full = StoredRow(stored), asset_from_row(stored)
    for name in ("id", "asset_ref", "uploaded_at", "expires_at", "source", "revoked_at"):
        assert getattr(decoded, name) == getattr(full, name)
    assert full == asset and full.expires_at - full.uploaded_at == timedelta(days=30)


def _to_db(value: object) -> object:
    return to_db_time(value) if isinstance(value, datetime) else value
