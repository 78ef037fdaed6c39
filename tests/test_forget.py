"""forget: a ref Luma rejected before its time is revoked, kept as history, never answered
again; the next resolve uploads (both caches, and the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache

from .conftest import EMAIL, Clock, FakeLuma, png, write

pytestmark = pytest.mark.both_engines


def test_a_forgotten_ref_is_never_answered_and_the_next_resolve_uploads(
    cache: AssetCache, luma: FakeLuma, tmp_path: Path, clock: Clock
) -> None:
    path = write(tmp_path / "a.png", png("a"))
    dead = cache.resolve(path, email=EMAIL)
    clock.advance(timedelta(hours=1))
    (revoked,) = cache.forget(path, email=EMAIL)
    assert revoked.asset_ref == dead.asset_ref and revoked.revoked_at == clock.now
    assert cache.lookup(path, email=EMAIL) is None
    assert cache.lookup(png("a"), email=EMAIL) is None
    fresh = cache.resolve(path, email=EMAIL)
    assert not fresh.reused and fresh.asset_ref != dead.asset_ref
    assert luma.uploads == 2
    states = [a.state(clock.now) for a in cache.assets()]
    assert sorted(states) == ["live", "revoked"]  # kept as history
    assert cache.forget(path, email=EMAIL)[0].asset_ref == fresh.asset_ref
    assert cache.forget(path, email=EMAIL) == []  # nothing live is left


def test_forget_by_ref_and_by_account(cache: AssetCache, clock: Clock) -> None:
    mine = cache.resolve(png("a"), email=EMAIL)
    theirs = cache.resolve(png("a"), email="b@example.com")
    assert [a.email for a in cache.forget(mine.asset_ref)] == [EMAIL]
    assert cache.lookup(png("a"), email="b@example.com") is not None
    assert [a.asset_ref for a in cache.forget(png("a"))] == [theirs.asset_ref]  # every account
    with pytest.raises(ValueError, match="neither a file nor an assetRef"):
        cache.forget("not a\nref")


def test_revoked_rows_are_counted_by_audit_and_removed_by_prune(
    cache: AssetCache, clock: Clock
) -> None:
    cache.resolve(png("a"), email=EMAIL)
    cache.resolve(png("b"), email=EMAIL)
    cache.forget(png("a"))
    (report,) = cache.audit()
    assert (report.live, report.revoked, report.uploads) == (1, 1, 2)
    assert report.advice.action == "prune"
    assert [a.state(clock.now) for a in cache.prune()] == ["revoked"]
    assert len(cache.assets()) == 1


def test_cli_forget(run: Callable[..., Any], tmp_path: Path, luma: FakeLuma) -> None:
    a, b = write(tmp_path / "a.png", png("a")), write(tmp_path / "b.png", png("b"))
    ref_a = run("ref", str(a), "-e", EMAIL).stdout.strip()
    ref_b = run("ref", str(b), "-e", EMAIL).stdout.strip()
    done = run("forget", str(a), "-e", EMAIL)
    assert done.exit_code == 0 and done.stdout == f"forgot {ref_a}  {EMAIL}  {a}\n"
    by_ref = run("forget", "--ref", ref_b, "--json")
    assert by_ref.exit_code == 0
    row = json.loads(by_ref.stdout)
    assert row["asset_ref"] == ref_b and row["revoked_at"] is not None
    table = run("ls").stdout
    assert table.count(" revoked ") == 2
    again = run("forget", str(a), "--ref", ref_b)
    assert again.exit_code == 3 and again.stdout == ""
    assert again.stderr.count("no live ref to forget") == 2
    assert run("ref", str(a), "-e", EMAIL).stdout.strip() != ref_a  # uploaded anew
    assert luma.uploads == 3
    assert "1 live" in run("audit").stdout and "2 revoked" in run("audit").stdout
    assert run("forget").exit_code == 2
    assert run("forget", str(tmp_path / "missing.png")).exit_code == 4
    assert run("forget", "--ref", "bad ref\x1b").exit_code == 2
