"""The remote client against httpx.MockTransport: every documented status, retries, timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from assetcache import (
    AccountNotFoundError,
    AssetCache,
    AssetCacheError,
    InvalidImageError,
    ProtocolError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    SessionExpiredError,
    UnauthorizedError,
)
from assetcache._client import AsyncLumaClient, LumaClient, parse_retry_after

from .conftest import EMAIL, FAST_RETRY, TOKEN, FakeLuma, png

GOOD = {
    "assetRef": "u12345-email:me@example.com-image:a1b2",
    "email": EMAIL,
    "upload": {"id": "a1b2", "media": {"url": "https://cdn/x"}},
}
SESSION_MSG = (
    "Luma account has an error. Please check your account configuration via GET "
    "/v1/luma/accounts or re-add the account via POST /v1/luma/accounts"
)


def client(luma: FakeLuma, **kwargs: object) -> LumaClient:
    options: dict[str, object] = {
        "token": TOKEN,
        "base_url": "https://api.test",
        "transport": luma.transport,
        "retry": FAST_RETRY,
        "sleep": lambda s: None,
    }
    options.update(kwargs)
    return LumaClient(**options)  # type: ignore[arg-type]


def upload(c: LumaClient) -> object:
    return c.upload(png(), content_type="image/png", email=EMAIL)


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (400, {"error": "Content is empty"}, InvalidImageError, "Content is empty"),
        (401, {"error": "Unauthorized"}, UnauthorizedError, "USEAPI_TOKEN"),
        (
            404,
            {"error": f"Unable to find configuration for email {EMAIL}"},
            AccountNotFoundError,
            EMAIL,
        ),
        (596, {"error": SESSION_MSG}, SessionExpiredError, "POST /v1/luma/accounts"),
    ],
)
def test_final_statuses_are_answered_after_exactly_one_request(
    status: int, body: dict[str, str], error: type[Exception], words: str
) -> None:
    luma = FakeLuma(script=[(status, {}, json.dumps(body).encode())] * 5)
    with pytest.raises(error, match=words.replace("?", r"\?")) as info:
        upload(client(luma))
    assert len(luma.requests) == 1
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimitedError), (500, ServerError), (503, ServerError)]
)
def test_transient_statuses_retry_until_the_attempt_budget(
    status: int, error: type[Exception]
) -> None:
    luma = FakeLuma(script=[status] * 10)
    with pytest.raises(error) as info:
        upload(client(luma))
    assert len(luma.requests) == FAST_RETRY.attempts
    assert info.value.status == status  # type: ignore[attr-defined]


def test_transient_then_success() -> None:
    luma = FakeLuma(script=[429, 502, 500])
    result = client(luma).upload(png(), content_type="image/png", email=EMAIL)
    assert result.asset_ref.startswith("u1-email:")
    assert len(luma.requests) == 4


def test_retry_after_seconds_and_date_are_honoured() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    luma = FakeLuma(
        script=[(429, {"Retry-After": "7"}, b"{}"), (503, {"Retry-After": later}, b"{}")]
    )
    slept: list[float] = []
    policy = RetryPolicy(attempts=5, max_elapsed=600, initial=0.5, max_backoff=1, jitter=0)
    client(luma, retry=policy, sleep=slept.append).upload(
        png(), content_type="image/png", email=EMAIL
    )
    assert slept[0] == 7
    assert 35 <= slept[1] <= 40


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    luma = FakeLuma(script=[500] * 4)
    slept: list[float] = []
    policy = RetryPolicy(attempts=5, max_elapsed=600, initial=1, max_backoff=5, jitter=0.5)
    client(luma, retry=policy, sleep=slept.append).upload(
        png(), content_type="image/png", email=EMAIL
    )
    for wait, base in zip(slept, [1, 2, 4, 5], strict=True):
        assert base <= wait <= base + 0.5


def test_time_budget_stops_retries_before_a_long_wait() -> None:
    luma = FakeLuma(script=[(429, {"Retry-After": "3600"}, b"{}")] * 3)
    slept: list[float] = []
    policy = RetryPolicy(attempts=10, max_elapsed=60)
    with pytest.raises(RateLimitedError, match="429"):
        client(luma, retry=policy, sleep=slept.append).upload(
            png(), content_type="image/png", email=EMAIL
        )
    assert slept == []
    assert len(luma.requests) == 1


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("12", now=now) == 12
    assert parse_retry_after("1.5", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_connection_errors_and_timeouts_are_retried_then_server_error() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) % 2:
            raise httpx.ConnectError("connection refused", request=request)
        raise httpx.ReadTimeout("timed out", request=request)

    c = LumaClient(
        token=TOKEN,
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        retry=FAST_RETRY,
        sleep=lambda s: None,
    )
    with pytest.raises(ServerError, match="timed out") as info:
        c.upload(png(), content_type="image/png", email=EMAIL)
    assert len(calls) == FAST_RETRY.attempts
    assert TOKEN not in str(info.value)


def test_timeouts_are_explicit() -> None:
    c = client(FakeLuma())
    timeout = c._http.timeout
    assert None not in (timeout.connect, timeout.read, timeout.write, timeout.pool)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"email": "x"}',
        b'{"assetRef": "", "upload": {"id": "1", "media": {"url": "u"}}}',
        b'{"assetRef": "r", "upload": {"media": {"url": "u"}}}',
        b'{"assetRef": "r", "upload": {"id": "1"}}',
        b'{"assetRef": "r", "upload": {"id": "1", "media": {"url": 5}}}',
        b'{"error": "something"}',
    ],
)
def test_malformed_200_is_a_protocol_error_and_records_nothing(
    body: bytes, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    luma.script = [(200, {}, body)]
    cache = make_cache()
    with pytest.raises(ProtocolError, match="nothing was recorded"):
        cache.resolve(png(), email=EMAIL)
    assert len(luma.requests) == 1
    assert cache.assets() == []


@pytest.mark.parametrize(
    "ref",
    [
        "u12345-email:me@example.com-image:a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        "u12345-email:me@example.com:a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        "something-else-entirely",
    ],
)
def test_both_documented_ref_shapes_are_accepted_as_opaque(
    ref: str, make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    body = dict(GOOD, assetRef=ref)
    luma.script = [(200, {}, json.dumps(body).encode())]
    assert make_cache().resolve(png(), email=EMAIL).asset_ref == ref


def test_unexpected_status_is_a_protocol_error() -> None:
    luma = FakeLuma(script=[418])
    with pytest.raises(ProtocolError, match="418"):
        upload(client(luma))
    assert len(luma.requests) == 1


def test_every_error_is_an_assetcache_error() -> None:
    for status in (400, 401, 404, 429, 500, 596, 418):
        with pytest.raises(AssetCacheError):
            upload(client(FakeLuma(script=[status] * 10)))


def test_repr_hides_token() -> None:
    c = client(FakeLuma())
    assert TOKEN not in repr(c)
    assert TOKEN not in str(vars(c))


def test_async_client_shares_the_policy() -> None:
    luma = FakeLuma(script=[429, 500])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> str:
        c = AsyncLumaClient(
            token=TOKEN,
            base_url="https://api.test",
            transport=luma.transport,
            retry=FAST_RETRY,
            sleep=sleep,
        )
        try:
            result = await c.upload(png(), content_type="image/png", email=EMAIL)
        finally:
            await c.aclose()
        return result.asset_ref

    assert asyncio.run(go()).startswith("u1-")
    assert len(luma.requests) == 3
    assert len(slept) == 2


def test_async_final_status_one_request() -> None:
    luma = FakeLuma(script=[596, 596])

    async def go() -> None:
        c = AsyncLumaClient(token=TOKEN, base_url="https://api.test", transport=luma.transport)
        try:
            await c.upload(png(), content_type="image/png", email=EMAIL)
        finally:
            await c.aclose()

    with pytest.raises(SessionExpiredError):
        asyncio.run(go())
    assert len(luma.requests) == 1
