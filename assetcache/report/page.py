"""report: the ledger as one self-contained HTML page, to look at rather than read.

People recognise keyframes by sight, not by sha256: each live ref is a card with a thumbnail
(the CDN image, falling back to the local source file), the ref with a copy button, its account,
size, type, time left and source; above them, a timeline of expiries per day.

No network at build time, no dependency: the page is built from strings with the standard
library. Everything that came from a file name, a server or the ledger is escaped for where it
goes (``html.escape`` in text and attribute values; URLs only http(s) or a ``file:`` URL built
from the path), and the one script reads refs from ``data-`` attributes, never from text
spliced into code: a hostile file name or ref stays text.

And should anything ever slip through, the page's Content-Security-Policy runs nothing but its
own script and stylesheet, named by their sha256 (no ``'unsafe-inline'``: no other inline
``<script>``, no ``on…=`` attribute, no ``style=`` attribute), loads images only from the
thumbnails' own origins and local files, and allows no plugin, ``<base>`` or form. So the page
has no inline handler and no style attribute: its script attaches the listeners, and the
timeline's bar heights are classes of the (hashed) stylesheet.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from hashlib import sha256
from html import escape
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from .._asset import RETENTION, Asset
from .._durations import format_duration

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
  const fallBack = () => {
    if (img.dataset.fallback && img.getAttribute("src") !== img.dataset.fallback) {
      img.src = img.dataset.fallback;
    }
  };
  img.addEventListener("error", fallBack);
  // One that failed before this script ran (a quick 404) has fired its error event already.
  if (img.complete && img.naturalWidth === 0) {
    fallBack();
  }
}
"""

#: A host a CSP source can name as it is (a DNS name or an IPv4 address, as urlsplit gives
#: them: lower case). Anything else (IPv6, non-ASCII) gets no thumbnail from the CDN; the card
#: shows the local file instead.
_CSP_HOST: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


def build(assets: Sequence[Asset], now: datetime, *, title: str = "assetcache report") -> str:
    """The page for these ledger rows: the live ones get cards, sorted by time left."""
    live = sorted((a for a in assets if a.is_live(now)), key=lambda a: a.expires_at)
    expiring = sum(a.remaining_at(now) <= EXPIRING for a in live)
    per_day = _per_day(live, now)
    heights = [_height(count, max(per_day) or 1) for count in per_day]
    # The bars' heights as classes of the stylesheet: a style attribute would need the
    # policy to allow inline styles.
    style = _STYLE + "".join(f".h{h}{{height:{h}%}}" for h in sorted(set(heights))) + "\n"
    origins = {o for o in (_origin(a.media_url) for a in live) if o is not None}
    # No quote can be in it (hashes, and origins _origin spelled): the attribute needs none
    # of its own escaped, which keeps the policy readable in the page's source.
    csp = escape(policy(style, origins), quote=False)
    return "".join(
        (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            # First in <head>: a policy applies only to what follows it.
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
            f"<title>{escape(title)}</title><style>{style}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            f"<div class='meta'>{len(live)} live ref(s), {expiring} expiring within "
            f"{EXPIRING.days} days; made {escape(now.strftime('%Y-%m-%d %H:%M UTC'))}</div>",
            _timeline(per_day, heights),
            "<div class='cards'>",
            *(_card(a, now) for a in live),
            "</div>",
            f"<script>{_SCRIPT}</script></body></html>",
        )
    )


def policy(style: str, image_origins: Iterable[str]) -> str:
    """The page's Content-Security-Policy, for the page whose stylesheet is ``style``.

    A ``<meta>`` policy cannot say ``frame-ancestors`` (browsers ignore it there); nothing else
    the page does needs more than this.
    """
    images = " ".join(sorted(image_origins))
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hash(_SCRIPT)}",
            f"style-src {_hash(style)}",
            f"img-src {images} file:" if images else "img-src file:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _hash(text: str) -> str:
    """A CSP hash source: the sha256 of an element's exact text."""
    return f"'sha256-{b64encode(sha256(text.encode()).digest()).decode()}'"


def _origin(url: str) -> str | None:
    """The CSP source of an http(s) URL's origin, or None when it cannot be spelled as one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, a malformed IPv6 literal
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _CSP_HOST.fullmatch(host):
        return None
    return f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")


def _per_day(live: Sequence[Asset], now: datetime) -> list[int]:
    per_day = [0] * RETENTION.days
    for asset in live:
        per_day[min(RETENTION.days - 1, asset.remaining_at(now).days)] += 1
    return per_day


def _height(count: int, tallest: int) -> int:
    return round(100 * count / tallest)


def _timeline(per_day: Sequence[int], heights: Sequence[int]) -> str:
    bars = "".join(
        f"<div class='day h{height}{' soon' if day < EXPIRING.days else ''}' "
        f"title='{count} expiring in {day}-{day + 1} days' data-count='{count}'></div>"
        for day, (count, height) in enumerate(zip(per_day, heights, strict=True))
    )
    return (
        "<h2>Expiries per day</h2>"
        f"<div class='timeline'>{bars}</div>"
        f"<div class='days'><span>today</span><span>in {RETENTION.days} days</span></div>"
    )


def _card(asset: Asset, now: datetime) -> str:
    left = asset.remaining_at(now)
    fallback = Path(asset.source).as_uri() if asset.source else ""
    # Only from an origin the policy names (any http(s) URL whose origin CSP can spell).
    image = _attr(asset.media_url) if _origin(asset.media_url) else ""
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
