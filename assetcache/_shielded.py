"""asyncio work that a cancelled caller must not cut short.

A statement already sent to PostgreSQL (a lease claim the server may grant), or the row of an
upload that was paid for: cancelling the caller (``wait_for``, a task group) would cancel the
work with it. ``finished_anyway`` runs the work in a task of its own and, if the caller is
cancelled, lets it finish in the background; ``keep_running`` holds such a task until it is
done (the event loop keeps only weak references) and reads its outcome, so that nobody is
warned about an exception no caller is left to see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

#: Background tasks whose callers are gone, held until done.
_RUNNING: set[asyncio.Future[Any]] = set()


async def finished_anyway(
    work: Awaitable[_T], *, after_cancel: Callable[[asyncio.Future[_T]], None] | None = None
) -> _T:
    """Await ``work`` in a task of its own; if the caller is cancelled meanwhile, the task runs
    to its end (and then ``after_cancel(task)``, for instance to undo what it did)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        keep_running(task)
        if after_cancel is not None:
            task.add_done_callback(after_cancel)
        raise


def keep_running(task: asyncio.Future[Any]) -> None:
    """Hold ``task`` until it is done, and read its outcome then."""
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    task.add_done_callback(_retrieved)


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
