"""The rules every layer reads: how long an upload lives, what a row is worth at a moment, the
margins a caller may ask for, and how long this machine's mirror of a shared ledger answers.

Plain values and functions at the bottom of the package: it imports nothing of assetcache, so
the value type (``_asset``), the ledger engines and the hit (``_hit``) all read one definition
and none of them has to import another to learn it. The console script's hit imports it, so it
imports nothing a hit does not need (no ``typing`` at run time; tests/test_entry.py pins it).
"""

from __future__ import annotations

import time
from datetime import timedelta

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Final, Literal

    #: What a row is worth at a given moment (see ``Asset.state``).
    AssetState = Literal["live", "expired", "future", "revoked"]

#: How long useapi.net keeps an upload (the documented retention).
RETENTION: Final = timedelta(days=30)
#: The margin ``resolve`` and ``assetcache ref`` ask for unless told otherwise.
DEFAULT_MIN_REMAINING: Final = timedelta(days=1)
#: How long a row read from a shared ledger answers lookups from this machine's mirror: the
#: bound on how late a forget made on another machine reaches this one (see ledger/postgres.py),
#: kept by both clocks (``ledger.sqlite_file.mirror_window``).
MIRROR_TTL: Final = timedelta(minutes=5)
MIRROR_TTL_NS: Final = MIRROR_TTL // timedelta(microseconds=1) * 1000
#: The machine clock: time since boot, counting suspend where the system can (Linux).
_BOOT_CLOCK: Final = getattr(time, "CLOCK_BOOTTIME", None)


def state(
    uploaded_at: datetime, expires_at: datetime, revoked_at: datetime | None, now: datetime
) -> AssetState:
    """What a row is worth at ``now`` (``Asset.state`` documents it)."""
    if revoked_at is not None:
        return "revoked"  # found dead before its time (forget): kept as history only
    if uploaded_at > now or expires_at > now + RETENTION:
        return "future"
    return "live" if expires_at > now else "expired"


# -- margins -----------------------------------------------------------------------------


def check_min_remaining(value: timedelta) -> timedelta:
    if not isinstance(value, timedelta):
        raise TypeError("min_remaining must be a datetime.timedelta")
    if value < timedelta(0) or value >= RETENTION:
        raise ValueError(
            f"min_remaining must be between 0 and {RETENTION.days} days (uploads live "
            f"{RETENTION.days} days); got {value}"
        )
    return value


def lookup_margin(min_remaining: timedelta | None) -> timedelta:
    """lookup's margin: zero unless given ("is anything live cached?")."""
    return timedelta(0) if min_remaining is None else check_min_remaining(min_remaining)


# -- the machine clock -------------------------------------------------------------------


def machine_ns() -> int:
    """This machine's clock for its mirror of a shared ledger: nanoseconds since boot. Nobody
    sets it (NTP, an administrator or a resumed VM may move the wall clock either way, this
    never jumps), and every process of the machine reads the same one."""
    if _BOOT_CLOCK is not None:
        return time.clock_gettime_ns(_BOOT_CLOCK)
    return time.monotonic_ns()
