"""``--help`` tells the whole story: the environment, what --db takes (PostgreSQL too), the
duration syntax, where fill looks for relative paths and what its output lines mean."""

from __future__ import annotations

import re

from click.testing import CliRunner

from assetcache.cli import cli


def _help(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # wrapping aside


def test_the_top_level_help_names_every_variable_and_the_ledger_urls() -> None:
    text = _help()
    for name in ("USEAPI_TOKEN", "ASSETCACHE_DB", "ASSETCACHE_EMAIL", "ASSETCACHE_BASE_URL"):
        assert name in text, name
    assert "sqlite:///" in text and "postgresql://" in text
    assert "Ledger file or sqlite:/// URL" not in text  # no longer SQLite only


def test_the_top_level_help_gives_the_duration_syntax_and_fills_path_rule() -> None:
    text = _help()
    assert re.search(r"Durations \(DURATION\) are a number and a unit, s, m, h, d or w", text)
    assert "1d12h" in text
    assert "current folder and in the payload file's folder" in text and "--base DIR" in text


def test_fills_help_states_the_path_rule_and_the_lines_out() -> None:
    text = _help("fill")
    assert "looked for in the current folder and in the payload file's folder" in text
    assert "--base DIR" in text and "differ, the field fails" in text
    assert "output line N answers input line N" in text and "empty line" in text


def test_the_exit_codes_say_what_2_covers() -> None:
    text = _help()
    assert "an -o file that cannot be written" in text and "malformed fill or import input" in text
