"""Which picture each row of the report shows, and the image origins the page's policy names.

A small local file that still holds the uploaded bytes is embedded in the page (a ``data:``
URL): the page then shows it wherever it is opened and later, with no file, server or network
(the demo's report outlives its emulator and its temporary folder this way). Embedding stops at
a budget, so a ledger of large keyframes does not make a page of hundreds of megabytes. Any
other live row shows the CDN's ``media_url``, falling back to the local file; a dead row shows
the local file only (its CDN copy is gone).

Only what a policy can name is ever a picture: a ``data:`` URL built here, an http(s) URL whose
origin CSP can spell (anything else gets the local file), or a ``file:`` URL built from an
absolute path.
"""

from __future__ import annotations

import os
import re
import stat
from base64 import b64encode
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from .._asset import Asset
from ..content.sniff import SUPPORTED_TYPES

#: A file larger than this is never embedded (a thumbnail's worth; a keyframe is far larger).
EMBED_MAX_BYTES: Final = 64 * 1024
#: What all embedded files may add up to, before base64 (which adds a third).
EMBED_BUDGET_BYTES: Final = 8 * 1024 * 1024

#: A host a CSP source can name as it is (a DNS name or an IPv4 address, as urlsplit gives
#: them: lower case). Anything else (IPv6, non-ASCII) gets no thumbnail from the CDN; the row
#: shows the local file instead.
_CSP_HOST: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


@dataclass(frozen=True, slots=True)
class Picture:
    """What a row's ``<img>`` loads: ``src`` (or the embedded image numbered ``image``, -1 for
    none), then ``fallback`` if that fails to load ("" for none)."""

    src: str = ""
    fallback: str = ""
    image: int = -1


class Thumbnails:
    """Picks each row's picture, in the order asked (the most urgent first get embedded while
    the budget lasts), and remembers what the page's policy must allow."""

    def __init__(self, budget: int = EMBED_BUDGET_BYTES) -> None:
        self.origins: set[str] = set()
        #: The embedded images, as ``data:`` URLs, each content once.
        self.images: list[str] = []
        self._numbered: dict[str, int] = {}
        self._budget = budget

    def picture(self, asset: Asset, *, live: bool) -> Picture:
        image = self._embedded(asset)
        if image >= 0:
            return Picture(image=image)
        local = _file_url(asset.source)
        origin = _origin(asset.media_url) if live else None
        if origin is None:
            return Picture(src=local)
        self.origins.add(origin)
        return Picture(src=asset.media_url, fallback=local)

    def _embedded(self, asset: Asset) -> int:
        """The number of the embedded image for this row's content, or -1."""
        if asset.sha256 in self._numbered:
            return self._numbered[asset.sha256]
        if (
            asset.source is None
            or asset.content_type not in SUPPORTED_TYPES
            or asset.size > min(EMBED_MAX_BYTES, self._budget)
        ):
            return -1
        data = _read_regular(asset.source, asset.size)
        # Only the bytes that were uploaded: the file may have been edited since.
        if data is None or sha256(data).hexdigest() != asset.sha256:
            return -1
        self._budget -= len(data)
        self.images.append(f"data:{asset.content_type};base64,{b64encode(data).decode()}")
        self._numbered[asset.sha256] = len(self.images) - 1
        return len(self.images) - 1


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


def _file_url(source: str | None) -> str:
    """The ``file:`` URL of an absolute path, or "" (bytes have no file; a relative path
    names none once the page is elsewhere)."""
    if not source or not os.path.isabs(source):
        return ""
    return Path(source).as_uri()


def _read_regular(path: str, size: int) -> bytes | None:
    """The bytes of a regular file of exactly ``size`` bytes, or None (gone, unreadable,
    another size, or not a regular file: a FIFO put in its place must not block the report,
    hence the non-blocking open)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None
        chunks = []
        while size > 0 and (chunk := os.read(fd, size)):
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
