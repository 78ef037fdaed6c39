"""Sizes as ``assetcache ls`` prints them: ``512 B``, ``1.5 KiB``, ``20.0 MiB`` (powers of 1024).

A leaf: the report shows sizes in the same units as ``ls``, and neither may import the other.
"""

from __future__ import annotations


def human_size(size: int) -> str:
    """Whole bytes below 1 KiB, else one decimal in the largest unit that keeps the number
    under 1024 (GiB at most)."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
