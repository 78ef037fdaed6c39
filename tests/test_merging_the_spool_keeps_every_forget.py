"""The spool of a shared ledger's machine file is merged by whichever process of the machine
gets there: a merge killed before it unspools, two merges of one spool at once, and a forget
made between a merge's read and its write never add an upload twice, never lose one, and never
leave a forgotten one live in the shared ledger. Against a real PostgreSQL server; the
processes are PostgresLedger instances sharing one machine file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from assetcache import Asset
from assetcache.ledger.postgres import PostgresLedger

from .conftest import EMAIL

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _upload(ref: str) -> Asset:
    return Asset(
        asset_ref=f"u1-email:{EMAIL}-image:{ref}",
        sha256=ref.ljust(64, "0"),
        email=EMAIL,
        content_type="image/png",
        size=1,
        uploaded_at=NOW,
        expires_at=NOW + timedelta(days=29),
        upload_id=f"id-{ref}",
        media_url=f"https://m/{ref}",
    )


def _held(url: str) -> list[tuple[str, bool]]:
    """(image, revoked) for each row of the shared ledger, by image."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT asset_ref, revoked_at IS NOT NULL FROM uploads").fetchall()
    return sorted((ref.rpartition(":")[2], revoked) for ref, revoked in rows)


@pytest.fixture
def machine(postgres_url: str) -> Iterator[list[PostgresLedger]]:
    """Two processes of one machine (one machine file), the shared ledger migrated."""
    processes = [PostgresLedger(postgres_url), PostgresLedger(postgres_url)]
    for process in processes:
        process.assets()  # migrated; the (empty) spool looked at
    yield processes
    for process in processes:
        process.close()


def test_a_forget_between_a_merges_read_and_its_write_is_never_undone(
    postgres_url: str, machine: list[PostgresLedger]
) -> None:
    merger, forgetter = machine
    x = merger._local.record(_upload("x"))  # spooled
    batch = merger._local.spooled(10)  # a merge reads the spool...
    forgetter._spool_retry_at = float("inf")  # (its own merges held off: a failed one earlier)
    revoked = forgetter.revoke(sha256=x.sha256, asset_ref=None, email=None, at=NOW)
    assert [a.asset_ref for a in revoked] == [x.asset_ref]
    assert _held(postgres_url) == [("x", True)]  # the forget took it there, revoked
    merger._merge(batch)  # ...and writes what it read, live, after the forget
    merger._local.unspool(batch)
    assert _held(postgres_url) == [("x", True)]
    assert merger._local.spooled(10) == []
    assert merger.newest(x.sha256, EMAIL, now=NOW, fresh=True) is None


def test_a_forget_that_reached_only_the_spool_is_carried_by_the_merge_it_raced(
    postgres_url: str, machine: list[PostgresLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forget's own write to the shared ledger failed; a merge read the row before the
    forget revoked it here, and writes it live after: that merge must carry the revocation
    before it is done, not leave it live there until its process's next session."""
    merger, forgetter = machine
    x = merger._local.record(_upload("x"))
    merger._spool_waiting = True
    real_merge = merger._merge
    raced: list[int] = []

    def merge_after_a_forget(batch: list[Asset]) -> object:
        if not raced:  # between the merge's read and its write: a forget, here only
            found = {"sha256": x.sha256, "asset_ref": None, "email": None, "at": NOW}
            raced.append(len(forgetter._local.revoke_spooled(**found)))  # type: ignore[arg-type]
        return real_merge(batch)

    monkeypatch.setattr(merger, "_merge", merge_after_a_forget)
    merger.ensure_ready()  # the session's merge of the spool
    assert raced == [1]
    assert _held(postgres_url) == [("x", True)]
    assert merger._local.spooled(10) == []
    assert not merger._spool_waiting
    assert merger.newest(x.sha256, EMAIL, now=NOW) is None


def test_a_merge_killed_before_it_unspools_is_finished_by_the_next_process(
    postgres_url: str, machine: list[PostgresLedger]
) -> None:
    first, _ = machine
    x = first._local.record(_upload("x"))
    first._local.record(_upload("y"))
    first._merge(first._local.spooled(10))  # the server has them; killed before unspooling
    later = PostgresLedger(postgres_url)
    try:  # its first session merges the spool again: nothing is added twice
        revoked = later.revoke(sha256=x.sha256, asset_ref=None, email=None, at=NOW)
        assert [a.asset_ref for a in revoked] == [x.asset_ref]
        assert later._local.spooled(10) == []
    finally:
        later.close()
    assert _held(postgres_url) == [("x", True), ("y", False)]


def test_two_processes_merging_one_spool_at_once_add_each_upload_once(
    postgres_url: str, machine: list[PostgresLedger]
) -> None:
    for ref in ("x", "y", "z"):
        machine[0]._local.record(_upload(ref))
    both_read = threading.Barrier(2)
    failures: list[BaseException] = []

    def merge(process: PostgresLedger) -> None:
        try:
            batch = process._local.spooled(10)
            both_read.wait()
            process._merge(batch)
            process._local.unspool(batch)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=merge, args=(p,)) for p in machine]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _held(postgres_url) == [("x", False), ("y", False), ("z", False)]
    assert machine[0]._local.spooled(10) == []
