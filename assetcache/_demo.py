"""Sample images for the demo: small, valid PNGs made with the standard library."""

from __future__ import annotations

import struct
import zlib


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
