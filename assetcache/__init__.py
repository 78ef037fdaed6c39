"""assetcache: resolve images to live useapi.net Luma assetRefs, uploading each content once.

    from assetcache import AssetCache
    with AssetCache() as cache:
        ref = cache.resolve("frame.png", email="me@example.com").asset_ref

Importing this package is cheap: the HTTP stack, the ORM and Alembic are imported only when an
upload or a migration needs them, so a cache hit stays fast. Everything public is listed in
``__all__``; modules whose names start with ``_`` are private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._asset import RETENTION, Asset
from ._cache import AccountAudit, Advice, AssetCache, ImportReport, RefreshItem
from ._content import MAX_UPLOAD_BYTES, SUPPORTED_TYPES
from ._errors import (
    AccountError,
    AccountNotFoundError,
    AssetCacheError,
    InvalidEmailError,
    InvalidImageError,
    LedgerError,
    NotCachedError,
    ProtocolError,
    RateLimitedError,
    RemoteError,
    ServerError,
    SessionExpiredError,
    UnauthorizedError,
)
from ._fill import REF_FIELDS, FillError
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._aio import AsyncAssetCache
    from ._emulator import EmulatedUpload, Emulator

__version__ = "0.1.0"

__all__ = [
    "MAX_UPLOAD_BYTES",
    "REF_FIELDS",
    "RETENTION",
    "SUPPORTED_TYPES",
    "AccountAudit",
    "AccountError",
    "AccountNotFoundError",
    "Advice",
    "Asset",
    "AssetCache",
    "AssetCacheError",
    "AsyncAssetCache",
    "EmulatedUpload",
    "Emulator",
    "FillError",
    "ImportReport",
    "InvalidEmailError",
    "InvalidImageError",
    "LedgerError",
    "NotCachedError",
    "ProtocolError",
    "RateLimitedError",
    "RefreshItem",
    "RemoteError",
    "RetryPolicy",
    "ServerError",
    "SessionExpiredError",
    "UnauthorizedError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # asyncio and http.server cost more to import than a whole cache hit: load them only for
    # those who use the async cache or the emulator.
    if name == "AsyncAssetCache":
        from ._aio import AsyncAssetCache

        return AsyncAssetCache
    if name in ("Emulator", "EmulatedUpload"):
        from . import _emulator

        return getattr(_emulator, name)
    raise AttributeError(f"module 'assetcache' has no attribute {name!r}")
