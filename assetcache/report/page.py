"""report: the ledger as one self-contained HTML page, to find one's way in a month of work.

On top, a summary per account (refs per urgency grade, live bytes, the next expiry) and a chart
of the live refs expiring per day, with its numbers and axes. Below, the refs themselves, a
page at a time: search by file name or ref, filter by account and by grade (expired, under
24 h, under 7 days, later, revoked), sort; each row with a thumbnail, the source path, the ref
and a copy button, account, size (in ``ls``'s units), type, time left and expiry. The rows are
data (JSON) that the page's script lists a page at a time, so that 10,000 of them cost the
browser what 100 do.

No network at build time, no dependency: the page is built from strings with the standard
library; its stylesheet and script are the files beside this module. Everything that came from
a file name, a server or the ledger is escaped for where it goes: ``html.escape`` in the
summary's text, JSON with every ``<``, ``>`` and ``&`` escaped in the data block (so no
``</script>`` can end it), and the script puts values in the page as text nodes and DOM
properties only, never as markup. Pictures are only what thumbnails.py allows.

And should anything ever slip through, the page's Content-Security-Policy runs nothing but its
own script and stylesheet, named by their sha256 (no ``'unsafe-inline'``: no other inline
``<script>``, no ``on…=`` attribute, no ``style=`` attribute), loads images only from the
thumbnails' own origins, the embedded ones and local files, and allows no plugin, ``<base>`` or
form. So the page has no inline handler and no style attribute: its script attaches the
listeners, and the chart's geometry is in SVG attributes.
"""

from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from hashlib import sha256
from html import escape
from importlib.resources import files
from typing import Final

from .._asset import Asset
from .chart import chart, per_day
from .rows import GRADE_LABELS, LIVE_GRADES, Listed, listed, values
from .summary import summarise, summary_table
from .thumbnails import Thumbnails

#: Rows the list shows at once: the DOM never holds more than this many.
PAGE_ROWS: Final = 50

#: The list's sort orders (page.js knows each by its key), the first the default.
SORTS: Final = {
    "soonest": "soonest to expire first",
    "latest": "latest to expire first",
    "name": "file name",
    "size": "largest first",
    "account": "account",
}


def build(assets: Sequence[Asset], now: datetime, *, title: str = "assetcache report") -> str:
    """The page for these ledger rows, as of ``now``."""
    rows = listed(assets, now)
    accounts = sorted({row.asset.email for row in rows})
    thumbnails = Thumbnails()
    data = _data(rows, accounts, thumbnails, now)
    style, script = _text("page.css"), _text("page.js")
    # No quote can be in it (hashes, and origins thumbnails.py spelled): the attribute needs
    # none of its own escaped, which keeps the policy readable in the page's source.
    csp = escape(policy(style, thumbnails.origins, embedded=bool(thumbnails.images)), quote=False)
    return "".join(
        (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            # First in <head>: a policy applies only to what follows it.
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{escape(title)}</title><style>{style}</style></head><body>",
            _header(title, rows, accounts, now),
            "<section class='overview'><div><h2>Accounts</h2>",
            summary_table(summarise(rows, accounts), now),
            "</div><div><h2>Live refs expiring per day</h2>",
            _legend(),
            chart(per_day(r.asset.remaining_at(now) for r in rows if r.grade in LIVE_GRADES), now),
            "</div></section>",
            _list(rows, accounts),
            f"<script type='application/json' id='report-data'>{data}</script>",
            f"<script>{script}</script></body></html>",
        )
    )


def policy(style: str, image_origins: Iterable[str], *, embedded: bool = False) -> str:
    """The page's Content-Security-Policy, for the page whose stylesheet is ``style``.

    A ``<meta>`` policy cannot say ``frame-ancestors`` (browsers ignore it there); nothing else
    the page does needs more than this.
    """
    images = [*sorted(image_origins), *(["data:"] if embedded else []), "file:"]
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hash(_text('page.js'))}",
            f"style-src {_hash(style)}",
            f"img-src {' '.join(images)}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


@cache
def _text(name: str) -> str:
    """The text of a file shipped beside this module (the page's stylesheet or script)."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    """A CSP hash source: the sha256 of an element's exact text."""
    return f"'sha256-{b64encode(sha256(text.encode()).digest()).decode()}'"


def _header(title: str, rows: Sequence[Listed], accounts: Sequence[str], now: datetime) -> str:
    live = sum(row.grade in LIVE_GRADES for row in rows)
    day = sum(row.grade == "day" for row in rows)
    week = sum(row.grade == "week" for row in rows)
    return (
        f"<header><h1>{escape(title)}</h1><p class='meta'>{_many(len(rows), 'ref')} over "
        f"{_many(len(accounts), 'account')}: {live:,} live, of which <span class='g-day'>{day:,} "
        f"expire within 24 h</span> and <span class='g-week'>{week:,} more within 7 days"
        f"</span>. Made {now.strftime('%Y-%m-%d %H:%M')} UTC: times left are as of then.</p>"
        "<p class='stale' id='stale' hidden></p></header>"
    )


def _legend() -> str:
    keys = "".join(f"<span class='key g-{g}'>{GRADE_LABELS[g]}</span>" for g in LIVE_GRADES)
    return f"<p class='legend'>{keys}<span class='hint'>a bar's title gives its day</span></p>"


def _many(count: int, noun: str) -> str:
    """``1 ref``, ``10,000 refs``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _list(rows: Sequence[Listed], accounts: Sequence[str]) -> str:
    """The list's controls and its (empty) table: page.js fills it from the data block."""
    options = "".join(
        f"<option value='{n}'>{escape(email)}</option>" for n, email in enumerate(accounts)
    )
    chips = "".join(
        f"<label class='chip g-{g}'><input type='checkbox' name='grade' value='{g}'"
        f"{' checked' if g in LIVE_GRADES else ''}> {label} <span class='count'></span></label>"
        for g, label in GRADE_LABELS.items()
    )
    sorts = "".join(f"<option value='{key}'>{label}</option>" for key, label in SORTS.items())
    return (
        "<section class='list' id='refs'><h2>Refs</h2><div class='controls'>"
        "<input type='search' id='search' placeholder='file name or ref  (press /)' "
        "aria-label='Search by file name or ref' autocomplete='off'>"
        f"<select id='account' aria-label='Account'><option value=''>all "
        f"{_many(len(accounts), 'account')}</option>{options}</select>"
        f"<select id='sort' aria-label='Order'>{sorts}</select>"
        f"<fieldset class='grades'><legend>urgency</legend>{chips}</fieldset></div>"
        "<div class='pager'><span id='status' role='status'></span>"
        "<button type='button' id='previous'>previous</button>"
        "<button type='button' id='next'>next</button></div>"
        "<div class='table'><table class='refs'><thead><tr><th></th><th>left</th><th>file</th>"
        "<th>ref</th><th>account</th><th class='num'>size</th><th>type</th>"
        "<th>expires (UTC)</th></tr></thead><tbody id='rows'></tbody></table></div>"
        f"<noscript><p>The list of {len(rows):,} refs needs JavaScript.</p></noscript></section>"
    )


def _data(
    rows: Sequence[Listed], accounts: Sequence[str], thumbnails: Thumbnails, now: datetime
) -> str:
    """The data block's text: JSON that no ledger text can end early or turn into markup."""
    index = {email: n for n, email in enumerate(accounts)}
    # The live rows pick their pictures first: they get the embedding budget before the dead.
    live_first = sorted(range(len(rows)), key=lambda n: rows[n].grade not in LIVE_GRADES)
    pictures = {
        n: thumbnails.picture(rows[n].asset, live=rows[n].grade in LIVE_GRADES) for n in live_first
    }
    listed_rows = [
        values(row, now, index[row.asset.email], pictures[n]) for n, row in enumerate(rows)
    ]
    data = {
        "made": now.isoformat(),
        "pageRows": PAGE_ROWS,
        "accounts": list(accounts),
        "rows": listed_rows,
        "images": thumbnails.images,
    }
    text = json.dumps(data, separators=(",", ":"))  # ASCII: a lone surrogate stays an escape
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
