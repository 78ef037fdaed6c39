"""The library's errors speak Python (``pass token=...``) and carry what a front end needs to
word its own advice: ``setting`` (which one) and ``problem`` (what happened, without advice).
No message of the library names an option of the command line."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from assetcache import AssetCache, InvalidEmailError, LedgerError, UnauthorizedError
from assetcache._email import normalize_email
from assetcache._errors import PYTHON_ADVICE

from .conftest import EMAIL, TOKEN, FakeLuma, png, write

#: What only a command line would say: an option, or "CLI".
CLI_WORDS = re.compile(r"(?<![\w-])--[a-z]|\bCLI\b|assetcache [a-z]+ ")


def _speaks_python(error: Exception) -> None:
    assert not CLI_WORDS.search(str(error)), str(error)


def test_no_token(tmp_path: Path) -> None:
    cache = AssetCache(db=tmp_path / "l.db", transport=FakeLuma().transport)
    with cache, pytest.raises(UnauthorizedError) as info:
        cache.resolve(png("a"), email=EMAIL)
    error = info.value
    assert (error.setting, error.problem) == ("token", "an upload is needed but no API token is set")
    assert str(error) == f"{error.problem}; {PYTHON_ADVICE['token']}"
    assert "pass token=..." in str(error)
    _speaks_python(error)


def test_a_token_no_server_would_take(tmp_path: Path) -> None:
    cache = AssetCache(token="two words", db=tmp_path / "l.db")
    with cache, pytest.raises(UnauthorizedError) as info:
        cache.resolve(png("a"), email=EMAIL)
    assert info.value.setting == "token" and "two words" not in str(info.value)
    assert info.value.problem is not None and info.value.problem.startswith("the API token contains")
    _speaks_python(info.value)


def test_a_rejected_token(tmp_path: Path) -> None:
    luma = FakeLuma(script=[401])
    cache = AssetCache(token=TOKEN, db=tmp_path / "l.db", transport=luma.transport)
    with cache, pytest.raises(UnauthorizedError) as info:
        cache.resolve(write(tmp_path / "a.png", png("a")), email=EMAIL)
    error = info.value
    assert error.setting == "token" and error.email == EMAIL
    assert error.problem == "useapi.net rejected the API token (HTTP 401): scripted 401"
    assert str(error).endswith(PYTHON_ADVICE["token"])
    _speaks_python(error)


def test_no_email() -> None:
    with pytest.raises(InvalidEmailError) as info:
        normalize_email("  ")
    assert (info.value.setting, info.value.problem) == ("email", "no account email given")
    assert str(info.value) == "no account email given; pass email=..."


def test_errors_without_a_setting_carry_none() -> None:
    with pytest.raises(InvalidEmailError) as info:
        normalize_email("nope")
    assert info.value.setting is None and info.value.problem is None
    _speaks_python(info.value)


def test_an_unknown_ledger_scheme_is_not_called_sqlite_only(tmp_path: Path) -> None:
    with pytest.raises(LedgerError) as info:
        AssetCache(db="mysql://me:secret@db.example.com/assets", transport=httpx.MockTransport(
            lambda request: httpx.Response(500)
        )).assets()  # fmt: skip
    message = str(info.value)
    assert "postgresql://" in message and "sqlite:///" in message and "secret" not in message
    assert "keeps its ledger in SQLite" not in message
    _speaks_python(info.value)
