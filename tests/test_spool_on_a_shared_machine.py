"""The spool of a shared ledger's local file (uploads paid for while the shared ledger could
not record them) is shared by every process of the machine: one process's merge must never
drop what another one spooled meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assetcache import Asset, _rules
from assetcache.ledger.machine import MachineFile

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
    local = MachineFile(str(tmp_path / "shared-local.db"))
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
    local = MachineFile(str(tmp_path / "shared-local.db"))
    try:
        spooled = local.record(_upload("first"))
        read = local.spooled(10)
        local.mirror(spooled.sha256, EMAIL, spooled, seen_at=NOW, seen_ns=_rules.machine_ns())
        local.unspool(read)
        assert local.mirrored(spooled.sha256, EMAIL, now=NOW) is not None
    finally:
        local.close()


def test_unspooling_leaves_a_row_a_forget_revoked_since_it_was_read(tmp_path: Path) -> None:
    """A merge read the spool, then a forget revoked a row here: the merge sent it live, so
    unspooling must leave it, revoked, for the next merge to carry the revocation."""
    local = MachineFile(str(tmp_path / "shared-local.db"))
    try:
        spooled = local.record(_upload("first"))
        read = local.spooled(10)
        found = {"sha256": spooled.sha256, "asset_ref": None, "email": None, "at": NOW}
        assert len(local.revoke_spooled(**found)) == 1  # type: ignore[arg-type]
        assert local.unspool(read) == 0
        assert [a.revoked_at for a in local.spooled(10)] == [NOW]
    finally:
        local.close()


def test_the_mirror_leaves_a_spooled_upload_revoked_here_to_the_merge(tmp_path: Path) -> None:
    """The shared ledger answers with an upload this machine spooled and then revoked (it was
    recorded there after all): the mirror must not take the row over, live, from the spool,
    or the revocation would never reach the shared ledger."""
    local = MachineFile(str(tmp_path / "shared-local.db"))
    try:
        spooled = local.record(_upload("first"))
        local.revoke_spooled(sha256=spooled.sha256, asset_ref=None, email=None, at=NOW)
        live = _upload("first")
        local.mirror(spooled.sha256, EMAIL, live, seen_at=NOW, seen_ns=_rules.machine_ns())
        assert [a.revoked_at for a in local.spooled(10)] == [NOW]
        assert local.mirrored(spooled.sha256, EMAIL, now=NOW) is None
    finally:
        local.close()


def test_a_failed_merge_of_the_spool_is_not_retried_by_every_session(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the shared ledger cannot take the spool, each session would otherwise pay for a
    merge attempt (a connect timeout against a silent host) before its own work."""
    from assetcache import LedgerError
    from assetcache.ledger import postgres as _postgres
    from assetcache.ledger.postgres import PostgresLedger

    ledger = PostgresLedger(postgres_url)
    try:
        ledger.assets()  # migrated; the (empty) spool looked at
        ledger._local.record(_upload("spooled"))
        ledger._spool_waiting = True
        attempts: list[int] = []

        def failing_merge(batch: list[Asset]) -> list[str]:
            attempts.append(len(batch))
            raise LedgerError("the shared ledger cannot take it")

        monkeypatch.setattr(ledger, "_merge", failing_merge)
        for _ in range(3):
            ledger.assets()
        assert attempts == [1]  # once, then held off for SPOOL_RETRY_S
        assert ledger._spool_retry_at - _postgres.time.monotonic() > _postgres.SPOOL_RETRY_S - 5
        monkeypatch.undo()  # the real merge again; and the hold-off is over:
        ledger._spool_retry_at = 0.0
        assert [a.asset_ref for a in ledger.assets()] == ["spooled"]
        assert ledger._local.spooled(10) == []
    finally:
        ledger.close()
