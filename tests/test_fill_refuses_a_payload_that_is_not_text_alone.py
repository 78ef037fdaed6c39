"""fill (the command line): a payload holding a lone surrogate (``"\\ud83d"`` in a JSON string,
or a byte that is not UTF-8) is not text, and no UTF-8 output can carry it. It fails alone,
before anything is uploaded for it, with its line number and exit 2 (a malformed payload, as a
line that is not JSON is); every other payload is filled and written, to stdout or ``-o``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, FillError, InvalidImageError

from .conftest import EMAIL, FakeLuma, png, write

NOT_TEXT = "which is not text: half of a \\ud800-\\udfff surrogate pair, or a byte that is not UTF-8"


@pytest.fixture
def frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("a", "b", "c"):
        write(tmp_path / f"{name}.png", png(name))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("bad_line", "named"),
    [
        pytest.param(r'{"prompt": "\ud83d", "imageStart": "b.png"}', '"prompt" holds "\\ud83d"', id="field"),
        pytest.param(r'{"imageStart": "b\udc80.png"}', '"imageStart" holds "\\udc80"', id="ref-field"),
        pytest.param(r'{"meta": [{"\ude00": 1}], "imageStart": "b.png"}', '"meta" holds "\\ude00"', id="nested-key"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "-o"])
def test_a_payload_with_a_lone_surrogate_fails_alone(
    run: Callable[..., Any],
    luma: FakeLuma,
    frames: Path,
    bad_line: str,
    named: str,
    to_file: bool,
) -> None:
    lines = ['{"imageStart": "a.png", "n": 1.10}', bad_line, '{"imageStart": "c.png"}']
    out = frames / "filled.jsonl"
    args = ("-o", str(out)) if to_file else ()
    result = run("fill", "-", "-e", EMAIL, *args, input="\n".join(lines) + "\n")
    assert result.exit_code == 2
    assert result.stderr == f"assetcache: error: line 2: field {named}, {NOT_TEXT}; write the whole character and fill this payload again\n"  # fmt: skip
    written = out.read_text() if to_file else result.stdout
    assert result.stdout == "" or not to_file
    printed = written.splitlines()
    assert len(printed) == 3 and printed[0].endswith(', "n": 1.10}')
    assert printed[1] == ""  # in step with the input: the refused payload's line is empty
    assert [json.loads(printed[i])["imageStart"][:9] for i in (0, 2)] == ["u1-email:"] * 2
    assert luma.uploads == 2  # nothing was uploaded for the refused payload


def test_bytes_that_are_not_utf8_in_a_string_fail_that_payload_alone(
    run: Callable[..., Any], frames: Path
) -> None:
    text = b'{"imageStart": "a.png"}\n{"prompt": "caf\xe9"}\n{"imageStart": "c.png"}\n'
    result = run("fill", "-", "-e", EMAIL, input=text)
    assert result.exit_code == 2 and result.stdout.splitlines()[1:2] == [""]
    assert len(result.stdout.splitlines()) == 3
    assert 'line 2: field "prompt" holds "\\udce9", which is not text' in result.stderr


def test_the_exit_code_is_the_worst_payloads(run: Callable[..., Any], frames: Path) -> None:
    lines = [r'{"prompt": "\ud83d"}', '{"imageStart": "missing.png"}', '{"imageStart": "a.png"}']
    result = run("fill", "-", "-e", EMAIL, input="\n".join(lines))
    assert result.exit_code == 4  # a missing file (4) is worse than a malformed payload (2)
    assert "line 1: field" in result.stderr and "line 2: imageStart:" in result.stderr
    assert result.stdout.splitlines()[:2] == ["", ""]
    assert len(result.stdout.splitlines()) == 3


def test_one_payload_with_a_lone_surrogate(run: Callable[..., Any], frames: Path) -> None:
    result = run("fill", "-", "-e", EMAIL, input='{\n  "prompt": "\\ud83d"\n}\n')
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith('assetcache: error: the payload: field "prompt" holds')
    assert "unexpected" not in result.stderr


@pytest.mark.both_engines
def test_the_python_api_passes_strings_through_and_refuses_no_file(
    cache: AssetCache, luma: FakeLuma, tmp_path: Path
) -> None:
    """In Python a lone surrogate is a str like any other: fill leaves it in place (how to
    serialise it is the caller's choice), and in a ref field it names no file."""
    write(tmp_path / "a.png", png("a"))
    filled = cache.fill({"prompt": "\ud83d", "imageStart": "a.png"}, email=EMAIL, base_dir=str(tmp_path))  # fmt: skip
    assert filled["prompt"] == "\ud83d" and filled["imageStart"].startswith("u1-email:")
    with pytest.raises(FillError) as info:
        cache.fill({"imageStart": "\ud83d.png"}, email=EMAIL, base_dir=str(tmp_path))
    assert isinstance(info.value.failures["imageStart"], InvalidImageError)
    assert luma.uploads == 1
