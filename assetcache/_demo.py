"""The demo's own things: its sample images (small, valid PNGs made with the standard
library) and where its report goes."""

from __future__ import annotations

import os
import struct
import zlib

from ._config import cache_dir
from ._owner import make_private_dirs


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def sample_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid truecolour PNG: a gradient from black to ``rgb``, distinct per colour."""
    rows = []
    for y in range(height):
        shade = (y + 1) / height
        pixel = bytes(int(c * shade) for c in rgb)
        rows.append(b"\x00" + pixel * width)  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )


SAMPLES = {
    "keyframe-start.png": (64, 36, (255, 140, 0)),
    "keyframe-end.png": (64, 36, (30, 144, 255)),
    "character-ref.png": (32, 32, (46, 139, 87)),
}


def default_report_path() -> str:
    """Where the demo writes its report unless told: the user's cache folder, which outlives
    the demo (its temporary folder does not) and is nobody's checkout (where a report in the
    current folder would show as an untracked file)."""
    return os.path.join(cache_dir(), "demo", "report.html")


def write_report(page: str, path: str) -> None:
    """Write the demo's report; the default place's folders are made private (0700), as the
    rest of the cache folder is."""
    if path == default_report_path():
        make_private_dirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
