"""The report's Content-Security-Policy runs the page's own script and nothing else.

Every text in the page is escaped, so markup in a file name or a ref stays text; the policy is
what holds if that ever failed. It names the page's one script and one stylesheet by their
sha256 (no ``'unsafe-inline'``), images only from the thumbnails' origins, embedded ones and
local files, and no plugin, ``<base>`` or form. Checked on the page's text, and in a real
browser (Debian's chromium, Playwright; see conftest's ``browser``): markup injected into the
generated page (an ``<img onerror>``, an ``<svg onload>``, an inline ``<script>``, a stylesheet
and a style attribute) does nothing, while the page's own script still copies refs and falls
back to the local file for a dead thumbnail; and a ref that would end the page's data block
(``</script>``) stays text there.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, Emulator
from assetcache._asset import Asset
from assetcache._demo import sample_png
from assetcache.report import build, thumbnails

from .conftest import EMAIL
from .test_report import data_of

#: What the injected markup does if it runs: leave a mark the test can read (no space in it:
#: it must also work as an unquoted attribute value).
MARK = "(window.ran=window.ran||[]).push"
#: Markup that runs script wherever it lands, as a ref could carry it if its escaping ever
#: failed ("/" between attributes: a ref has no whitespace), and would end the data block ...
HANDLERS = (
    f"</script><img/src=x/onerror={MARK}('onerror')><svg/onload={MARK}('onload')>"
    f"<script>{MARK}('data')</script>"
)
#: ... and as a file name could (spaces: a name has no "/").
NAME_HANDLERS = HANDLERS.replace("/", " ")
#: Inserted into the page's text after it was built, as if escaping had failed.
INJECTED = (
    f"<img src=x onerror=\"{MARK}('img')\">"
    f"<svg onload=\"{MARK}('svg')\"></svg>"
    f"<script>{MARK}('script')</script>"
    "<style>.refs{display:none}</style>"
)
#: Records every policy violation, from before the page's first byte (an init script runs
#: whatever the page's policy says, as the browser's own).
RECORD_VIOLATIONS = (
    "window.violations = [];"
    "document.addEventListener('securitypolicyviolation', e =>"
    " window.violations.push(e.effectiveDirective));"
)


def _policy(page: str) -> dict[str, list[str]]:
    found = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert found is not None
    directives = [d.split() for d in found.group(1).split(";")]
    return {name: values for name, *values in directives}


def _hash(text: str) -> str:
    return f"'sha256-{b64encode(sha256(text.encode()).digest()).decode()}'"


def _only(tag: str, page: str) -> str:
    """The text of the page's one ``tag`` element."""
    texts = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    assert len(texts) == 1
    return str(texts[0])


def _asset(ref: str, source: str | None, media_url: str, now: datetime) -> Asset:
    return Asset(
        asset_ref=ref,
        sha256="0" * 64,
        email=EMAIL,
        content_type="image/png",
        size=1,
        uploaded_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=29),
        upload_id="u",
        media_url=media_url,
        source=source,
    )


def test_the_policy_names_only_the_pages_own_script_stylesheet_and_image_origins() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    page = build(
        [
            _asset("r1", "/frames/a.png", "https://cdn.example.com/a.png", now),
            _asset("r2", "/frames/b.png", "https://cdn.example.com:8443/b.png", now),
            _asset("r3", "/frames/c.png", "http://[::1]/c.png", now),  # not nameable: local
            _asset(HANDLERS, "/frames/" + HANDLERS, "https://cdn.example.com/d.png", now),
        ],
        now,
    )
    assert _policy(page) == {
        "default-src": ["'none'"],
        "script-src": [_hash(_only("script", page))],
        "style-src": [_hash(_only("style", page))],
        "img-src": ["https://cdn.example.com", "https://cdn.example.com:8443", "file:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
    }
    # So nothing of the page's own may be inline but those two: no handler, no style (in
    # the markup: the script's own code may say "only =").
    markup = page.replace(_only("script", page), "")
    assert not re.search(r"\son\w+\s*=|\sstyle\s*=", markup)
    assert "<img/src" not in page and "\\u003cimg/src=x/onerror=" in page
    rows = {r["ref"]: r for r in data_of(page)["rows"]}
    assert HANDLERS in rows  # the data block gives the ref back as it was
    # The thumbnail the policy could not name: the local file alone.
    assert rows["r3"]["src"] == "file:///frames/c.png" and rows["r3"]["fallback"] == ""


@dataclass
class Report:
    page: Path
    refs: list[str]
    dead: str  # the CDN URL that no longer answers; its card falls back to the local file


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Report]:
    """A report of three uploads to the emulator, one of whose CDN links is dead; the emulator
    keeps serving the others while the test runs. Nothing embedded: the pictures come from the
    emulator's CDN and the local files, which the policy must allow."""
    monkeypatch.setattr(thumbnails, "EMBED_MAX_BYTES", 0)
    frames = tmp_path / "frames"
    frames.mkdir()
    for n, name in enumerate(("start.png", "end.png", "gone.png")):
        (frames / name).write_bytes(sample_png(40 + 8 * n, 30, (200, 60 * n, 90)))
    with Emulator(accounts=[EMAIL]) as emu:
        with AssetCache(db=tmp_path / "l.db", token=emu.token, base_url=emu.base_url) as cache:
            assets = [cache.resolve(p, email=EMAIL) for p in sorted(frames.iterdir())]
            text = cache.report()
        dead = emu.base_url + "/media/no-such-upload"
        gone = next(a for a in assets if a.source and a.source.endswith("gone.png"))
        page = tmp_path / "report.html"
        page.write_text(text.replace(gone.media_url, dead))
        yield Report(page, [a.asset_ref for a in assets], dead)


def _open(browser: Any, page: Path, **options: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(**options)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.add_init_script(RECORD_VIOLATIONS)
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.goto(page.as_uri())
    tab.wait_for_load_state("load")
    return context, tab, dialogs


def _check_the_pages_own_script_works(tab: Any, report: Report) -> None:
    # Predicates as functions: a string would be eval()ed, which the policy forbids.
    # The page's own thumbnails (injected images have no data-fallback).
    tab.wait_for_function(
        "() => [...document.querySelectorAll('img[data-fallback]')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=10_000,
    )
    sources = tab.eval_on_selector_all("img[data-fallback]", "imgs => imgs.map(i => i.src)")
    assert len(sources) == 3
    assert sum(s.startswith("file://") and s.endswith("gone.png") for s in sources) == 1
    assert report.dead not in sources  # fell back, by the page's own listener
    assert tab.locator("#rows tr:visible").count() == 3  # no stylesheet but its own applies
    button = tab.locator("button.copy").last
    button.click()
    tab.wait_for_function(
        "() => [...document.querySelectorAll('button.copy')].pop().textContent === 'copied'"
    )
    assert tab.evaluate("() => navigator.clipboard.readText()") == button.get_attribute("data-ref")


def _inject(page: Path) -> None:
    """Markup in four places of the built page, as an escaping failure would put it."""
    text = page.read_text()
    text = text.replace("<body>", "<body>" + INJECTED, 1)
    text = text.replace("<table class='refs'>", "<table class='refs' style='display:none'>", 1)
    text = text.replace("<th scope='row'>", "<th scope='row'>" + INJECTED, 1)
    page.write_text(text.replace("</body>", INJECTED + "</body>", 1))


@pytest.mark.slow
def test_injected_inline_script_and_handlers_do_not_run(browser: Any, report: Report) -> None:
    _inject(report.page)
    context, tab, dialogs = _open(browser, report.page)  # its "load": the images tried
    assert tab.evaluate("() => window.ran") is None  # no injected handler or script ran
    violated = set(tab.evaluate("() => window.violations"))
    # Refused by the policy, not merely idle: each kind of injection was blocked.
    assert {"script-src-elem", "script-src-attr", "style-src-elem", "style-src-attr"} <= violated
    _check_the_pages_own_script_works(tab, report)
    assert tab.evaluate("() => window.ran") is None
    assert dialogs == []
    context.close()


@pytest.mark.slow
def test_the_same_injection_runs_without_the_policy(browser: Any, report: Report) -> None:
    """The control: what the test above looks for is what injected markup does unchecked."""
    _inject(report.page)
    context, tab, _ = _open(browser, report.page, bypass_csp=True)
    tab.wait_for_function("() => new Set(window.ran).size === 3", timeout=10_000)
    assert set(tab.evaluate("() => window.ran")) == {"img", "svg", "script"}
    context.close()


@pytest.mark.slow
def test_markup_in_a_ref_or_a_file_name_stays_text_under_the_policy(
    browser: Any, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    image = tmp_path / "frame.png"
    image.write_bytes(sample_png(16, 16, (10, 200, 10)))
    hostile_source = tmp_path / NAME_HANDLERS
    hostile_source.write_bytes(sample_png(16, 16, (10, 10, 200)))
    page = tmp_path / "report.html"
    page.write_text(
        build(
            [
                _asset(HANDLERS, str(image), "http://127.0.0.1:9/none.png", now),
                _asset("ref-2", str(hostile_source), "http://127.0.0.1:9/none.png", now),
            ],
            now,
        )
    )
    context, tab, dialogs = _open(browser, page)
    tab.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
        timeout=10_000,
    )  # both fell back from a port where nothing listens to the local file
    assert HANDLERS in tab.locator("#rows .ref code").all_text_contents()
    assert str(hostile_source) in tab.locator("#rows .path").all_text_contents()
    assert tab.locator("#rows img").count() == 2
    assert tab.locator("svg").count() == 1  # the chart, and no other
    refs = [b.get_attribute("data-ref") for b in tab.locator("button.copy").all()]
    tab.locator("button.copy").nth(refs.index(HANDLERS)).click()
    tab.wait_for_function(
        "ref => [...document.querySelectorAll('button.copy')]"
        ".find(b => b.dataset.ref === ref).textContent === 'copied'",
        arg=HANDLERS,
    )
    assert tab.evaluate("() => navigator.clipboard.readText()") == HANDLERS
    assert tab.evaluate("() => window.ran") is None
    assert tab.evaluate("() => window.violations") == []  # nothing even tried
    assert dialogs == []
    context.close()
