"""export / import: a ledger moves as JSON Lines, idempotently, and an imported row must be as
trustworthy as an upload answer (both caches, the CLI, and hostile rows)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assetcache import AssetCache, ImportReport
from assetcache._asset import EXPORT_FIELDS
from assetcache._transfer import asset_of
from assetcache.cli import cli

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, png, write

pytestmark = pytest.mark.both_engines


def _seed(cache: AssetCache, clock: Clock, tmp_path: Path) -> None:
    cache.resolve(write(tmp_path / "a.png", png("a")), email=EMAIL)
    cache.resolve(png("b"), email="b@example.com")
    clock.advance(timedelta(days=20))
    cache.resolve(png("c"), email=EMAIL)
    clock.advance(timedelta(days=15))  # a and b expired, c live


def test_export_then_import_moves_every_row_once(
    make_cache: Callable[..., AssetCache], clock: Clock, tmp_path: Path, luma: FakeLuma
) -> None:
    old = make_cache(db=tmp_path / "old.db")
    _seed(old, clock, tmp_path)
    rows = list(old.export())
    assert len(rows) == 3 and all(list(row) == list(EXPORT_FIELDS) for row in rows)
    assert json.loads(json.dumps(rows)) == rows  # JSON-ready as it is
    assert [r["email"] for r in old.export(email="b@example.com")] == ["b@example.com"]
    assert [r["sha256"] for r in old.export(live=True)] == [rows[2]["sha256"]]

    new = make_cache(db=tmp_path / "new.db")
    assert new.import_rows(rows) == ImportReport(added=3, skipped=0)
    assert new.import_rows(iter(rows)) == ImportReport(added=0, skipped=3)
    assert list(new.export()) == rows
    hit = new.lookup(png("c"), email=EMAIL)  # an imported row is an answer like any other
    assert hit is not None and hit.asset_ref == rows[2]["asset_ref"]
    assert luma.uploads == 3


def _valid_row(**changes: Any) -> dict[str, Any]:
    row = {
        "asset_ref": f"u1-email:{EMAIL}-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11",
        "sha256": "ab" * 32,
        "email": EMAIL,
        "content_type": "image/png",
        "size": 10,
        "uploaded_at": "2026-11-01T12:00:00+00:00",
        "expires_at": "2026-12-01T12:00:00+00:00",
        "upload_id": "0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11",
        "media_url": "https://storage.cdn-luma.com/uploads/x.png",
        "source": None,
        "revoked_at": None,
    }
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"asset_ref": "u1-email:eve@evil.example-image:x"}, "names another account"),
        ({"asset_ref": "ref\nwith newline"}, "asset_ref contains control"),
        ({"expires_at": "2026-12-01T12:00:01+00:00"}, "more than 30 days"),
        ({"uploaded_at": "2026-11-01T12:00:00"}, "UTC offset"),
        ({"sha256": "AB" * 32}, "sha256"),
        ({"content_type": "image/gif"}, "content_type"),
        ({"size": 0}, "size"),
        ({"size": True}, "size"),
        ({"email": "not an email"}, "email"),
        ({"media_url": "javascript:alert(1)"}, "media_url"),
        ({"source": "relative/path.png"}, "source"),
    ],
)
def test_a_row_that_could_not_be_an_upload_is_refused(
    cache: AssetCache, changes: dict[str, Any], why: str
) -> None:
    good = _valid_row(sha256="cd" * 32)
    with pytest.raises(ValueError, match=why) as info:
        cache.import_rows([good, _valid_row(**changes)])
    assert "row 2 cannot be imported" in str(info.value)
    # The row before it was merged, as the message says: importing again once fixed is safe.
    assert [row["sha256"] for row in cache.export()] == [good["sha256"]]


def test_rows_from_before_revocation_existed_are_accepted(cache: AssetCache) -> None:
    older = _valid_row()
    del older["revoked_at"]
    assert cache.import_rows([older]).added == 1
    assert next(iter(cache.export()))["revoked_at"] is None


def test_a_revoked_row_stays_revoked_when_moved(cache: AssetCache) -> None:
    revoked = _valid_row(revoked_at="2026-11-20T00:00:00+00:00")
    assert cache.import_rows([revoked]).added == 1
    (row,) = cache.assets()
    assert row.state(row.uploaded_at) == "revoked"


def test_rows_that_are_not_objects_or_lack_a_column_are_refused(cache: AssetCache) -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        cache.import_rows([["a", "list"]])
    incomplete = _valid_row()
    del incomplete["media_url"]
    with pytest.raises(ValueError, match="missing media_url"):
        cache.import_rows([incomplete])


# A shared, loaded machine can take seconds to draw one example: that is no finding.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(EXPORT_FIELDS),
        st.none() | st.booleans() | st.integers() | st.text(max_size=80) | st.lists(st.integers()),
    )
)
def test_any_json_value_in_any_column_is_an_asset_or_a_value_error(row: dict[str, Any]) -> None:
    candidate = {**_valid_row(), **row}
    try:
        asset = asset_of(candidate)
    except ValueError:
        return
    assert asset.expires_at <= asset.uploaded_at + timedelta(days=30)


@pytest.fixture
def run(luma: FakeLuma, clock: Clock) -> Callable[..., Any]:
    def invoke(db: Path, *args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(
            cli,
            ["--db", str(db), *args],
            obj={"clock": clock, "transport": luma.transport, "retry": FAST_RETRY},
            env={"USEAPI_TOKEN": TOKEN, "ASSETCACHE_EMAIL": None},
            input=input,
        )

    return invoke


def test_cli_export_import_pipeline(
    run: Callable[..., Any], make_sync_cache: Callable[..., AssetCache], clock: Clock,
    tmp_path: Path,
) -> None:  # fmt: skip
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _seed(make_sync_cache(db=old), clock, tmp_path)
    exported = run(old, "export")
    assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 3
    live = run(old, "export", "--live", "--email", EMAIL)
    assert [json.loads(line)["email"] for line in live.stdout.splitlines()] == [EMAIL]
    first = run(new, "import", input=exported.stdout + "\n")
    assert first.exit_code == 0 and first.stdout == "added 3, revoked 0, skipped 0 already present\n"
    (tmp_path / "rows.jsonl").write_text(exported.stdout)
    again = run(new, "import", str(tmp_path / "rows.jsonl"))
    assert again.exit_code == 0 and again.stdout == "added 0, revoked 0, skipped 3 already present\n"
    assert run(new, "export").stdout == exported.stdout


def test_cli_import_of_bad_input_is_a_usage_error(run: Callable[..., Any], tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    not_json = run(db, "import", input="{oops\n")
    assert not_json.exit_code == 2 and "line 1 of the input is not JSON" in not_json.stderr
    bad = json.dumps(_valid_row(expires_at="2027-01-01T00:00:00+00:00"))
    refused = run(db, "import", input=bad + "\n")
    assert refused.exit_code == 2 and "line 1 cannot be imported" in refused.stderr
    missing = run(db, "import", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2


def test_a_revocation_made_where_the_rows_came_from_is_imported(
    make_cache: Callable[..., AssetCache], tmp_path: Path, clock: Clock
) -> None:
    laptop = make_cache(db=tmp_path / "laptop.db")
    team = make_cache()
    ref = laptop.resolve(png("a"), email=EMAIL).asset_ref
    assert team.import_rows(laptop.export()) == ImportReport(added=1, skipped=0)
    laptop.forget(png("a"))
    assert team.import_rows(laptop.export()) == ImportReport(added=0, skipped=0, revoked=1)
    assert team.lookup(png("a"), email=EMAIL) is None  # the dead ref is never handed out
    assert [a.asset_ref for a in team.assets()] == [ref]
    assert team.import_rows(laptop.export()) == ImportReport(added=0, skipped=1)


def test_concurrent_imports_of_the_same_rows_add_each_once(
    make_cache: Callable[..., AssetCache], clock: Clock, tmp_path: Path, engine: str
) -> None:
    """Several machines importing one laptop's ledger at the same moment: each row lands once
    (the unique index decides, not a read before the write)."""
    import threading

    old = make_cache(db=tmp_path / "old.db")
    _seed(old, clock, tmp_path)
    rows = list(old.export())
    target = make_cache(db=tmp_path / "shared.db") if engine == "sqlite" else make_cache()
    importers = [make_cache(db=target.db_path) if engine == "sqlite" else make_cache()]
    importers += [make_cache(db=target.db_path) if engine == "sqlite" else make_cache()]
    importers += [target]
    start = threading.Barrier(len(importers))
    reports: list[ImportReport] = []

    def one(cache: AssetCache) -> None:
        start.wait()
        reports.append(cache.import_rows(rows))

    threads = [threading.Thread(target=one, args=(c,)) for c in importers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.added for r in reports) == len(rows)
    assert sum(r.skipped for r in reports) == len(rows) * (len(importers) - 1)
    assert len(list(target.export())) == len(rows)


def test_a_ref_handed_out_again_for_the_same_bytes_is_one_row_with_the_later_times(
    make_cache: Callable[..., AssetCache], clock: Clock
) -> None:
    ref = f"u1-email:{EMAIL}-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11"
    upload = {"id": "i", "media": {"url": "https://cdn/m"}}
    body = json.dumps({"assetRef": ref, "email": EMAIL, "upload": upload})
    luma = FakeLuma(script=[(200, {}, body.encode()), (200, {}, body.encode())])
    cache = make_cache(transport=luma.transport)
    first = cache.resolve(png("same"), email=EMAIL)
    clock.advance(timedelta(days=10))
    again = cache.resolve(png("same"), email=EMAIL, force=True)
    assert again.asset_ref == first.asset_ref and again.id == first.id
    rows = list(cache.export())
    assert len(rows) == 1 and rows[0]["uploaded_at"] == again.uploaded_at.isoformat()
    hit = cache.lookup(png("same"), email=EMAIL, min_remaining=timedelta(days=25))
    assert hit is not None and hit.expires_at == again.expires_at


def test_a_ref_handed_out_again_after_a_forget_stays_forgotten_in_the_ledger(
    make_cache: Callable[..., AssetCache],
) -> None:
    """Recording repeats what the server said; it never undoes a forget (made here, or on
    another machine between a lost acknowledgement and its retry)."""
    ref = f"u1-email:{EMAIL}-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11"
    upload = {"id": "i", "media": {"url": "https://cdn/m"}}
    body = json.dumps({"assetRef": ref, "email": EMAIL, "upload": upload}).encode()
    luma = FakeLuma(script=[(200, {}, body), (200, {}, body)])
    cache = make_cache(transport=luma.transport)
    first = cache.resolve(png("same"), email=EMAIL)
    assert len(cache.forget(first.asset_ref)) == 1
    again = cache.resolve(png("same"), email=EMAIL)  # the server's answer, as it gave it
    assert again.asset_ref == ref and again.reused is False
    assert cache.lookup(png("same"), email=EMAIL) is None  # the ledger still says: forgotten
    assert len(list(cache.export())) == 1
