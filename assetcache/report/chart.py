"""The report's chart: live refs expiring per day over the retention, as an inline SVG with
its axes, a number on each bar, and each bar coloured by the grade its refs have.

Drawn here, once, from numbers only (no text from the ledger goes into it). Geometry is in SVG
attributes and colours are classes of the page's stylesheet: the page's policy allows no
``style`` attribute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from .._asset import RETENTION
from .rows import DAY, Grade, grade_of

WIDTH: Final = 1100
HEIGHT: Final = 230
#: Room for the y axis's numbers (left), the bars' numbers (top), and two lines of x labels.
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 20, 46
#: Label the x axis every this many days.
X_EVERY: Final = 7


def per_day(lefts: Iterable[timedelta]) -> list[int]:
    """How many of these live refs expire on each day from now: day 0 is the next 24 hours.
    A ref with the whole retention left counts on the last day."""
    days = [0] * RETENTION.days
    for left in lefts:
        days[min(RETENTION.days - 1, left // DAY)] += 1
    return days


def chart(days: Sequence[int], now: datetime) -> str:
    top, step = scale(max(days, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(days)
    parts = [
        f"<svg class='chart' viewBox='0 0 {WIDTH} {HEIGHT}' role='img' "
        "aria-labelledby='chart-title'>",
        f"<title id='chart-title'>{_summary(days)}</title>",
    ]
    for tick in range(0, top + 1, step):
        y = TOP + plot_h * (1 - tick / top)
        parts.append(
            f"<line class='grid' x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y:.1f}' y2='{y:.1f}'/>"
            f"<text class='y' x='{LEFT - 6}' y='{y + 4:.1f}' text-anchor='end'>{tick:,}</text>"
        )
    for day, count in enumerate(days):
        parts.append(_bar(day, count, LEFT + day * slot, slot, plot_h * count / top, now))
    for day in range(0, len(days), X_EVERY):
        x = LEFT + (day + 0.5) * slot
        first = "today" if day == 0 else f"+{day} d"
        date = (now + day * DAY).strftime("%b %d")
        parts.append(
            f"<text class='x' x='{x:.1f}' y='{HEIGHT - BOTTOM + 16}' text-anchor='middle'>"
            f"{first}</text><text class='x date' x='{x:.1f}' y='{HEIGHT - BOTTOM + 30}' "
            f"text-anchor='middle'>{date}</text>"
        )
    parts.append(
        f"<line class='axis' x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{TOP + plot_h}' "
        f"y2='{TOP + plot_h}'/><line class='axis' x1='{LEFT}' x2='{LEFT}' y1='{TOP}' "
        f"y2='{TOP + plot_h}'/>"
        f"<text class='x' x='{WIDTH - RIGHT}' y='{HEIGHT - 2}' text-anchor='end'>"
        "days left (dates in UTC)</text>"
        f"<text class='y' x='{LEFT - 6}' y='{TOP - 8}' text-anchor='end'>refs</text></svg>"
    )
    return "".join(parts)


def scale(tallest: int) -> tuple[int, int]:
    """The y axis's top and its step between ticks: a step of 1, 2 or 5 times a power of ten,
    at most five steps, and a top at or above ``tallest`` (at least 1)."""
    tallest = max(tallest, 1)
    power = 10 ** max(0, math.floor(math.log10(tallest)) - 1)
    step = next(s * power for s in (1, 2, 5, 10, 20, 50) if tallest <= 5 * s * power)
    return step * math.ceil(tallest / step), step


def grade_of_day(day: int) -> Grade:
    """The grade of the refs that expire on ``day``: day 0 holds those with under 24 h left,
    days 1 to 6 those with under 7 days."""
    return grade_of(day * DAY)


def _bar(day: int, count: int, x: float, slot: float, height: float, now: datetime) -> str:
    bottom = HEIGHT - BOTTOM
    date = (now + day * DAY).strftime("%b %d")
    refs = "ref" if count == 1 else "refs"
    bar = (
        f"<rect class='bar g-{grade_of_day(day)}' x='{x + 2:.1f}' y='{bottom - height:.1f}' "
        f"width='{slot - 4:.1f}' height='{height:.1f}'>"
        f"<title>{count:,} {refs} expiring in {day}-{day + 1} days (around {date})</title></rect>"
    )
    if not count:
        return bar
    return bar + (
        f"<text class='count' x='{x + slot / 2:.1f}' y='{bottom - height - 4:.1f}' "
        f"text-anchor='middle'>{_compact(count)}</text>"
    )


def _compact(count: int) -> str:
    """A bar's number, narrow enough for its bar: ``987``, ``1.2k``, ``12k``."""
    if count < 1000:
        return str(count)
    return f"{count / 1000:.1f}k" if count < 10_000 else f"{count // 1000}k"


def _summary(days: Sequence[int]) -> str:
    total = sum(days)
    return (
        f"{total:,} live refs expiring per day over {len(days)} days: {days[0]:,} within 24 h, "
        f"{sum(days[:7]):,} within 7 days"
    )
