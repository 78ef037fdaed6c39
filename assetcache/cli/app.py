"""One invocation's state: the options of the group, what tests inject, and the cache, opened
on first use and closed when the command ends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

from .._cache import AssetCache
from .._retry import RetryPolicy


@dataclass
class App:
    """Per-invocation state; tests pass ``obj={"clock": ..., "transport": ..., "retry": ...}``."""

    db: str | None
    verbose: int
    clock: Callable[[], datetime] | None = None
    transport: Any = None
    retry: RetryPolicy | None = None
    _cache: AssetCache | None = field(default=None, repr=False)

    def cache(self) -> AssetCache:
        if self._cache is None:
            self._cache = AssetCache(
                db=self.db, transport=self.transport, clock=self.clock, retry=self.retry
            )
        return self._cache

    def now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(UTC)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()


def app_of(ctx: click.Context) -> App:
    """The invocation's state, which the group put in the context."""
    return ctx.ensure_object(App)
