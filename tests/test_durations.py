from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetcache._asset import RETENTION
from assetcache._durations import format_duration, parse_duration, readable, relative


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("45m", timedelta(minutes=45)),
        ("12h", timedelta(hours=12)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1D 12H 30s", timedelta(days=1, hours=12, seconds=30)),
        ("0", timedelta(0)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "d", "3x", "-1d", "1.5h", "3d-", "h3"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.text(max_size=20))
def test_parse_never_crashes_otherwise(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= timedelta(0)


@given(st.integers(min_value=1, max_value=10**9))
def test_single_unit_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(timedelta(seconds=seconds), parts=5)) == timedelta(
        seconds=seconds
    )


def test_format_and_relative() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert format_duration(timedelta(days=29, hours=23, minutes=5)) == "29d 23h"
    assert relative(now + timedelta(days=3, hours=4, minutes=2), now) == "in 3d 4h"
    assert relative(now - timedelta(hours=2), now) == "2h ago"
    assert relative(now, now) == "now"


# -- times as a person reads them: the largest unit and the next one down, rounded ------------

_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_NEXT_DOWN = {"d": "h", "h": "m", "m": "s"}
_RETENTION_S = int(RETENTION.total_seconds())
#: Up to twice the retention, and around each unit's edge, where rounding bites.
_DURATIONS = st.one_of(
    st.floats(min_value=0, max_value=2 * _RETENTION_S, allow_nan=False),
    st.sampled_from([0, 0.5, 1, 59.5, 60, 3_599.5, 3_600, 86_369, 86_370, 86_400, _RETENTION_S]),
    st.floats(min_value=-5, max_value=5).map(lambda n: _RETENTION_S + n),
).map(lambda s: timedelta(seconds=s))


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (45, "45s"),
        (60, "1m"),
        (250, "4m 10s"),
        (3_600 * 3 + 5 * 60 + 29, "3h 5m"),
        (86_400 * 30 + 1, "30d"),  # a batch's fresh upload, "now" read before it: not "30d 1s"
        (86_400 * 30 - 1, "30d"),  # "now" read after it: not "29d 23h"
        (86_400 * 28 + 1, "28d"),  # "28d 1s ago" reads "28d ago"
        (86_400 * 29 + 3_600 * 23 + 29 * 60, "29d 23h"),
        (3_600 * 23 + 40 * 60, "23h 40m"),  # under a day stays under a day...
        (3_600 * 23 + 59 * 60 + 40, "1d"),  # ...unless it rounds to one
        (86_400 + 59 * 60, "1d 1h"),
    ],
)
def test_readable_examples(seconds: int, shown: str) -> None:
    assert readable(timedelta(seconds=seconds)) == shown


def _units(shown: str) -> list[tuple[int, str]]:
    return [(int(part[:-1]), part[-1]) for part in shown.split()]


def _read(shown: str) -> timedelta:
    return parse_duration(shown.replace(" ", ""))


@given(_DURATIONS)
def test_readable_shows_the_largest_unit_and_the_next_one_down_at_most(delta: timedelta) -> None:
    units = _units(readable(delta))
    assert 1 <= len(units) <= 2
    if len(units) == 2:
        (_, big), (small_value, small) = units
        assert _NEXT_DOWN[big] == small  # adjacent: "30d 1s" is not a time a person reads
        assert 0 < small_value < _UNIT_SECONDS[big] // _UNIT_SECONDS[small]
    assert units[0][0] > 0 or delta < timedelta(seconds=0.5)


@given(_DURATIONS)
def test_readable_is_off_by_at_most_half_its_smaller_unit(delta: timedelta) -> None:
    shown = readable(delta)
    smaller = _NEXT_DOWN.get(_units(shown)[0][1], "s")
    assert abs(_read(shown) - delta) <= timedelta(seconds=_UNIT_SECONDS[smaller] / 2)


@given(_DURATIONS, _DURATIONS)
def test_readable_keeps_order(a: timedelta, b: timedelta) -> None:
    shorter, longer = sorted((a, b))
    assert _read(readable(shorter)) <= _read(readable(longer))


@given(_DURATIONS)
def test_nothing_within_the_retention_reads_as_more(delta: timedelta) -> None:
    if delta <= RETENTION:
        assert _read(readable(delta)) <= RETENTION


@given(_DURATIONS, st.booleans())
def test_relative_rounds_as_readable(delta: timedelta, future: bool) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    moment = now + delta if future else now - delta
    shown = relative(moment, now)
    if abs((moment - now).total_seconds()) < 1:
        assert shown == "now"
    elif future:
        assert shown == f"in {readable(delta)}"
    else:
        assert shown == f"{readable(delta)} ago"
