"""The HTML report in a real headless browser (Debian's chromium, driven by Playwright): it
renders, the emulator's thumbnails load (and a dead CDN link falls back to the local file), the
copy button copies, and a hostile file name or ref stays text; 10,000 refs over four accounts
render a page of rows at a time and filter by search, account and urgency; paths and refs
wrap only at separators; the demo's report still shows its thumbnails once the demo is over.

The page runs under its own Content-Security-Policy here, as it does for its readers (that
policy lets nothing else run: tests/test_report_allows_only_its_own_script.py). The ``browser``
fixture (conftest) skips only when chromium or Playwright is missing, unless
ASSETCACHE_REQUIRE_BROWSER=1 (CI sets it, after installing chromium): then that is a failure.

Timings are measured in the browser and printed (``-s`` shows them), never asserted: the
machine is shared. What is asserted is what keeps them small: the DOM holds one page of rows
(``PAGE_ROWS``), however many refs the page has.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, Emulator
from assetcache._asset import Asset
from assetcache._demo import sample_png
from assetcache.report import build, thumbnails
from assetcache.report.page import PAGE_ROWS

from .conftest import EMAIL

pytestmark = pytest.mark.slow

HOSTILE = "<img src=x onerror=\"document.title='pwned'\">'\"&<b>x.png"  # no "/": one name
ACCOUNTS = ("studio@example.com", "lighting@example.org", "farm-03@example.net", "bob@example.com")

#: Sets the search box as a reader types, and resolves once the next frame is painted: how
#: long the page takes to answer (predicates as functions: the page's policy forbids eval).
TYPE_AND_PAINT = """async (text) => {
  const start = performance.now();
  const box = document.getElementById("search");
  box.value = text;
  box.dispatchEvent(new Event("input"));
  await new Promise((painted) => requestAnimationFrame(() => setTimeout(painted, 0)));
  return performance.now() - start;
}"""
CHOOSE_AND_PAINT = """async ([id, value]) => {
  const start = performance.now();
  const select = document.getElementById(id);
  select.value = value;
  select.dispatchEvent(new Event("change"));
  await new Promise((painted) => requestAnimationFrame(() => setTimeout(painted, 0)));
  return performance.now() - start;
}"""


def test_the_report_renders_loads_thumbnails_copies_and_escapes(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thumbnails, "EMBED_MAX_BYTES", 0)  # the CDN's pictures, not copies
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
        with AssetCache(db=tmp_path / "l.db", token=emu.token, base_url=emu.base_url) as cache:
            assets = [cache.resolve(frames / name, email=EMAIL) for name in files]
            page = tmp_path / "report.html"
            page.write_text(cache.report())
        # The hostile file's CDN copy is "gone": its row must fall back to the local file.
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
        tab.wait_for_function(
            "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
            timeout=10_000,
        )

        assert tab.title() == "assetcache report"  # the hostile name set no title
        assert tab.locator("#rows tr").count() == 3
        assert tab.locator("#rows img").count() == 3  # no image injected by the name
        assert tab.locator("#rows b").count() == 0
        widths = tab.eval_on_selector_all("#rows img", "imgs => imgs.map(i => i.naturalWidth)")
        assert sorted(widths) == [32, 64, 64]  # every thumbnail really decoded
        sources = tab.eval_on_selector_all("#rows img", "imgs => imgs.map(i => i.src)")
        assert sum(s.startswith(emu.base_url + "/media/") for s in sources) == 2
        assert sum(s.startswith("file://") for s in sources) == 1  # the fallback
        assert str(frames / HOSTILE) in tab.locator("#rows .path").all_text_contents()
        assert tab.locator(".chart .bar").count() == 30
        assert tab.locator("#status").inner_text() == "1-3 of 3 refs"

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


def _month_of_work(now: datetime, count: int = 10_000) -> list[Asset]:
    """``count`` rows over four accounts, as a month of keyframes leaves them: most live,
    some expired, a few revoked, every one with a deep path."""
    rng = random.Random(19)
    assets = []
    for n in range(count):
        shot = rng.randrange(400)
        left = timedelta(seconds=rng.uniform(-5 * 86_400, 30 * 86_400 - 1))
        email = ACCOUNTS[min(3, int(rng.expovariate(1.0)))]
        assets.append(
            Asset(
                asset_ref=f"u{ACCOUNTS.index(email)}-email:{email}-image:{n:08x}-{shot:04x}",
                sha256=f"{n:064x}",
                email=email,
                content_type="image/png",
                size=rng.randrange(100_000, 18_000_000),
                uploaded_at=now + left - timedelta(days=30),
                expires_at=now + left,
                upload_id=str(n),
                media_url=f"http://127.0.0.1:9/media/{n}",  # nothing listens: no network
                source=f"/projects/spring/sq{shot // 40:02d}/sh{shot:04d}/keyframe_{n:05d}.png",
                revoked_at=now - timedelta(hours=1) if n % 997 == 0 else None,
            )
        )
    return assets


def _status(tab: Any) -> str:
    return str(tab.locator("#status").inner_text())


def test_ten_thousand_refs_render_a_page_of_rows_and_filter(browser: Any, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    assets = _month_of_work(now)
    page = tmp_path / "report.html"
    page.write_text(build(assets, now))
    live = [a for a in assets if a.is_live(now)]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(page.as_uri())
    tab.wait_for_load_state("domcontentloaded")  # the script has run: the rows are listed
    loaded = tab.evaluate(
        "() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
    )
    rows = tab.locator("#rows tr")
    assert rows.count() == PAGE_ROWS  # one page of the 10,000 in the DOM, not all of them
    assert _status(tab) == f"1-{PAGE_ROWS} of {len(live):,} refs"  # live ones, until asked
    tab.screenshot(path=str(tmp_path / "report.png"))

    # Search by ref, then by a folder of the path.
    target = live[len(live) // 2]
    searched = tab.evaluate(TYPE_AND_PAINT, target.asset_ref)
    assert _status(tab) == "1-1 of 1 refs"
    assert tab.locator("#rows .ref code").all_text_contents() == [target.asset_ref]
    tab.evaluate(TYPE_AND_PAINT, "SH0042/")
    in_shot = [a for a in live if "/sh0042/" in (a.source or "")]
    assert _status(tab) == f"1-{len(in_shot)} of {len(in_shot)} refs"
    cleared = tab.evaluate(TYPE_AND_PAINT, "")

    # By account: every row shown is that account's, and the count is its count.
    chosen = tab.evaluate(CHOOSE_AND_PAINT, ["account", "2"])  # accounts listed sorted
    email = sorted(ACCOUNTS)[2]
    theirs = [a for a in live if a.email == email]
    assert _status(tab) == f"1-{min(PAGE_ROWS, len(theirs))} of {len(theirs):,} refs"
    assert set(tab.locator("#rows td:nth-child(5)").all_text_contents()) == {email}
    tab.evaluate(CHOOSE_AND_PAINT, ["account", ""])

    # By urgency: under 24 h alone.
    for grade in ("week", "later"):
        tab.locator(f"input[name='grade'][value='{grade}']").uncheck()
    day = [a for a in live if a.remaining_at(now) < timedelta(days=1)]
    assert _status(tab) == f"1-{min(PAGE_ROWS, len(day))} of {len(day)} refs"
    assert set(tab.locator("#rows .badge").evaluate_all("bs => bs.map(b => b.className)")) == {
        "badge g-day"
    }
    tab.locator("input[name='grade'][value='expired']").check()
    gone = [a for a in assets if a.state(now) == "expired"]
    assert _status(tab) == f"1-{PAGE_ROWS} of {len(day) + len(gone):,} refs"
    sorted_by_name = tab.evaluate(CHOOSE_AND_PAINT, ["sort", "name"])
    tab.locator("#next").click()
    assert _status(tab).startswith(f"{PAGE_ROWS + 1}-{2 * PAGE_ROWS} of ")
    assert rows.count() == PAGE_ROWS

    # A ref with hours left never looks like one with days left.
    colours = tab.evaluate(
        """() => ["day", "week", "later", "expired"].map((g) => {
            const probe = document.createElement("span");
            probe.className = "badge g-" + g;
            document.body.append(probe);
            const style = getComputedStyle(probe);
            return style.backgroundColor + " " + style.color;
        })"""
    )
    assert len(set(colours)) == 4

    # A count in the summary lists its refs.
    tab.locator(".summary tfoot button.pick.g-day").click()
    assert _status(tab) == f"1-{min(PAGE_ROWS, len(day))} of {len(day)} refs"
    assert errors == []
    print(
        f"\n10,000 refs ({len(page.read_bytes()) / 1e6:.1f} MB page): listed in {loaded:.0f} ms "
        f"from navigation; search by ref {searched:.0f} ms, clearing it {cleared:.0f} ms, "
        f"account filter {chosen:.0f} ms, sort by name {sorted_by_name:.0f} ms (each to the "
        "next painted frame)"
    )
    context.close()


def test_paths_and_refs_wrap_only_at_separators(browser: Any, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    source = "/mnt/render-farm/projects/spring-campaign-2026/sequence-07/shot-0420/" + (
        "keyframe-final-approved-by-director-v12.png"
    )
    ref = "user:1234-email:someone.with.a.long.name@example.com-image:" + "a1b2c3d4e5" * 3
    fields = _fields(_month_of_work(now, 1)[0])
    fields.update(asset_ref=ref, source=source, expires_at=now + timedelta(days=3), revoked_at=None)
    page = tmp_path / "report.html"
    page.write_text(build([Asset(**fields)], now))
    context = browser.new_context(viewport={"width": 720, "height": 900})
    tab = context.new_page()
    tab.goto(page.as_uri())
    tab.wait_for_load_state("domcontentloaded")
    for cell, text in ((".path", source), (".ref code", ref)):
        pieces = tab.locator(f"#rows {cell}").first.evaluate(PIECES)
        assert all(len(tops) == 1 for _, tops in pieces), str(pieces)  # no piece was broken...
        assert len({tops[0] for _, tops in pieces}) > 1, f"{cell} did not wrap: narrow it"
        assert all(piece[-1] in "/-:_" for piece, _ in pieces[:-1])  # ...each ends at one
        assert tab.locator(f"#rows {cell}").first.text_content() == text  # no added char
    context.close()
    # The control: without the stylesheet's nowrap, the same check sees a name broken at "-".
    context = browser.new_context(viewport={"width": 720, "height": 900}, bypass_csp=True)
    tab = context.new_page()
    tab.goto(page.as_uri())
    tab.add_style_tag(content=".path,.ref code{white-space:normal}")
    pieces = tab.locator("#rows .path").first.evaluate(PIECES)
    assert any(len(tops) > 1 for _, tops in pieces)
    context.close()


#: An element's text nodes (a path or ref is one text node from one <wbr> to the next), each
#: with the distinct tops of the lines it is laid out on.
PIECES = """(cell) => {
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  const pieces = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    range.selectNodeContents(node);
    const tops = [...range.getClientRects()].map((r) => Math.round(r.top));
    pieces.push([node.textContent, [...new Set(tops)]]);
  }
  return pieces;
}"""


def _fields(asset: Asset) -> dict[str, Any]:
    return {name: getattr(asset, name) for name in Asset.__dataclass_fields__}


def test_the_demos_report_works_after_the_demo(browser: Any, tmp_path: Path) -> None:
    """Its emulator has stopped and its temporary folder is gone: the thumbnails are in the
    page, which is in the user's cache folder (not the current one)."""
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "assetcache", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    page = Path(os.environ["XDG_CACHE_HOME"], "assetcache", "demo", "report.html")
    assert f"open {page} in a browser" in done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing left in the current folder
    context = browser.new_context()
    tab = context.new_page()
    fetched: list[str] = []
    tab.on("request", lambda r: fetched.append(r.url))
    tab.goto(page.as_uri())
    tab.wait_for_load_state("load")
    tab.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
        timeout=10_000,
    )
    assert tab.locator("#rows img").count() == 3
    assert [u for u in fetched if not u.startswith("data:")] == [page.as_uri()]
    context.close()
