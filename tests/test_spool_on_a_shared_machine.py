"""The spool of a shared ledger's local file (uploads paid for while the shared ledger could
not record them) is shared by every process of the machine: one process's merge must never
drop what another one spooled meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from assetcache import Asset
from assetcache._sqlite_ledger import Ledger

from .conftest import EMAIL

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _upload(ref: str) -> Asset:
    return Asset(
        asset_ref=ref,
        sha256=ref.ljust(64, "0"),
        email=EMAIL,
        content_type="image/png",
        size=1,
        uploaded_at=NOW,
        expires_at=NOW + timedelta(days=29),
        upload_id=f"id-{ref}",
        media_url=f"https://m/{ref}",
    )


def test_a_merge_that_read_the_spool_late_never_drops_a_newer_spooled_upload(
    tmp_path: Path,
) -> None:
    """Two processes merge the same spool: A merges and unspools the row; C spools a new upload,
    which SQLite gives the freed id; B, which read the spool before A unspooled it, unspools by
    that id. The newer upload, merged nowhere, must stay spooled."""
    local = Ledger(str(tmp_path / "shared-local.db"))
    try:
        local.record(_upload("first"))
        read_by_b = local.spooled(10)
        local.unspool(local.spooled(10))  # A: merged, unspooled
        newer = local.record(_upload("second"))  # C: spooled, maybe under the freed id
        local.unspool(read_by_b)  # B: merged "first" too (idempotent), unspools it
        assert [a.asset_ref for a in local.spooled(10)] == [newer.asset_ref]
    finally:
        local.close()


def test_unspooling_leaves_a_row_the_mirror_took_over(tmp_path: Path) -> None:
    """A spooled upload the shared ledger then answered with becomes a mirrored row (the
    mirror's ON CONFLICT): unspooling after that must not delete this machine's mirror of it."""
    local = Ledger(str(tmp_path / "shared-local.db"))
    try:
        spooled = local.record(_upload("first"))
        read = local.spooled(10)
        local.mirror(spooled.sha256, EMAIL, spooled, seen_at=NOW)
        local.unspool(read)
        assert local.mirrored(spooled.sha256, EMAIL, now=NOW, seen_after=NOW) is not None
    finally:
        local.close()
