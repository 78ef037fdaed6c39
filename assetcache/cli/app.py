"""One invocation's state: the options of the group, what tests inject, and the cache, opened
on first use and closed when the command ends (and counting its resolves, for progress)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

from .._asset import Asset
from .._cache import AssetCache
from .._retry import RetryPolicy
from ..ledger.busy import KeyBusy


class CountingCache(AssetCache):
    """The CLI's AssetCache: ``on_resolved`` is called as each resolve ends, however it ends.

    fill and refresh resolve their files inside one library call (``fill_many``, ``refresh``),
    which goes through ``_resolve`` for each file (as ``resolve`` does); counting there gives
    their progress bars steps without the library printing, or taking a callback in its public
    signatures. A resolve a batch puts off (its key busy elsewhere: KeyBusy) has not ended.
    """

    on_resolved: Callable[[], None] = staticmethod(lambda: None)

    def _resolve(self, *args: Any, **kwargs: Any) -> Asset:
        try:
            asset = super()._resolve(*args, **kwargs)
        except KeyBusy:
            raise
        except BaseException:
            self.on_resolved()
            raise
        self.on_resolved()
        return asset


@dataclass
class App:
    """Per-invocation state; tests pass ``obj={"clock": ..., "transport": ..., "retry": ...}``."""

    db: str | None
    verbose: int
    quiet: bool = False  # -q: errors only (see terminal.py)
    clock: Callable[[], datetime] | None = None
    transport: Any = None
    retry: RetryPolicy | None = None
    _cache: AssetCache | None = field(default=None, repr=False)

    def cache(self) -> AssetCache:
        if self._cache is None:
            self._cache = CountingCache(
                db=self.db, transport=self.transport, clock=self.clock, retry=self.retry
            )
        return self._cache

    def counted(self, step: Callable[[], None]) -> AssetCache:
        """The cache, calling ``step`` as each of its resolves ends from now on (a bar's
        ``advance``)."""
        cache = self.cache()
        if isinstance(cache, CountingCache):
            cache.on_resolved = step
        return cache

    def reading_cache(self) -> AssetCache:
        """The cache for a command that only reads the ledger: one that does not exist is an
        error naming its path, and nothing is created (a typo in --db must not make an empty
        ledger, nor its folders, and report "no entries")."""
        from .. import _config
        from .._errors import LedgerError
        from ..ledger import absent_ledger

        missing = absent_ledger(_config.resolve_db(self.db))
        if missing is not None:
            raise LedgerError(
                f"ledger {missing}: there is no ledger there (nothing was created); "
                "check the path, or upload something to start one there",
                path=missing,
            )
        return self.cache()

    def now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(UTC)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()


def app_of(ctx: click.Context) -> App:
    """The invocation's state, which the group put in the context."""
    return ctx.ensure_object(App)
