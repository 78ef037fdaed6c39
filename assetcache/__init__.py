"""assetcache: resolve images to live useapi.net Luma assetRefs, uploading each content once.

    from assetcache import AssetCache
    with AssetCache() as cache:
        ref = cache.resolve("frame.png", email="me@example.com").asset_ref

Importing this package costs nothing: every public name is imported on first use (PEP 562),
because the console script imports ``assetcache._entry`` through this package, and a cache
hit answered there must not pay for the cache classes, the HTTP stack, the ORM or even
``typing``. Everything public is listed in ``__all__``; modules whose names start with ``_``
are private.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._aio import AsyncAssetCache
    from ._asset import RETENTION, Asset
    from ._cache import AssetCache
    from ._errors import (
        AccountError,
        AccountNotFoundError,
        AssetCacheError,
        ImportRowError,
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
    from ._results import AccountAudit, Advice, ImportReport, RefreshItem
    from ._retry import RetryPolicy
    from .content.sniff import MAX_UPLOAD_BYTES, SUPPORTED_TYPES
    from .emulator import EmulatedUpload, Emulator

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
    "ImportRowError",
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

#: Where each public name is defined (the private module it is imported from on first use).
_HOMES = {
    "_aio": ("AsyncAssetCache",),
    "_asset": ("RETENTION", "Asset"),
    "_cache": ("AssetCache",),
    "content.sniff": ("MAX_UPLOAD_BYTES", "SUPPORTED_TYPES"),
    "emulator": ("EmulatedUpload", "Emulator"),
    "_errors": (
        "AccountError",
        "AccountNotFoundError",
        "AssetCacheError",
        "ImportRowError",
        "InvalidEmailError",
        "InvalidImageError",
        "LedgerError",
        "NotCachedError",
        "ProtocolError",
        "RateLimitedError",
        "RemoteError",
        "ServerError",
        "SessionExpiredError",
        "UnauthorizedError",
    ),
    "_fill": ("REF_FIELDS", "FillError"),
    "_results": ("AccountAudit", "Advice", "ImportReport", "RefreshItem"),
    "_retry": ("RetryPolicy",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


if not TYPE_CHECKING:
    # Hidden from type checkers: a module ``__getattr__`` makes every attribute valid to them
    # (``assetcache.AsetCache`` would type-check as ``object``); they see the imports above.

    def __getattr__(name: str) -> object:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module 'assetcache' has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f".{module}", __name__), name)
        globals()[name] = value  # looked up once: later accesses skip this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
