"""What the bytes are: content-type detection, bounded reads of files, and the content hash.

The remote checks the declared Content-Type header, not the bytes, so a PNG named ``.jpg``
would be uploaded as JPEG by a client that trusts extensions. Here the type comes from the
bytes alone, and everything that cannot be uploaded is refused before any request is sent.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Final, TypeAlias

from .._errors import InvalidImageError

#: The documented limit is "20 MB" without saying which megabyte. We take the larger reading
#: (20 MiB) so we never refuse a file the server would accept; if the server means 20,000,000
#: bytes, its 400 comes back to the user as an InvalidImageError that says so.
MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
WEBP: Final = "image/webp"
SUPPORTED_TYPES: Final = (JPEG, PNG, WEBP)

#: What a user passes to resolve(): a path, or the bytes themselves.
Source: TypeAlias = "str | os.PathLike[str] | os.PathLike[bytes] | bytes | bytearray | memoryview"

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"

# Formats people try to upload that the endpoint refuses, so the error can name them.
_KNOWN_OTHERS: Final[tuple[tuple[bytes, str], ...]] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"qoif", "QOI"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)
_ISOBMFF_BRANDS: Final = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"isom": "MP4 video",
    b"mp41": "MP4 video",
    b"mp42": "MP4 video",
    b"qt  ": "QuickTime video",
}


def sniff(data: bytes | bytearray | memoryview) -> str | None:
    """The upload Content-Type for these bytes, or None when they are not JPEG, PNG or WebP."""
    head = bytes(data[:16])
    if head[:3] == b"\xff\xd8\xff":
        return JPEG
    if head[:8] == _PNG_SIGNATURE:
        return PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def describe_unsupported(data: bytes | bytearray | memoryview) -> str:
    """A human name for an unsupported format, e.g. "GIF", or "an unrecognised format"."""
    head = bytes(data[:16])
    if head[4:8] == b"ftyp" and head[8:12] in _ISOBMFF_BRANDS:
        return _ISOBMFF_BRANDS[head[8:12]]
    for magic, name in _KNOWN_OTHERS:
        if head.startswith(magic):
            return name
    return "an unrecognised format"


@dataclass(frozen=True, slots=True)
class Content:
    """Validated bytes ready to upload, with their hash and detected type."""

    data: bytes
    sha256: str
    content_type: str

    @property
    def size(self) -> int:
        return len(self.data)


def check(data: bytes, *, where: str = "the data", path: str | None = None) -> Content:
    """Validate bytes for upload and hash them; raises InvalidImageError naming ``where``."""
    if not data:
        raise InvalidImageError(f"{where} is empty: nothing to upload", path=path)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidImageError(
            f"{where} is larger than the {MAX_UPLOAD_BYTES:,}-byte upload limit; "
            "scale or recompress it",
            path=path,
        )
    content_type = sniff(data)
    if content_type is None:
        raise InvalidImageError(
            f"{where} is {describe_unsupported(data)}, not JPEG, PNG or WebP; "
            "convert it to one of those",
            path=path,
        )
    import hashlib  # a stat-cache hit never hashes, so it never imports this

    return Content(data, hashlib.sha256(data).hexdigest(), content_type)


def display_path(path: str | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """The path as text for messages; undecodable bytes are shown escaped, never crash."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def open_regular(path: str | os.PathLike[str] | os.PathLike[bytes]) -> tuple[int, os.stat_result]:
    """Open a regular file for reading and return (fd, fstat).

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; the type
    is then checked on the open descriptor (fstat), so a file swapped after a path-level check
    cannot slip a device such as /dev/zero past us.
    """
    shown = display_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidImageError(f"{shown}: no such file", path=shown) from None
    except IsADirectoryError:
        raise InvalidImageError(f"{shown} is a directory, not an image file", path=shown) from None
    except PermissionError:
        raise InvalidImageError(f"{shown}: permission denied", path=shown) from None
    except OSError as exc:
        raise InvalidImageError(f"{shown}: cannot open ({exc.strerror})", path=shown) from None
    except ValueError:  # e.g. an embedded NUL byte, from a path read off stdin
        raise InvalidImageError(f"{shown!r} is not a valid file path", path=shown) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidImageError(f"{shown} is {_kind(st.st_mode)}, not a regular file", path=shown)
    return fd, st


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bounded(fd: int, *, shown: str) -> bytes:
    """Read at most MAX_UPLOAD_BYTES + 1 bytes: enough to know a file is too large."""
    chunks: list[bytes] = []
    remaining = MAX_UPLOAD_BYTES + 1
    try:
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise InvalidImageError(f"{shown}: cannot read ({exc.strerror})", path=shown) from None
    return b"".join(chunks)


def load_file(path: str | os.PathLike[str] | os.PathLike[bytes]) -> tuple[Content, os.stat_result]:
    """Read, validate and hash one file; returns the content and the stat taken before reading."""
    shown = display_path(path)
    fd, st = open_regular(path)
    try:
        data = read_bounded(fd, shown=shown)
    finally:
        os.close(fd)
    return check(data, where=shown, path=shown), st
