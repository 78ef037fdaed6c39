"""Email normalisation and its encoding as one URL path segment."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetcache import InvalidEmailError
from assetcache._email import email_segment, normalize_email


def test_normalisation_rule() -> None:
    assert normalize_email("  Me.Name@Example.COM ") == "Me.Name@example.com"
    assert normalize_email("a@b") == "a@b"
    # The local part is case-sensitive and kept; only the domain is folded.
    assert normalize_email("ME@x.io") != normalize_email("me@x.io")


@pytest.mark.parametrize(
    "bad",
    ["", " ", "plain", "@x.com", "x@", "a\x00@b.c", "a\n@b.c", "a@b\u200b.c", "x" * 250 + "@b.co"],
)
def test_refused(bad: str) -> None:
    with pytest.raises(InvalidEmailError):
        normalize_email(bad)


@pytest.mark.parametrize(
    ("email", "segment"),
    [
        ("a/b@x.com", "a%2Fb%40x.com"),
        ("a?b#c%d+e@x.com", "a%3Fb%23c%25d%2Be%40x.com"),
        ("first last@x.com", "first%20last%40x.com"),
    ],
)
def test_reserved_characters_encode_into_one_segment(email: str, segment: str) -> None:
    assert email_segment(normalize_email(email)) == segment


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_any_accepted_email_is_one_segment_that_round_trips(local: str, domain: str) -> None:
    try:
        email = normalize_email(f"{local}@{domain}")
    except InvalidEmailError:
        return
    segment = email_segment(email)
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert segment not in {"", ".", ".."}
    assert unquote(segment) == email
    assert normalize_email(email) == email  # idempotent
