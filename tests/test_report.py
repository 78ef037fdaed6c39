"""report: the HTML page's content and escaping, without a browser (see
test_report_in_a_browser.py for the page in a real one); both caches, both engines; the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache

from .conftest import EMAIL, Clock, png, write

pytestmark = pytest.mark.both_engines

HOSTILE = "<script>alert(1)</script>'\"&x.png"


def test_live_refs_become_cards_and_every_text_is_escaped(
    cache: AssetCache, clock: Clock, tmp_path: Path
) -> None:
    hostile = write(tmp_path / HOSTILE, png("h"))
    cache.resolve(hostile, email=EMAIL)
    cache.resolve(png("dead"), email="b@example.com")
    clock.advance(timedelta(days=25))
    soon = cache.resolve(png("fresh"), email=EMAIL)
    clock.advance(timedelta(days=3))  # the first two are 2 days from expiry... then one dies
    clock.advance(timedelta(days=3))
    page = cache.report()
    assert page.count("<button class='copy'") == 1  # only the live one
    assert soon.asset_ref in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;" not in page  # dead: no card
    clock.advance(timedelta(days=-6))
    page = cache.report()
    assert page.count("<button class='copy'") == 3
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#x27;&quot;&amp;x.png" in page
    assert page.count("<script>") == 1  # ours, and only ours
    assert "card expiring" in page
    mine = cache.report(email=EMAIL)
    assert mine.count("<button class='copy'") == 2 and "b@example.com" not in mine


def test_cli_report(run: Callable[..., Any], tmp_path: Path) -> None:
    run("ref", str(write(tmp_path / "a.png", png("a"))), "-e", EMAIL)
    out = tmp_path / "report.html"
    result = run("report", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == f"wrote {out}\n"
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert run("report").exit_code == 2  # -o is required
