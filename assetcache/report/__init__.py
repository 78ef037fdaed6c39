"""report: the ledger as one self-contained HTML page (see ``page.build``)."""

from __future__ import annotations

from .page import build as build

__all__ = ["build"]
