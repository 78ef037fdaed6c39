"""report: the ledger as one self-contained HTML page (``build``; ``page.py`` says what is on it).

Its modules import one way, top to bottom: ``page`` (the page, its policy, the list's controls
and data block) over ``summary`` (per account) and ``chart`` (expiries per day), over ``rows``
(each row's grade and the data the page's script lists), over ``thumbnails`` (which picture a
row shows). Below them only leaves and the value type: no ledger, client or CLI. ``page.css``
and ``page.js`` are the page's stylesheet and script, shipped beside them.
"""

from __future__ import annotations

from .page import build as build

__all__ = ["build"]
