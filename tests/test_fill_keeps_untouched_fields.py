"""fill (the command line): every field but the ref fields comes out as it went in. Numbers keep
their spelling (``1e400`` is not rewritten ``Infinity``, nor ``1.10`` ``1.1``, nor ``1E2``
``100.0``), and key order, nesting and unicode are kept; the Python API still takes and returns
plain values."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assetcache import REF_FIELDS, AssetCache

from .conftest import EMAIL, png, write

HUGE = "9" * 5000  # past Python's 4,300-digit int conversion limit


def test_numbers_and_everything_else_come_out_as_written(
    run: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a.png", png("a"))
    monkeypatch.chdir(tmp_path)
    before = (
        '{"seed": 1e400, "imageStart": "a.png", "cfg": 1.10, "steps": 1E2, "zero": -0, '
        f'"big": {HUGE}, "tiny": 1E-400, "nested": {{"a": [1.0, 2.50e-3, {{}}, []]}}, '
        '"text": "caf\\u00e9 \u2028 \U0001f600", "ok": true, "none": null, "odd": NaN}'
    )
    result = run("fill", "-", "-e", EMAIL, input=before)
    assert result.exit_code == 0 and result.stderr == ""
    found = re.search(r'"imageStart": "(u1-email:[^"]+)"', result.stdout)
    assert found is not None, result.stdout
    ref = found.group(1)
    expected = (
        '{"seed": 1e400, "imageStart": "' + ref + '", "cfg": 1.10, "steps": 1E2, "zero": -0, '
        f'"big": {HUGE}, "tiny": 1E-400, "nested": {{"a": [1.0, 2.50e-3, {{}}, []]}}, '
        '"text": "café \u2028 \U0001f600", "ok": true, "none": null, "odd": NaN}\n'
    )
    assert result.stdout == expected


def test_json_lines_split_only_at_newlines(run: Callable[..., Any]) -> None:
    """U+2028, U+0085 and friends may stand unescaped in a JSON string: they end no line."""
    text = '{"p": "a\u2028b\x85c", "n": 1.50}\n{"q": 2E0}\n'
    result = run("fill", "-", "-e", EMAIL, input=text)
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout == text


def test_a_number_where_a_ref_goes_is_named_as_written(run: Callable[..., Any]) -> None:
    result = run("fill", "-", "-e", EMAIL, input='{"imageEnd": 1.10}')
    assert result.exit_code == 4 and result.stdout == ""
    assert "imageEnd: 1.10 is not a file path or an assetRef" in result.stderr


def test_nesting_deeper_than_the_parser_goes_is_not_json(run: Callable[..., Any]) -> None:
    result = run("fill", "-", "-e", EMAIL, input="[" * 100_000 + "]" * 100_000)
    assert result.exit_code == 2 and result.stdout == ""
    assert "line 1 of the payload is not JSON" in result.stderr
    assert "unexpected" not in result.stderr


def test_the_python_api_takes_and_returns_plain_values(
    cache: AssetCache, tmp_path: Path
) -> None:
    write(tmp_path / "a.png", png("a"))
    payload = {"cfg": 1.10, "steps": 100, "seed": float("inf"), "imageStart": "a.png"}
    filled = cache.fill(payload, email=EMAIL, base_dir=str(tmp_path))
    assert {k: (type(v), v) for k, v in filled.items() if k != "imageStart"} == {
        "cfg": (float, 1.1),
        "steps": (int, 100),
        "seed": (float, float("inf")),
    }


# -- the property: any JSON document without ref fields comes out token for token -----------

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?[0-9][0-9.eE+-]*)'
    r"|(?P<other>[{}\[\],:]|true|false|null))",
    re.DOTALL,
)


class _Number:
    """A number literal in a generated document."""

    def __init__(self, text: str) -> None:
        self.text = text


numbers = st.from_regex(_NUMBER, fullmatch=True) | st.sampled_from(
    ["1e400", "-1E+400", "1E-400", "-0", "-0.0", "1.10", "1E2", "0.30000000000000004", HUGE]
)
texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)  # surrogates: not text
keys = texts.filter(lambda key: key not in (*REF_FIELDS, "email"))
values = st.recursive(
    st.none() | st.booleans() | texts | numbers.map(_Number),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
documents = st.dictionaries(keys, values, max_size=6)


@st.composite
def written(draw: st.DrawFn, value: Any) -> str:
    """``value`` as JSON text, each string escaped or not and spaced or not as drawn."""
    if isinstance(value, _Number):
        return value.text
    if isinstance(value, dict):
        members = [f"{draw(written(k))}{draw(_gap)}:{draw(_gap)}{draw(written(v))}" for k, v in value.items()]  # fmt: skip
        return "{" + f"{draw(_gap)},{draw(_gap)}".join(members) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(draw(written(v)) for v in value) + "]"
    return json.dumps(value, ensure_ascii=draw(st.booleans()))


_gap = st.sampled_from(["", " ", "  ", "\t"])


def tokens(text: str) -> list[tuple[str, Any]]:
    """The JSON tokens of ``text``: strings by value, numbers by spelling, the rest as is."""
    found, at = [], 0
    while text[at:].strip():
        match = _TOKEN.match(text, at)
        assert match is not None, text[at:]
        kind = match.lastgroup
        assert kind is not None
        token = match.group(kind)
        found.append((kind, json.loads(token) if kind == "string" else token))
        at = match.end()
    return found


# A shared, loaded machine can take seconds to draw one example: that is no finding. Each
# example runs the command in-process against this test's ledger, which no example changes.
@settings(
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(documents, min_size=1, max_size=3), st.data())
def test_any_document_without_ref_fields_comes_out_token_for_token(
    run: Callable[..., Any], docs: list[dict[str, Any]], data: st.DataObject
) -> None:
    lines = [data.draw(written(doc)) for doc in docs]
    result = run("fill", "-", "-e", EMAIL, input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 1
    for before, after in zip(lines, out, strict=False):
        assert tokens(after) == tokens(before)
