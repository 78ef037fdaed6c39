"""fill: ``"email": null`` in a payload is an absent email. The account comes from --email,
ASSETCACHE_EMAIL or ``email=`` exactly as when the key is missing, and the null is left in the
output as given (it is an untouched field). Both caches, both engines, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, InvalidEmailError

from .conftest import EMAIL, png, write

pytestmark = pytest.mark.both_engines


def test_a_null_email_falls_back_to_the_account_given(cache: AssetCache, tmp_path: Path) -> None:
    write(tmp_path / "a.png", png("a"))
    payload = {"email": None, "imageStart": "a.png", "prompt": "p"}
    filled = cache.fill(payload, email=EMAIL, base_dir=str(tmp_path))
    assert filled["imageStart"] == cache.require(tmp_path / "a.png", email=EMAIL).asset_ref
    assert next(iter(filled)) == "email" and filled["email"] is None  # as given, in its place
    many = cache.fill_many([payload, {"imageStart": "a.png"}], email=EMAIL, base_dir=str(tmp_path))
    assert [p["imageStart"] for p in many if isinstance(p, dict)] == [filled["imageStart"]] * 2


def test_a_null_email_and_no_account_given_is_no_account(cache: AssetCache, tmp_path: Path) -> None:
    write(tmp_path / "a.png", png("a"))
    with pytest.raises(InvalidEmailError):
        cache.fill({"email": None, "imageStart": "a.png"}, base_dir=str(tmp_path))


def test_cli_a_null_email_takes_the_environments_account(
    run: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a.png", png("a"))
    monkeypatch.chdir(tmp_path)
    payloads = [
        {"email": None, "imageStart": "a.png"},
        {"imageStart": "a.png"},
        {"email": "b@example.com", "imageStart": "a.png"},  # its own account still wins
    ]
    text = "".join(json.dumps(p) + "\n" for p in payloads)
    result = run("fill", "-", input=text, ASSETCACHE_EMAIL=EMAIL)
    assert result.exit_code == 0 and result.stderr == ""
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [list(p) for p in printed] == [list(p) for p in payloads]
    assert printed[0]["email"] is None and printed[0]["imageStart"] == printed[1]["imageStart"]
    assert f"-email:{EMAIL}-" in printed[0]["imageStart"]
    assert "-email:b@example.com-" in printed[2]["imageStart"]

    given = run("fill", "-", "--email", EMAIL, input=text.splitlines()[0])
    assert given.exit_code == 0 and json.loads(given.stdout) == printed[0]
    nowhere = run("fill", "-", input=text.splitlines()[0])
    assert nowhere.exit_code == 2 and nowhere.stdout == ""
    assert "no account email given" in nowhere.stderr
