"""The remote client against httpx.MockTransport: every documented status, retries, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
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
    RemoteError,
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


def test_attempt_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(attempt_timeout=0)
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(max_elapsed=0)


# -- deadlines, over real loopback HTTP -----------------------------------------------------


class LoopbackServer:
    """A tiny HTTP server on 127.0.0.1 that reads each request, then misbehaves.

    ``trickle``: answers 200 with a body of BODY_BYTES sent one byte every ``interval``
    seconds (30 s in all: a client without a deadline for the whole answer waits that long).
    ``hang_up``: closes the connection without answering.
    """

    BODY_BYTES = 150

    def __init__(self, behaviour: str, interval: float = 0.2) -> None:
        self.behaviour = behaviour
        self.interval = interval
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            with self._lock:
                self.requests += 1
            if self.behaviour == "hang_up":
                return
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % self.BODY_BYTES
            )
            for _ in range(self.BODY_BYTES):
                if self._stop.wait(self.interval):
                    return
                conn.sendall(b" ")  # fails once the client has hung up


def upload_to(base_url: str, mode: str, retry: RetryPolicy) -> object:
    """Upload over real HTTP (no proxy from the environment), sync or async."""
    if mode == "sync":
        c = LumaClient(token=TOKEN, base_url=base_url, retry=retry, transport=httpx.HTTPTransport())
        try:
            return c.upload(png(), content_type="image/png", email=EMAIL)
        finally:
            c.close()

    async def go() -> object:
        ac = AsyncLumaClient(
            token=TOKEN, base_url=base_url, retry=retry, transport=httpx.AsyncHTTPTransport()
        )
        try:
            return await ac.upload(png(), content_type="image/png", email=EMAIL)
        finally:
            await ac.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_trickled_answer_is_cut_off_by_the_attempt_deadline_and_the_budget(mode: str) -> None:
    # Each byte arrives well within httpx's read timeout, so only a deadline for the whole
    # exchange stops it; the budget (max_elapsed) then ends the upload.
    policy = RetryPolicy(
        attempts=10, max_elapsed=1.0, attempt_timeout=0.5, initial=0, max_backoff=0, jitter=0
    )
    with LoopbackServer("trickle") as server:
        started = time.monotonic()
        with pytest.raises(ServerError, match="timed out"):
            upload_to(server.base_url, mode, policy)
        elapsed = time.monotonic() - started
    assert elapsed < 10  # the trickle lasts 30 s per attempt; generous slack for a busy machine
    assert server.requests >= 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_attempt_is_bounded_by_attempt_timeout(mode: str) -> None:
    policy = RetryPolicy(attempts=1, max_elapsed=600, attempt_timeout=0.5)
    with LoopbackServer("trickle") as server:
        started = time.monotonic()
        with pytest.raises(ServerError, match="timed out"):
            upload_to(server.base_url, mode, policy)
        elapsed = time.monotonic() - started
    assert elapsed < 10
    assert server.requests == 1


# -- the token never sits in a traceback ----------------------------------------------------


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]


def assert_token_unreachable(error: BaseException, token: str = TOKEN) -> None:
    """Neither a formatted traceback with locals nor any frame's locals show the token."""
    for current in exception_chain(error):
        formatted = "".join(
            traceback.TracebackException(
                type(current), current, current.__traceback__, capture_locals=True
            ).format()
        )
        assert token not in formatted
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for name, value in frame.f_locals.items():
                assert token not in repr(value), f"{frame.f_code.co_qualname}: {name}"
            tb = tb.tb_next


def failure_of(call: Callable[[], object]) -> BaseException:
    """The error ``call()`` raises; caught here, so the test's own locals are not walked."""
    try:
        call()
    except AssetCacheError as error:
        return error
    raise AssertionError("no error was raised")


def _handler(kind: str, released: threading.Event) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        if kind == "transport":
            raise httpx.ConnectError("connection refused", request=request)
        if kind == "deadline":
            released.wait(5)
        if kind == "protocol":
            return httpx.Response(200, json={"assetRef": "u1\x1b[0m", "email": EMAIL})
        return httpx.Response(int(kind) if kind.isdigit() else 500, json={"error": "no"})

    return handle


def _async_handler(kind: str) -> Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]:
    handle = _handler(kind, threading.Event())

    async def handle_async(request: httpx.Request) -> httpx.Response:
        if kind == "deadline":
            await asyncio.sleep(5)  # cancelled at the deadline
        return handle(request)

    return handle_async


BAD_TOKEN = TOKEN + "\x00"
SECRECY_POLICY = RetryPolicy(
    attempts=3, max_elapsed=1.0, attempt_timeout=0.3, initial=0, max_backoff=0, jitter=0
)


@pytest.mark.parametrize("kind", ["transport", "401", "500", "protocol", "deadline"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_no_failure_carries_the_token_in_any_traceback(mode: str, kind: str) -> None:
    released = threading.Event()
    if mode == "sync":
        c = LumaClient(
            token=TOKEN,
            base_url="https://api.test",
            transport=httpx.MockTransport(_handler(kind, released)),
            retry=SECRECY_POLICY,
            sleep=lambda s: None,
        )
        error = failure_of(lambda: c.upload(png(), content_type="image/png", email=EMAIL))
        released.set()
        c.close()
    else:

        async def go() -> None:
            ac = AsyncLumaClient(
                token=TOKEN,
                base_url="https://api.test",
                transport=httpx.MockTransport(_async_handler(kind)),
                retry=SECRECY_POLICY,
            )
            try:
                await ac.upload(png(), content_type="image/png", email=EMAIL)
            finally:
                await ac.aclose()

        error = failure_of(lambda: asyncio.run(go()))
    expected = {"401": UnauthorizedError, "protocol": ProtocolError}.get(kind, ServerError)
    assert isinstance(error, expected)
    assert_token_unreachable(error)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_real_connection_failure_carries_no_token_either(mode: str) -> None:
    # httpcore's own frames (header lists, h11 events) are in httpx's exception: never chained.
    with LoopbackServer("hang_up") as server:
        error = failure_of(lambda: upload_to(server.base_url, mode, SECRECY_POLICY))
    assert isinstance(error, ServerError)
    assert_token_unreachable(error)


@pytest.mark.parametrize("client_class", [LumaClient, AsyncLumaClient])
def test_a_refused_token_is_in_no_traceback(client_class: type[LumaClient]) -> None:
    # A global, not a local: a closure's free variables are part of its frame's locals.
    error = failure_of(lambda: client_class(token=BAD_TOKEN, base_url="https://api.test"))
    assert isinstance(error, UnauthorizedError)
    assert_token_unreachable(error)


def test_configuration_errors_are_not_retried() -> None:
    slept: list[float] = []
    client = LumaClient(
        token=TOKEN, base_url="ftp://127.0.0.1:9", retry=RetryPolicy(), sleep=slept.append
    )
    with pytest.raises(RemoteError, match="ASSETCACHE_BASE_URL") as info:
        client.upload(png(), content_type="image/png", email=EMAIL)
    assert not isinstance(info.value, ServerError)
    assert slept == []
