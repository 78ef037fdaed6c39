"""Rows recorded while the clock ran ahead are no evidence of a live ref: never an answer,
flagged by ls and audit, removed by every prune (both caches, and the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from assetcache import AssetCache
from assetcache.cli import cli

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, png

pytestmark = pytest.mark.both_engines

AHEAD = timedelta(days=10)


def _upload_while_ahead(cache: AssetCache, clock: Clock) -> str:
    """Upload png("a") with the clock 10 days fast, then fix the clock; returns the ref."""
    clock.advance(AHEAD)
    ref = cache.resolve(png("a"), email=EMAIL).asset_ref
    clock.advance(-AHEAD)
    return ref


def test_a_row_from_the_future_is_never_an_answer(
    cache: AssetCache, luma: FakeLuma, clock: Clock
) -> None:
    skewed = _upload_while_ahead(cache, clock)
    assert cache.lookup(png("a"), email=EMAIL) is None
    fresh = cache.resolve(png("a"), email=EMAIL)
    assert not fresh.reused and fresh.asset_ref != skewed
    assert luma.uploads == 2
    # The skewed row expires later than the correct one, yet never outranks it.
    clock.advance(timedelta(days=2))
    assert cache.require(png("a"), email=EMAIL).asset_ref == fresh.asset_ref


def test_more_than_the_retention_left_is_not_trusted(
    cache: AssetCache, luma: FakeLuma, clock: Clock
) -> None:
    clock.advance(timedelta(hours=1))
    cache.resolve(png("a"), email=EMAIL)
    clock.advance(timedelta(hours=-1))  # uploaded "in an hour": 30d 1h left
    (row,) = cache.assets()
    assert row.state(clock.now) == "future"
    assert not row.is_live(clock.now)
    assert cache.lookup(png("a"), email=EMAIL) is None


def test_audit_counts_and_prune_removes_future_rows(
    cache: AssetCache, clock: Clock
) -> None:
    _upload_while_ahead(cache, clock)
    cache.resolve(png("a"), email=EMAIL)
    (report,) = cache.audit()
    assert (report.live, report.future, report.uploads) == (1, 1, 2)
    assert report.advice.action == "prune"
    assert cache.assets(expired=False)[0].state(clock.now) == "live"
    assert len(cache.assets(expired=False)) == 1
    removed = cache.prune()  # nothing is expired: only the future row goes
    assert [a.state(clock.now) for a in removed] == ["future"]
    assert len(cache.assets()) == 1


def test_prune_older_than_removes_future_rows_too(cache: AssetCache, clock: Clock) -> None:
    _upload_while_ahead(cache, clock)
    cache.resolve(png("b"), email=EMAIL)
    removed = cache.prune(expired=False, older_than=timedelta(days=20))
    assert [a.state(clock.now) for a in removed] == ["future"]
    assert [a.sha256 for a in cache.assets()] == [cache.resolve(png("b"), email=EMAIL).sha256]


def test_cli_ls_and_audit_flag_future_rows(
    make_sync_cache: Callable[..., AssetCache], luma: FakeLuma, clock: Clock, db: Path
) -> None:
    _upload_while_ahead(make_sync_cache(), clock)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli,
            ["--db", str(db), *args],
            obj={"clock": clock, "transport": luma.transport, "retry": FAST_RETRY},
            env={"USEAPI_TOKEN": TOKEN},
        )
        return result.exit_code, result.stdout

    code, out = run("ls")
    assert code == 0 and "FUTURE(clock)" in out and "STATUS" in out
    code, out = run("ls", "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "future"
    code, out = run("audit")
    assert code == 0
    assert "1 recorded in the future (clock ran ahead)" in out
    assert "next: assetcache prune" in out
    code, out = run("prune")
    assert code == 0 and "removed 1 entry" in out
    assert run("ls")[1].strip() == ""  # "no entries" goes to stderr
