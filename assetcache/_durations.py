"""Durations as people type them (``90s``, ``45m``, ``12h``, ``3d``, ``2w``, ``1d12h``) and
times as people read them (``in 3d 4h``, ``2h ago``).

How a time is rounded for reading (``readable``, ``relative``): its largest unit and the next
one down, that one rounded to the nearest (half up, carrying into the larger unit) --
``29d 23h``, ``3h 5m``, ``4m 10s``, ``45s`` -- and a smaller unit that is zero left out:
``30d``, not ``30d 0h``, and never ``30d 1s``. So a fresh upload reads ``30d left`` whether its
clock read a second before or after the upload's, and ``28d 1s ago`` reads ``28d ago``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

_UNITS: Final = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
#: Longer than any ledger can be old, short enough that adding it to a date never overflows.
MAX_DURATION: Final = timedelta(days=36_500)


def parse_duration(text: str) -> timedelta:
    """``"1d12h"`` -> 36 hours. Raises ValueError with the accepted forms."""
    compact = "".join(text.split()).lower()
    if compact == "0":
        return timedelta(0)
    parts = _parts(compact)
    if parts is None:
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit (s, m, h, d, w), "
            "e.g. 90s, 45m, 12h, 3d, 2w or 1d12h"
        )
    seconds = sum(number * _UNITS[unit] for number, unit in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is too long a duration: at most {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


def _parts(compact: str) -> list[tuple[int, str]] | None:
    """``"1d12h"`` -> [(1, "d"), (12, "h")]; None unless it is one or more number-unit pairs.

    By hand rather than with ``re``: ``ref --min-remaining`` is parsed on the cache-hit path,
    which must not pay for importing ``re``. Digits are what ``\\d`` matched: any Unicode
    decimal digit (``str.isdecimal``), which ``int`` reads.
    """
    parts: list[tuple[int, str]] = []
    digits = ""
    for char in compact:
        if char.isdecimal():
            digits += char
        elif char in _UNITS and digits:
            parts.append((int(digits), char))
            digits = ""
        else:
            return None
    return parts if parts and not digits else None


def format_duration(delta: timedelta, *, parts: int = 2) -> str:
    """The largest ``parts`` non-zero units of a duration: ``29d 23h``, ``3h 5m``, ``45s``.

    Days, not weeks: "29d" reads better than "4w 1d" for a 30-day retention.
    """
    return _format_seconds(abs(int(delta.total_seconds())), parts)


def _format_seconds(seconds: int, parts: int) -> str:
    # Plain integer arithmetic: ls formats two of these per row, for tens of thousands of rows.
    if not seconds:
        return "0s"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    if days and hours and parts == 2:
        return f"{days}d {hours}h"  # the usual shape under a 30-day retention: one f-string
    minutes, secs = divmod(rest, 60)
    shown = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(shown[:parts])


def readable(delta: timedelta) -> str:
    """A duration as a person reads it (see the module's docstring): ``29d 23h``, ``45s``."""
    return _readable_seconds(abs(delta.total_seconds()))


def _readable_seconds(seconds: float) -> str:
    # Plain arithmetic: ls formats two of these per row, for tens of thousands of rows.
    for i, (unit, size, smaller, smaller_size) in enumerate(_READING_STEPS):
        if seconds >= size:
            count = int(seconds / smaller_size + 0.5)  # of the smaller unit, half up
            if i and count * smaller_size >= _READING_STEPS[i - 1][1]:
                return _readable_seconds(count * smaller_size)  # carried: 23h 59m 40s is 1d
            whole, part = divmod(count, size // smaller_size)
            return f"{whole}{unit} {part}{smaller}" if part else f"{whole}{unit}"
    count = int(seconds + 0.5)
    return "1m" if count == 60 else f"{count}s"


#: Each unit a time may start with (the largest it holds), and the one shown after it.
_READING_STEPS: Final = (("d", 86_400, "h", 3_600), ("h", 3_600, "m", 60), ("m", 60, "s", 1))


def relative(moment: datetime, now: datetime) -> str:
    """``in 3d 4h`` for the future, ``2h ago`` for the past, ``now`` within a second; rounded
    as ``readable`` rounds."""
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    if seconds > 0:
        return "in " + _readable_seconds(seconds)
    return _readable_seconds(-seconds) + " ago"
