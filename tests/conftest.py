"""Shared fixtures. Every test runs with a private HOME and no assetcache/useapi variables,
so nothing can reach the real user dir or a real token."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from assetcache import AssetCache, RetryPolicy

TOKEN = "tok-SECRET-4f9a1c2e7b"
EMAIL = "me@example.com"
FAST_RETRY = RetryPolicy(attempts=4, max_elapsed=30, initial=0, max_backoff=0, jitter=0)

PNG_SIG = b"\x89PNG\r\n\x1a\n"
JPEG_SIG = b"\xff\xd8\xff\xe0"


def png(payload: bytes | str = b"x") -> bytes:
    """Bytes that sniff as PNG, distinct per payload."""
    if isinstance(payload, str):
        payload = payload.encode()
    return PNG_SIG + b"\x00\x00\x00\rIHDR" + payload


def jpeg(payload: bytes | str = b"x") -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return JPEG_SIG + payload


def webp(payload: bytes | str = b"x") -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return b"RIFF" + (len(payload) + 4).to_bytes(4, "little") + b"WEBP" + payload


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    for name in ("USEAPI_TOKEN", "ASSETCACHE_DB", "ASSETCACHE_BASE_URL", "ASSETCACHE_EMAIL"):
        monkeypatch.delenv(name, raising=False)


class Clock:
    """A settable clock for time travel."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class FakeLuma:
    """An httpx.MockTransport handler that answers like the upload endpoint.

    ``script`` holds responses to give first (status or (status, headers, body)); after it is
    used up every request succeeds.
    """

    token: str = TOKEN
    script: list[int | tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    uploads: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            if isinstance(scripted, int):
                return httpx.Response(scripted, json={"error": f"scripted {scripted}"})
            status, headers, body = scripted
            return httpx.Response(status, headers=headers, content=body)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": "Unauthorized"})
        email = request.url.path.rsplit("/", 1)[-1]
        upload_id = str(uuid.uuid4())
        with self.lock:
            self.uploads += 1
        digest = hashlib.sha256(request.content).hexdigest()[:8]
        return httpx.Response(
            200,
            content=json.dumps(
                {
                    "assetRef": f"u1-email:{email}-image:{upload_id}",
                    "email": email,
                    "upload": {"id": upload_id, "media": {"url": f"https://cdn/{digest}"}},
                }
            ).encode(),
        )

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture
def luma() -> FakeLuma:
    return FakeLuma()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "ledger.db"


@pytest.fixture
def make_cache(luma: FakeLuma, clock: Clock, db: Path) -> Iterator[Callable[..., AssetCache]]:
    made: list[AssetCache] = []

    def make(**kwargs: object) -> AssetCache:
        options: dict[str, object] = {
            "token": TOKEN,
            "db": db,
            "base_url": "https://api.test",
            "transport": luma.transport,
            "retry": FAST_RETRY,
            "clock": clock,
        }
        options.update(kwargs)
        cache = AssetCache(**options)  # type: ignore[arg-type]
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def cache(make_cache: Callable[..., AssetCache]) -> AssetCache:
    return make_cache()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    # Age the file past the racy-clean window so the stat cache may trust it.
    old = os.stat(path).st_mtime_ns - 10_000_000_000
    os.utime(path, ns=(old, old))
    return path
