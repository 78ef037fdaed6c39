"""The HTML report in a real headless browser (Debian's chromium, driven by Playwright): it
renders, the emulator's thumbnails load (and a dead CDN link falls back to the local file), the
copy button copies, and a hostile file name or ref stays text.

The page runs under its own Content-Security-Policy here, as it does for its readers (that
policy lets nothing else run: tests/test_report_allows_only_its_own_script.py). The ``browser``
fixture (conftest) skips only when chromium or Playwright is missing, unless
ASSETCACHE_REQUIRE_BROWSER=1 (CI sets it, after installing chromium): then that is a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, Emulator
from assetcache._demo import sample_png

from .conftest import EMAIL

pytestmark = pytest.mark.slow

HOSTILE = "<img src=x onerror=\"document.title='pwned'\">'\"&<b>x.png"  # no "/": one name


def test_the_report_renders_loads_thumbnails_copies_and_escapes(
    browser: Any, tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    files = {
        "start.png": sample_png(64, 36, (255, 140, 0)),
        "end.png": sample_png(64, 36, (30, 144, 255)),
        HOSTILE: sample_png(32, 32, (46, 139, 87)),
    }
    for name, data in files.items():
        (frames / name).write_bytes(data)
    with Emulator(accounts=[EMAIL]) as emu:
        with AssetCache(
            db=tmp_path / "l.db", token=emu.token, base_url=emu.base_url
        ) as cache:
            assets = [cache.resolve(frames / name, email=EMAIL) for name in files]
            page = tmp_path / "report.html"
            page.write_text(cache.report())
        # The hostile file's CDN copy is "gone": its card must fall back to the local file.
        dead = assets[2].media_url
        html = page.read_text().replace(dead, emu.base_url + "/media/no-such-upload")
        page.write_text(html)

        context = browser.new_context()  # the page under its own policy
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        tab = context.new_page()
        dialogs: list[str] = []
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.goto(page.as_uri())
        tab.wait_for_load_state("load")
        # Predicates as functions: a string would be eval()ed, which the page's policy forbids.
        tab.wait_for_function(
            "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
            timeout=10_000,
        )

        assert tab.title() == "assetcache report"  # the hostile name set no title
        assert tab.locator(".card").count() == 3
        assert tab.locator(".card img").count() == 3  # no image injected by the name
        assert tab.locator(".card b").count() == 0
        widths = tab.eval_on_selector_all(".card img", "imgs => imgs.map(i => i.naturalWidth)")
        assert sorted(widths) == [32, 64, 64]  # every thumbnail really decoded
        sources = tab.eval_on_selector_all(".card img", "imgs => imgs.map(i => i.src)")
        assert sum(s.startswith(emu.base_url + "/media/") for s in sources) == 2
        assert sum(s.startswith("file://") for s in sources) == 1  # the fallback
        shown = tab.locator(".card .source").all_inner_texts()
        assert str(frames / HOSTILE) in shown  # the name, as text
        assert tab.locator(".timeline .day").count() == 30

        button = tab.locator("button.copy").first
        ref = button.get_attribute("data-ref")
        button.click()
        tab.wait_for_function(
            "() => document.querySelector('button.copy').textContent === 'copied'"
        )
        assert tab.evaluate("navigator.clipboard.readText()") == ref
        assert ref in {a.asset_ref for a in assets}
        assert dialogs == []
        context.close()
