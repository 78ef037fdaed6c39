"""`ls` lists the row `ref` would answer for each file and account (issue #19, item 10); `--history`
lists every upload with the replaced ones marked; `audit` and `ls` agree after a `refresh`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from assetcache import AssetCache

from .conftest import EMAIL, Clock, png, write

Run = Callable[..., Any]


def _json(run: Run, *args: str) -> list[dict[str, Any]]:
    result = run("ls", "--json", *args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _refreshed(run: Run, tmp_path: Path, clock: Clock) -> tuple[str, str]:
    """a.png uploaded, then refreshed 28 days later: (old ref, new ref)."""
    a = write(tmp_path / "a.png", png("a"))
    old = run("ref", str(a), "--email", EMAIL).stdout.strip()
    clock.advance(timedelta(days=28))
    assert run("refresh", "--expiring-within", "3d").exit_code == 0
    new = run("ref", str(a), "--email", EMAIL).stdout.strip()
    assert new and new != old
    return old, new


def test_after_a_refresh_ls_and_audit_agree(run: Run, tmp_path: Path, clock: Clock) -> None:
    old, new = _refreshed(run, tmp_path, clock)
    assert _json(run, "--expiring-within", "3d") == []  # the superseded row is not listed
    audit = json.loads(run("audit", "--json").stdout)
    assert [a["expiring_7d"] for a in audit["accounts"]] == [0]
    (current,) = _json(run)
    assert (current["asset_ref"], current["status"]) == (new, "live")
    table = run("ls", "--full").stdout
    assert new in table and old not in table


def test_history_marks_the_superseded_rows(run: Run, tmp_path: Path, clock: Clock) -> None:
    old, new = _refreshed(run, tmp_path, clock)
    for flag in ("--history", "--all"):
        rows = _json(run, flag)
        assert [(r["asset_ref"], r["status"]) for r in rows] == [(old, "superseded"), (new, "live")]
    listed = run("ls", "--history", "--full").stdout.splitlines()
    assert " superseded " in listed[1] and old in listed[1]
    only_expiring = _json(run, "--history", "--expiring-within", "3d")
    assert [r["status"] for r in only_expiring] == ["superseded"]
    clock.advance(timedelta(days=3))  # the old one is dead now: expired, not superseded
    assert [r["status"] for r in _json(run, "--history")] == ["expired", "live"]
    rows_csv = list(csv.DictReader(io.StringIO(run("ls", "--history", "--csv").stdout)))
    assert [r["status"] for r in rows_csv] == ["expired", "live"]
    assert [r["status"] for r in list(csv.DictReader(io.StringIO(run("ls", "--csv").stdout)))] == [
        "live"
    ]


def test_a_file_with_no_answer_is_listed_with_its_reason(
    run: Run, tmp_path: Path, clock: Clock
) -> None:
    a = write(tmp_path / "a.png", png("a"))
    b = write(tmp_path / "b.png", png("b"))
    run("ref", str(a), "--email", EMAIL)
    run("ref", str(b), "--email", EMAIL)
    assert run("forget", str(a), "--email", EMAIL).exit_code == 0
    clock.advance(timedelta(days=31))
    statuses = {Path(r["source"]).name: r["status"] for r in _json(run)}
    assert statuses == {"a.png": "revoked", "b.png": "expired"}
    assert [Path(r["source"]).name for r in _json(run, "--expired")] == ["b.png"]


def test_limit_sort_and_full_refs(run: Run, tmp_path: Path, clock: Clock) -> None:
    sizes = {"b.png": 300, "a.png": 100, "c.png": 200}
    for name, size in sizes.items():  # uploaded b, a, c, one hour apart
        run("ref", str(write(tmp_path / name, png("x" * size))), "--email", EMAIL)
        clock.advance(timedelta(hours=1))

    def names(*args: str) -> list[str]:
        return [Path(r["source"]).name for r in _json(run, *args)]

    assert names() == ["b.png", "a.png", "c.png"]  # by expiry
    assert names("--sort", "uploaded") == ["c.png", "a.png", "b.png"]  # latest first
    assert names("--sort", "name") == ["a.png", "b.png", "c.png"]
    assert names("--sort", "size") == ["b.png", "c.png", "a.png"]  # largest first
    assert names("--sort", "name", "--limit", "2") == ["a.png", "b.png"]
    limited = run("ls", "--limit", "1")
    assert len(limited.stdout.splitlines()) == 2 and "1 of 3 rows shown" in limited.stderr
    refs = [r["asset_ref"] for r in _json(run)]
    full = run("ls", "--full").stdout
    assert all(ref in full for ref in refs)
    assert not any(ref in run("ls").stdout for ref in refs)  # shortened by default
    assert run("ls", "--sort", "colour").exit_code == 2
    assert run("ls", "--limit", "-1").exit_code == 2


def test_the_library_keyword_in_both_caches(make_cache: Callable[..., AssetCache], tmp_path: Path, clock: Clock) -> None:
    cache = make_cache()
    a = write(tmp_path / "a.png", png("a"))
    first = cache.resolve(a, email=EMAIL)
    clock.advance(timedelta(days=28))
    second = cache.resolve(a, email=EMAIL, force=True)
    assert [x.asset_ref for x in cache.assets()] == [first.asset_ref, second.asset_ref]
    assert [x.asset_ref for x in cache.assets(current=True)] == [second.asset_ref]
    assert cache.assets(current=True, expiring_within=timedelta(days=3)) == []
    assert len(cache.assets(expiring_within=timedelta(days=3))) == 1  # every row, as before


def test_the_live_current_rows_are_found_without_reading_every_row(
    run: Run, tmp_path: Path, clock: Clock, db: Path
) -> None:
    """``assets(current=True, expiring_within=…)`` asks only the live candidates' keys for their
    current row; it lists exactly what deciding over every row lists."""
    from assetcache._listing import current_per_key, selected

    files = [write(tmp_path / f"{i}.png", png(str(i))) for i in range(6)]
    for path in files:
        run("ref", str(path), "--email", EMAIL)
    clock.advance(timedelta(days=10))
    run("upload", "--force", str(files[0]), str(files[1]), "--email", EMAIL)  # superseded ones
    clock.advance(timedelta(days=17))
    run("forget", str(files[2]), "--email", EMAIL)  # a revoked key
    with AssetCache(db=db, clock=clock) as cache:
        now = clock()
        for within in (timedelta(days=1), timedelta(days=3), timedelta(days=20), None):
            every = current_per_key(cache.assets(), now)
            expected = selected(every, now, expiring_within=within, expired=False)
            if within is None:
                got = cache.assets(current=True, expired=False)
            else:
                got = cache.assets(current=True, expiring_within=within)
                expected = selected(every, now, expiring_within=within, expired=None)
            assert [a.id for a in got] == [a.id for a in expected], within
        assert len(cache.assets(current=True, expired=False)) == 5  # 6 keys, one forgotten
