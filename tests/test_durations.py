from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetcache._durations import format_duration, parse_duration, relative


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


@pytest.mark.parametrize("text", ["10000000d", "36501d", "99999999999999999999w"])
def test_absurdly_long_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="too long a duration"):
        parse_duration(text)


@given(st.text(alphabet="0123456789wdhmsx\u0663\u00b2 ", max_size=12))
def test_hand_parser_accepts_what_the_regular_expression_did(text: str) -> None:
    """parse_duration reads units by hand (no ``re`` on the cache-hit path); it accepts exactly
    the old ``(?:\\d+[wdhms])+`` and reads the same parts (Unicode digits included)."""
    import re

    from assetcache._durations import _parts

    compact = "".join(text.split()).lower()
    expected = None
    if re.fullmatch(r"(?:\d+[wdhms])+", compact):
        expected = [(int(n), unit) for n, unit in re.findall(r"(\d+)([wdhms])", compact)]
    assert _parts(compact) == expected
