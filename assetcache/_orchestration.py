"""The cache's methods of several steps, written once for both caches (``resolve_many``,
``refresh``, ``require``; ``fill`` and ``fill_many`` are ``_fill``'s), and the two loops that
drive them.

Each such method is a generator that makes every decision itself and *yields* each thing it
needs done that waits: a blocking call (``Blocking``), one resolve (``Resolve``) or a batch of
resolves (``ResolveEach``). A driver performs the step and sends back its answer. AssetCache
performs them in the calling thread (a batch in a pool of threads); AsyncAssetCache on the
event loop (blocking calls in worker threads, a batch as tasks). So the two caches differ only
in how they wait, the way httpx's two clients share every decision and repeat only their I/O.

Nothing here imports asyncio or threading: the synchronous cache's hit pays for neither.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from ._asset import RETENTION, Asset
from ._email import normalize_email
from ._errors import AssetCacheError, NotCachedError
from ._results import RefreshItem
from .content.sniff import Source, display_path

#: How many resolves a batch runs at once unless told otherwise.
DEFAULT_JOBS: Final = 4

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: What one resolve of a batch ends in: the asset, or the error that stopped it (kept in place).
Outcome = Asset | AssetCacheError
OnResult = Callable[[int, Outcome], None]


@dataclass(frozen=True, slots=True)
class Blocking(Generic[T]):
    """Work that blocks on the disk or the ledger; answered with what ``work()`` returns."""

    work: Callable[[], T]


@dataclass(frozen=True, slots=True)
class Resolve:
    """One resolve, run in line by whoever asks; answered with its Outcome."""

    source: Source
    email: str
    force: bool = False
    min_remaining: timedelta | None = None

    def by(self, resolve: Resolver[T_co], *, patient: bool = True) -> T_co:
        """What a cache's ``_resolve`` gives for this order (an Asset, or an awaitable one);
        ``patient=False``: KeyBusy rather than wait for another holder of its key."""
        return resolve(
            self.source,
            email=self.email,
            force=self.force,
            min_remaining=self.min_remaining,
            patient=patient,
        )


class Resolver(Protocol[T_co]):
    """A cache's ``_resolve`` method (``resolve``, and whether to wait for another holder)."""

    def __call__(
        self,
        source: Source,
        *,
        email: str,
        force: bool,
        min_remaining: timedelta | None,
        patient: bool,
    ) -> T_co: ...


@dataclass(frozen=True, slots=True)
class ResolveEach:
    """Every order resolved, at most ``jobs`` at a time; answered with their Outcomes in the
    orders' order. A driver hands each outcome to ``finished`` as soon as it has it."""

    orders: list[Resolve]
    jobs: int
    on_result: OnResult | None = None

    def finished(self, index: int, outcome: Outcome) -> Outcome:
        if self.on_result is not None:
            self.on_result(index, outcome)
        return outcome


class BatchOrder:
    """The order a batch's resolves run in, shared by the workers that take them (threads or
    tasks): each order first without waiting for another holder of its key (another
    process, machine or worker uploading the same image); an order whose key was busy comes
    back after every other order was tried, and then waits. So a farm's processes given one
    list of images upload different ones at once, instead of queueing behind whichever
    started first; and a batch never sits idle behind someone else's upload while it has
    other work. Outcomes still come out in the orders' order (``ResolveEach.finished``).

    ``next()`` and ``busy()`` are single deque operations (atomic under the GIL), so threads
    share one without a lock: a worker that finds both queues empty may end while another
    puts an order back, but that one then takes it up itself."""

    def __init__(self, count: int) -> None:
        self._first = deque(range(count))
        self._later: deque[int] = deque()

    def next(self) -> tuple[int, bool] | None:
        """The next order's index, and whether it may wait (None: nothing left)."""
        try:
            index = self._first.popleft()
        except IndexError:
            try:
                return self._later.popleft(), True
            except IndexError:
                return None
        # The batch's last order waits at once: there is nothing else to do meanwhile.
        alone = not self._first and not self._later
        return index, alone

    def busy(self, index: int) -> None:
        """The order's key was busy: take it up again later."""
        self._later.append(index)


Step = Blocking[Any] | Resolve | ResolveEach
#: A method written as steps: it yields Steps, is sent their answers, and returns a T.
Steps = Generator[Step, object, T]


def blocking(work: Callable[[], T]) -> Steps[T]:
    return cast(T, (yield Blocking(work)))


def resolved(order: Resolve) -> Steps[Outcome]:
    return cast(Outcome, (yield order))


def resolved_each(batch: ResolveEach) -> Steps[list[Outcome]]:
    return cast(list[Outcome], (yield batch))


# -- the two drivers: all that differs between the caches is how they wait ----------------


def run(steps: Steps[T], perform: Callable[[Step], object]) -> T:
    """Drive ``steps`` to their end in this thread."""
    answer: object = None
    while not isinstance(step := _next(steps, answer), _Ended):
        answer = perform(step)
    return step.value


async def run_async(steps: Steps[T], perform: Callable[[Step], Awaitable[object]]) -> T:
    """Drive ``steps`` to their end on the event loop."""
    answer: object = None
    while not isinstance(step := _next(steps, answer), _Ended):
        answer = await perform(step)
    return step.value


@dataclass(frozen=True, slots=True)
class _Ended(Generic[T]):
    value: T


def _next(steps: Steps[T], answer: object) -> Step | _Ended[T]:
    """The step ``steps`` asks for next once sent ``answer``, or what they returned."""
    try:
        return steps.send(answer)
    except StopIteration as end:
        return _Ended(cast(T, end.value))


# -- the methods ---------------------------------------------------------------------------


def resolve_many(
    sources: Iterable[Source],
    *,
    email: str,
    jobs: int = DEFAULT_JOBS,
    force: bool = False,
    min_remaining: timedelta | None = None,
    on_result: OnResult | None = None,
) -> Steps[list[Outcome]]:
    """A bad email or ``jobs`` raises before any resolve; each failing source leaves its
    AssetCacheError in its place."""
    items = list(sources)
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    email = normalize_email(email)
    orders = [Resolve(source, email, force, min_remaining) for source in items]
    return (yield from resolved_each(ResolveEach(orders, jobs, on_result)))


class RefreshPlanner(Protocol):
    """What refresh needs of the cache's core: which entries are due, and can be refreshed."""

    def refresh_plan(self, expiring_within: timedelta, email: str | None) -> list[RefreshItem]: ...


def refresh(
    core: RefreshPlanner, expiring_within: timedelta, email: str | None, dry_run: bool
) -> Steps[list[RefreshItem]]:
    plan = yield from blocking(lambda: core.refresh_plan(expiring_within, email))
    if dry_run:
        return plan
    margin = _refresh_margin(expiring_within)
    items = []
    for item in plan:
        if item.status == "would-refresh":
            assert item.asset.source is not None
            # One by one, in line: a refresh is a background chore, not a race.
            order = Resolve(item.asset.source, item.asset.email, min_remaining=margin)
            item = refreshed(item, (yield from resolved(order)))
        items.append(item)
    return items


def refreshed(item: RefreshItem, outcome: Outcome) -> RefreshItem:
    """The plan's item once its re-upload has run."""
    if isinstance(outcome, AssetCacheError):
        return RefreshItem(item.asset, "failed", error=outcome)
    return RefreshItem(item.asset, "refreshed", new=outcome)


def _refresh_margin(expiring_within: timedelta) -> timedelta:
    """A min_remaining that makes resolve re-upload anything expiring within the window."""
    return min(expiring_within + timedelta(seconds=1), RETENTION - timedelta(seconds=1))


def required(asset: Asset | None, source: Source, email: str) -> Asset:
    """What require answers once lookup has: the asset, or NotCachedError naming the source."""
    if asset is None:
        raise NotCachedError(
            f"no live assetRef is cached for {_describe(source)} on {normalize_email(email)}"
        )
    return asset


def _describe(source: Source) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return f"these {len(source):,} bytes"
    return display_path(source)
