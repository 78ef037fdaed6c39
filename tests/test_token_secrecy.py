"""The API token is a secret: refused without being quoted, scrubbed from what servers echo,
never printed at any verbosity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from assetcache import AssetCache, InvalidImageError, UnauthorizedError
from assetcache._client import LumaClient
from assetcache.cli import cli

from .conftest import EMAIL, TOKEN, FakeLuma, png, write


@pytest.mark.parametrize("bad", ["tok\x00en-SECRET", "tok\nen-SECRET", "tök-SECRET", "two words"])
def test_tokens_no_header_can_carry_are_refused_without_quoting_them(
    bad: str, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    with pytest.raises(UnauthorizedError) as info:
        make_cache(token=bad).resolve(png(), email=EMAIL)
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value)
    assert luma.requests == []


def test_token_read_from_a_crlf_file_works(
    make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    assert make_cache(token=TOKEN + "\r\n").resolve(png(), email=EMAIL).reused is False
    assert luma.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_cli_never_prints_a_malformed_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(tmp_path / "l.db"),
            "-vv",
            "upload",
            str(write(tmp_path / "a.png", png())),
            "--email",
            EMAIL,
            "--json",
        ],
        env={"USEAPI_TOKEN": "tok\rSECRET\r"},
    )
    assert result.exit_code == 5
    assert "SECRET" not in result.output


def test_server_echoing_the_token_is_scrubbed() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": f"bad header {request.headers['authorization']}"})

    client = LumaClient(
        token=TOKEN, base_url="https://api.test", transport=httpx.MockTransport(echo)
    )
    with pytest.raises(InvalidImageError) as info:
        client.upload(png(), content_type="image/png", email=EMAIL)
    assert TOKEN not in str(info.value) and "***" in str(info.value)
