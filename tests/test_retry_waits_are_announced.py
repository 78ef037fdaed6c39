"""Both clients announce each wait before another attempt as data (a RetryWait on the
``assetcache.retry`` logger), and print nothing: a front end words it (the CLI's notice)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from assetcache import RetryPolicy
from assetcache._client import AsyncLumaClient, LumaClient
from assetcache._retry import RETRY_LOGGER, RetryWait

from .conftest import EMAIL, TOKEN, FakeLuma, png

POLICY = RetryPolicy(attempts=5, max_elapsed=60, initial=0.25, max_backoff=8, jitter=0)
Failure = Callable[[httpx.Request], httpx.Response]


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def _unknown_host(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)


def _timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def _dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("peer closed connection", request=request)


def _status(status: int) -> Failure:
    return lambda request: httpx.Response(status, json={"error": "busy"})


def _failing_twice(failure: Failure) -> Callable[[httpx.Request], httpx.Response]:
    luma = FakeLuma()
    calls = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        return failure(request) if calls[0] <= 2 else luma(request)

    return handler


CASES = [
    (_refused, "connection refused"),
    (_unknown_host, "cannot connect"),
    (_timed_out, "timed out"),
    (_dropped, "connection lost"),
    (_status(503), "HTTP 503"),
    (_status(429), "rate limited (HTTP 429)"),
]


def _waits(caplog: pytest.LogCaptureFixture) -> list[RetryWait]:
    return [r.retry_wait for r in caplog.records if r.name == RETRY_LOGGER]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("failure", "reason"), CASES)
def test_the_sync_client_announces_each_wait(
    failure: Failure,
    reason: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slept: list[float] = []
    client = LumaClient(
        token=TOKEN,
        base_url="https://api.useapi.net",
        retry=POLICY,
        transport=httpx.MockTransport(_failing_twice(failure)),
        sleep=slept.append,
    )
    with caplog.at_level("INFO", logger=RETRY_LOGGER):
        client.upload(png(), content_type="image/png", email=EMAIL)
    assert _waits(caplog) == [
        RetryWait("api.useapi.net", reason, slept[0], 2, 5),
        RetryWait("api.useapi.net", reason, slept[1], 3, 5),
    ]
    assert capsys.readouterr() == ("", "")  # the library never prints


@pytest.mark.parametrize(("failure", "reason"), CASES[:1] + CASES[-1:])
def test_the_async_client_announces_each_wait(
    failure: Failure, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def upload() -> None:
        client = AsyncLumaClient(
            token=TOKEN,
            base_url="https://api.useapi.net",
            retry=POLICY,
            transport=httpx.MockTransport(_failing_twice(failure)),
            sleep=sleep,
        )
        try:
            await client.upload(png(), content_type="image/png", email=EMAIL)
        finally:
            await client.aclose()

    with caplog.at_level("INFO", logger=RETRY_LOGGER):
        asyncio.run(upload())
    assert [(w.reason, w.next_attempt, w.seconds) for w in _waits(caplog)] == [
        (reason, 2, slept[0]),
        (reason, 3, slept[1]),
    ]
