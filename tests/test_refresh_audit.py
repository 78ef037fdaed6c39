"""AssetCache.refresh and AssetCache.audit with time travel."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from assetcache import Advice, AssetCache

from .conftest import EMAIL, Clock, FakeLuma, png, write

pytestmark = pytest.mark.both_engines


def test_refresh_reuploads_only_unchanged_expiring_sources(
    cache: AssetCache, clock: Clock, luma: FakeLuma, tmp_path: Path
) -> None:
    keep = write(tmp_path / "keep.png", png("keep"))
    gone = write(tmp_path / "gone.png", png("gone"))
    changed = write(tmp_path / "changed.png", png("changed"))
    for path in (keep, gone, changed):
        cache.resolve(path, email=EMAIL)
    cache.resolve(png("bytes"), email=EMAIL)
    clock.advance(timedelta(days=20))
    late = write(tmp_path / "late.png", png("late"))
    cache.resolve(late, email=EMAIL)  # 30 days left: not expiring
    clock.advance(timedelta(days=8))  # the first four have 2 days left
    gone.unlink()
    write(changed, png("CHANGED"))

    dry = {i.asset.source: i.status for i in cache.refresh(dry_run=True)}
    assert dry == {
        str(keep): "would-refresh",
        str(gone): "missing",
        str(changed): "changed",
        None: "no-source",
    }
    assert luma.uploads == 5

    items = cache.refresh()
    by_source = {i.asset.source: i for i in items}
    assert by_source[str(keep)].status == "refreshed"
    new = by_source[str(keep)].new
    assert new is not None and new.remaining_at(clock.now) == timedelta(days=30)
    assert luma.uploads == 6
    assert "gone" in by_source[str(gone)].reason
    # Refreshed content is now answered with the new ref; a second refresh does nothing.
    assert cache.lookup(keep, email=EMAIL).asset_ref == new.asset_ref  # type: ignore[union-attr]
    assert sorted(i.status for i in cache.refresh()) == ["changed", "missing", "no-source"]
    assert luma.uploads == 6


def test_refresh_window_and_email_filter(
    cache: AssetCache, clock: Clock, luma: FakeLuma, tmp_path: Path
) -> None:
    a = write(tmp_path / "a.png", png("a"))
    b = write(tmp_path / "b.png", png("b"))
    cache.resolve(a, email=EMAIL)
    cache.resolve(b, email="b@example.com")
    clock.advance(timedelta(days=25))  # 5 days left
    assert cache.refresh() == []  # default window is 3 days
    items = cache.refresh(expiring_within=timedelta(days=6), email="b@example.com")
    assert [(i.asset.email, i.status) for i in items] == [("b@example.com", "refreshed")]


def test_audit_counts_per_account(cache: AssetCache, clock: Clock, tmp_path: Path) -> None:
    a = write(tmp_path / "a.png", png("a"))
    cache.resolve(a, email=EMAIL)
    cache.resolve(png("dead"), email=EMAIL)
    cache.resolve(png("other"), email="z@example.com")
    clock.advance(timedelta(days=29, hours=1))  # all three within 24 h
    cache.resolve(png("dead"), email=EMAIL, force=True)  # a fresh copy: history grows
    clock.advance(timedelta(hours=2))  # the first three are now expired
    cache.resolve(png("soon"), email=EMAIL)
    clock.advance(timedelta(days=24))  # "soon" has 6 days left, "dead" copy 5 d 21 h
    report = {r.email: r for r in cache.audit()}
    mine = report[EMAIL]
    assert (mine.live, mine.expiring_24h, mine.expiring_7d, mine.expired) == (2, 0, 2, 1)
    assert mine.uploads == 4
    assert mine.refreshable == 0  # the live ones were resolved from bytes
    assert mine.advice == Advice("upload-again", EMAIL, 2)
    other = report["z@example.com"]
    assert (other.live, other.expired) == (0, 1)
    assert other.advice == Advice("prune", "z@example.com", 1)


def test_audit_advice_points_at_refresh(cache: AssetCache, clock: Clock, tmp_path: Path) -> None:
    cache.resolve(write(tmp_path / "a.png", png("a")), email=EMAIL)
    clock.advance(timedelta(days=26))
    (report,) = cache.audit()
    assert report.refreshable == 1
    assert report.advice == Advice("refresh", EMAIL, 1, timedelta(days=7))
    assert "assetcache" not in repr(report.advice)  # data, not a command line


def test_a_source_path_of_another_host_is_judged_only_there(
    cache: AssetCache, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a shared ledger, another machine's path means nothing here: never "missing"."""
    from assetcache import _cache

    here = _cache.this_host()
    monkeypatch.setattr(_cache, "this_host", lambda: "render-07")
    theirs = write(tmp_path / "theirs.png", png("t"))
    cache.resolve(theirs, email=EMAIL)
    assert cache.assets()[0].host == "render-07"
    monkeypatch.setattr(_cache, "this_host", lambda: here)
    theirs.unlink()  # gone here; on render-07 it may well exist
    mine = write(tmp_path / "mine.png", png("m"))
    cache.resolve(mine, email=EMAIL)
    clock.advance(timedelta(days=28))
    plan = {i.asset.host: i for i in cache.refresh(dry_run=True)}
    assert plan["render-07"].status == "other-host"
    assert plan["render-07"].reason == "source file is on another host (render-07)"
    assert plan[here].status == "would-refresh"
    (report,) = cache.audit()
    assert report.refreshable == 1
    assert [r["host"] for r in cache.export()] == ["render-07", here]
