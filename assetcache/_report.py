"""report: the ledger as one self-contained HTML page, to look at rather than read.

People recognise keyframes by sight, not by sha256: each live ref is a card with a thumbnail
(the CDN image, falling back to the local source file), the ref with a copy button, its account,
size, type, time left and source; above them, a timeline of expiries per day.

No network at build time, no dependency: the page is built from strings with the standard
library. Everything that came from a file name, a server or the ledger is escaped for where it
goes (``html.escape`` in text and attribute values; URLs only http(s) or a ``file:`` URL built
from the path), and the one script reads refs from ``data-`` attributes, never from text
spliced into code: a hostile file name or ref stays text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from typing import Final

from ._asset import RETENTION, Asset
from ._durations import format_duration

#: Refs with less than this left are marked as expiring.
EXPIRING: Final = timedelta(days=7)

_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}.meta{color:#666;margin-bottom:16px}
.timeline{display:flex;align-items:flex-end;gap:3px;height:90px;margin:8px 0 4px}
.day{flex:1;background:#6b8fd6;min-height:1px;position:relative}.day.soon{background:#d9822b}
.days{display:flex;justify-content:space-between;color:#666;font-size:12px;margin-bottom:20px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;overflow:hidden}
.card.expiring{border-color:#d9822b}.card img{width:100%;height:140px;object-fit:contain;
background:#eee}.ref{font-family:monospace;font-size:12px;word-break:break-all}
.card dl{display:grid;grid-template-columns:auto 1fr;gap:2px 8px;margin:6px 0 0;font-size:12px}
.card dt{color:#666}.card dd{margin:0;word-break:break-all}button{margin-top:4px}
"""

_SCRIPT: Final = """
for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", async () => {
    await navigator.clipboard.writeText(button.dataset.ref);
    button.textContent = "copied";
  });
}
for (const img of document.querySelectorAll("img[data-fallback]")) {
  img.addEventListener("error", () => {
    if (img.dataset.fallback && img.src !== img.dataset.fallback) {
      img.src = img.dataset.fallback;
    }
  });
}
"""


def build(assets: Sequence[Asset], now: datetime, *, title: str = "assetcache report") -> str:
    """The page for these ledger rows: the live ones get cards, sorted by time left."""
    live = sorted((a for a in assets if a.is_live(now)), key=lambda a: a.expires_at)
    expiring = sum(a.remaining_at(now) <= EXPIRING for a in live)
    return "".join(
        (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; ",
            "img-src http: https: file: data:; style-src 'unsafe-inline'; ",
            "script-src 'unsafe-inline'\">",
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            f"<div class='meta'>{len(live)} live ref(s), {expiring} expiring within "
            f"{EXPIRING.days} days; made {escape(now.strftime('%Y-%m-%d %H:%M UTC'))}</div>",
            _timeline(live, now),
            "<div class='cards'>",
            *(_card(a, now) for a in live),
            "</div>",
            f"<script>{_SCRIPT}</script></body></html>",
        )
    )


def _timeline(live: Sequence[Asset], now: datetime) -> str:
    per_day = [0] * RETENTION.days
    for asset in live:
        per_day[min(RETENTION.days - 1, asset.remaining_at(now).days)] += 1
    tallest = max(per_day) or 1
    bars = "".join(
        f"<div class='day{' soon' if day < EXPIRING.days else ''}' "
        f"style='height:{100 * count / tallest:.0f}%' "
        f"title='{count} expiring in {day}-{day + 1} days' data-count='{count}'></div>"
        for day, count in enumerate(per_day)
    )
    return (
        "<h2>Expiries per day</h2>"
        f"<div class='timeline'>{bars}</div>"
        f"<div class='days'><span>today</span><span>in {RETENTION.days} days</span></div>"
    )


def _card(asset: Asset, now: datetime) -> str:
    left = asset.remaining_at(now)
    fallback = Path(asset.source).as_uri() if asset.source else ""
    image = _attr(asset.media_url if asset.media_url.startswith(("http://", "https://")) else "")
    return (
        f"<div class='card{' expiring' if left <= EXPIRING else ''}'>"
        f"<img alt='' loading='lazy' src='{image or _attr(fallback)}' "
        f"data-fallback='{_attr(fallback)}'>"
        f"<div class='ref'>{escape(asset.asset_ref)}</div>"
        f"<button class='copy' type='button' data-ref='{_attr(asset.asset_ref)}'>copy ref</button>"
        "<dl>"
        f"<dt>account</dt><dd>{escape(asset.email)}</dd>"
        f"<dt>size</dt><dd>{asset.size:,} bytes</dd>"
        f"<dt>type</dt><dd>{escape(asset.content_type)}</dd>"
        f"<dt>left</dt><dd>{escape(format_duration(left))}</dd>"
        f"<dt>source</dt><dd class='source'>{escape(asset.source or '-')}</dd>"
        "</dl></div>"
    )


def _attr(value: str) -> str:
    return escape(value, quote=True)
