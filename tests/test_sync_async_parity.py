"""AssetCache and AsyncAssetCache offer the same methods with the same parameters.

Behaviour is pinned by running the behavioural suite against both (conftest ``flavour``);
this pins the surface, so a method or an option added to one cache cannot miss the other.
"""

from __future__ import annotations

import inspect

from assetcache import AssetCache, AsyncAssetCache

from .conftest import ASYNC_ITERATORS

#: The only names that differ: how each cache is closed.
CLOSING = {"close", "__enter__", "__exit__", "aclose", "__aenter__", "__aexit__"}


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")} - CLOSING


def test_same_public_names() -> None:
    assert _public(AssetCache) == _public(AsyncAssetCache)


def test_same_parameters_and_defaults() -> None:
    for name in _public(AssetCache):
        sync, aio = getattr(AssetCache, name), getattr(AsyncAssetCache, name)
        if isinstance(sync, property):
            assert isinstance(aio, property), name
            continue
        ours = inspect.signature(sync).parameters
        theirs = inspect.signature(aio).parameters
        assert list(ours) == list(theirs), name
        for param in ours:
            assert ours[param].default == theirs[param].default, (name, param)
            assert ours[param].kind == theirs[param].kind, (name, param)


def test_async_methods_are_awaitable_and_iterators_async() -> None:
    for name in _public(AsyncAssetCache):
        attr = getattr(AsyncAssetCache, name)
        if isinstance(attr, property):
            continue
        if name in ASYNC_ITERATORS:
            assert not inspect.iscoroutinefunction(attr), name  # `async for`, no await
        else:
            assert inspect.iscoroutinefunction(attr), name
