"""The remote client: one upload to ``POST {base}/v1/luma/assets/{email}``, with retries.

The request and the reading of the answer are plain functions shared by ``LumaClient`` (sync)
and ``AsyncLumaClient``; only sending differs. Retries use tenacity so the two clients share
one policy instead of two hand-written loops: 429, 5xx, connection errors and timeouts are
retried with exponential backoff and jitter, never sooner than a ``Retry-After`` header asks,
and never past the attempt or time budget. 400, 401, 404 and 596 are answered at once: no
retry can change them. Each attempt has a deadline (``RetryPolicy.attempt_timeout``, and never
past ``max_elapsed`` from the start of the upload) for the exchange as a whole.

Answers are read as a stream and never beyond ``MAX_ANSWER_BYTES``. A 200 is recorded only
if it is the documented model for the account asked for, with every string bounded and
printable (assetcache._refs); anything else is a ProtocolError, not retried, since the image
may have been uploaded.

The token lives only in the ``Authorization`` header of each request, set by ``_BearerAuth``
as the request leaves. It is not an attribute anyone prints, not in any repr, never in an
exception message, and not in the local variables of any frame an exception we raise passes
through: those end up in ``pytest -l`` output and in error trackers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import functools
import json
import logging
import random
import threading
import time
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

import httpx
import tenacity
from tenacity.stop import stop_base

from ._config import Secret, usable_token
from ._email import email_segment, normalize_email
from ._errors import (
    PYTHON_ADVICE,
    AccountNotFoundError,
    AssetCacheError,
    InvalidEmailError,
    InvalidImageError,
    ProtocolError,
    RateLimitedError,
    RemoteError,
    ServerError,
    SessionExpiredError,
    UnauthorizedError,
    needs_setting,
)
from ._refs import MAX_ID_LENGTH, excerpt, ref_problem, text_problem, url_problem
from ._retry import RETRY_LOGGER, RetryPolicy, RetryWait

log = logging.getLogger("assetcache")
#: Each wait before another attempt, as data for a front end (see RETRY_LOGGER).
retry_log = logging.getLogger(RETRY_LOGGER)

#: Explicit timeouts: connecting is quick or hopeless; sending 20 MB on a slow uplink is not.
#: Each applies to one socket operation; RetryPolicy.attempt_timeout bounds the whole exchange.
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=30.0)
#: The documented answers are a few hundred bytes; nothing past this is read or kept.
MAX_ANSWER_BYTES: Final = 64 * 1024
_MESSAGE_LIMIT: Final = 300
#: Identity: a compressed answer could expand a few KiB into gigabytes in one decoder call.
_HEADERS: Final = {"Accept": "application/json", "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What the server answered to a successful upload (checked against the contract)."""

    asset_ref: str
    upload_id: str
    media_url: str
    email: str  # the normalised account email, which the answer confirmed


class _Retryable(Exception):
    """Marks a RemoteError worth another attempt; carries the server's Retry-After, and the
    failure in a few words (``reason``) for the announcement of the wait (RetryWait)."""

    def __init__(self, error: RemoteError, retry_after: float | None, reason: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Answer:
    """The part of a response we read: status, two headers, at most MAX_ANSWER_BYTES of body."""

    status: int
    retry_after: str | None
    body: bytes | None = field(repr=False)  # decoded; None when the encoding is unknown
    truncated: bool  # the body was longer than MAX_ANSWER_BYTES and was cut there
    encoding: str


class _BearerAuth(httpx.Auth):
    """Sets the Authorization header as each request leaves, straight from the Secret.

    Built here rather than in a headers dict the caller keeps, the token is never the value of
    a local variable of ours, so no frame shows it.
    """

    def __init__(self, secret: Secret) -> None:
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._secret.reveal()
        yield request


# -- the request and the answer, shared by both clients ------------------------------------


def upload_url(base_url: str, email: str) -> str:
    return f"{base_url.rstrip('/')}/v1/luma/assets/{email_segment(email)}"


def _host(url: str) -> str:
    return httpx.URL(url).host


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), else None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _scrub(text: str, secret: Secret) -> str:
    """Remove the token from text a server or a library produced.

    A proxy may echo headers back in an error page; nothing such text contains may show it.
    """
    return text.replace(secret.reveal(), "***")


def _clean(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    """One line of at most ``limit`` characters, anything unprintable escaped as in repr().

    Server text ends up in terminals and logs: a raw escape sequence could rewrite them.
    """
    head = text[: limit * 2]  # enough for the limit after collapsing whitespace
    line = " ".join(head.split())
    line = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in line
    )
    cut = len(line) > limit or len(text) > len(head)
    return line[:limit] + ("…" if cut else "")


_NOT_JSON: Final = object()


def _json(raw: bytes) -> object:
    """The parsed body, or _NOT_JSON; returns normally so no parser frame is chained."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _server_message(answer: _Answer, secret: Secret) -> str:
    raw = answer.body or b""
    body = _json(raw)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = body["error"]
    else:
        text = raw.decode("utf-8", "replace")
    # Scrubbed before it is cut: a cut could keep part of the token.
    return _clean(_scrub(text, secret))


def interpret(answer: _Answer, email: str, secret: Secret) -> UploadResult:
    """Turn an answer into an UploadResult, or raise the error the user can act on."""
    status = answer.status
    if status == 200:
        return _parse_success(answer, email, secret)
    said = _server_message(answer, secret)
    said_part = f": {said}" if said else ""
    if status in (400, 413, 415):
        raise InvalidImageError(f"useapi.net refused the image (HTTP {status}){said_part}")
    if status in (401, 403):
        problem = f"useapi.net rejected the API token (HTTP {status}){said_part}"
        advice = PYTHON_ADVICE["token"]
        raise UnauthorizedError(f"{problem}; {advice}", email=email).needing("token", problem)
    if status == 404:
        raise AccountNotFoundError(
            f"useapi.net has no Luma account configured for {email} (HTTP 404){said_part}; "
            "check the email, or add the account with POST /v1/luma/accounts",
            email=email,
        )
    if status == 596:
        raise SessionExpiredError(
            f"the Luma session of {email} has expired (HTTP 596); re-add the account with "
            "POST /v1/luma/accounts (GET /v1/luma/accounts shows its state)",
            email=email,
        )
    retry_after = parse_retry_after(answer.retry_after)
    if status == 429:
        error: RemoteError = RateLimitedError(
            f"useapi.net is rate limiting {email} (HTTP 429: account at capacity){said_part}; "
            "wait a few minutes and retry, or upload fewer files at once",
            status=status,
        )
        raise _Retryable(error, retry_after, f"rate limited (HTTP {status})")
    if status >= 500:
        error = ServerError(
            f"useapi.net failed (HTTP {status}){said_part}; retry later", status=status
        )
        raise _Retryable(error, retry_after, f"HTTP {status}")
    raise ProtocolError(
        f"useapi.net answered HTTP {status}, which the upload API does not document"
        f"{said_part}; nothing was recorded",
        status=status,
    )


def _bad(why: str) -> ProtocolError:
    # Not retried: the image may have been uploaded, and an answer that breaks the contract
    # once is likely to break it again.
    return ProtocolError(
        f"useapi.net answered 200 but {why}; nothing was recorded, retry later", status=200
    )


def _checked(name: str, value: object, problem: str | None, secret: Secret) -> str:
    """The field of a 200, or the ProtocolError saying why not with a short escaped excerpt."""
    if isinstance(value, str) and secret.reveal() in value:
        raise _bad(f"its {name} quotes the API token")  # and so the value is not shown
    if problem is not None or not isinstance(value, str):
        shown = f": {excerpt(value)}" if isinstance(value, str) and value else ""
        raise _bad(f"its {name} {problem or 'is not a string'}{shown}")
    return value


def _email_problem(value: object, email: str) -> str | None:
    """None if the answered email is ``email``'s account once normalised, else why not."""
    if value is None:
        return "is missing"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    try:
        answered = normalize_email(value)
    except InvalidEmailError:
        return "is not an email address"
    return None if answered == email else "names another account"


def _parse_success(answer: _Answer, email: str, secret: Secret) -> UploadResult:
    if answer.truncated:
        raise _bad(f"with a body larger than {MAX_ANSWER_BYTES // 1024} KiB")
    if answer.body is None:
        raise _bad(f"with a body encoded as {excerpt(answer.encoding)} that cannot be decoded")
    body = _json(answer.body)
    if body is _NOT_JSON:
        raise _bad("the body is not JSON")
    if not isinstance(body, dict):
        raise _bad("the body is not a JSON object")
    value = body.get("assetRef")
    asset_ref = _checked("assetRef", value, ref_problem(value, email), secret)
    value = body.get("email")
    _checked("email", value, _email_problem(value, email), secret)
    upload = body.get("upload")
    value = upload.get("id") if isinstance(upload, dict) else None
    upload_id = _checked("upload.id", value, text_problem(value, MAX_ID_LENGTH), secret)
    media = upload.get("media") if isinstance(upload, dict) else None
    value = media.get("url") if isinstance(media, dict) else None
    media_url = _checked("upload.media.url", value, url_problem(value), secret)
    return UploadResult(asset_ref=asset_ref, upload_id=upload_id, media_url=media_url, email=email)


# -- reading an answer, bounded in size and time -------------------------------------------


def _decode(raw: bytes, encoding: str) -> bytes | None:
    """The body without its Content-Encoding, never longer than MAX_ANSWER_BYTES + 1.

    Identity was asked for; gzip and deflate are still undone (a proxy may compress anyway),
    with a bounded output. None for anything else or a broken stream.
    """
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return None
    try:
        # 32 + MAX_WBITS recognises both a gzip and a zlib header.
        return zlib.decompressobj(32 + zlib.MAX_WBITS).decompress(raw, MAX_ANSWER_BYTES + 1)
    except zlib.error:
        return None


class _Body:
    """Collects an answer's body chunk by chunk, up to MAX_ANSWER_BYTES + 1, before a deadline."""

    def __init__(self, deadline: float, url: str) -> None:
        self._deadline = deadline
        self._url = url
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> bool:
        """Keep the chunk; True once past the limit (stop reading). Raises past the deadline."""
        room = MAX_ANSWER_BYTES + 1 - self._size
        self._chunks.append(chunk[:room])
        self._size += min(len(chunk), room)
        if self._size > MAX_ANSWER_BYTES:
            return True
        if time.monotonic() >= self._deadline:
            raise _timed_out(self._url)  # a server trickling its answer
        return False

    def answer(self, response: httpx.Response, *, decoded: bool) -> _Answer:
        raw = b"".join(self._chunks)
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        body = raw if decoded else _decode(raw, encoding)
        truncated = len(raw) > MAX_ANSWER_BYTES or len(body or b"") > MAX_ANSWER_BYTES
        return _Answer(
            status=response.status_code,
            retry_after=response.headers.get("Retry-After"),
            body=None if body is None else body[:MAX_ANSWER_BYTES],
            truncated=truncated,
            encoding=encoding,
        )


def _read(response: httpx.Response, deadline: float, url: str) -> _Answer:
    body = _Body(deadline, url)
    if response.is_stream_consumed:  # built in memory (httpx.MockTransport), already decoded
        body.add(response.content)
        return body.answer(response, decoded=True)
    for chunk in response.iter_raw():
        if body.add(chunk):
            break
    return body.answer(response, decoded=False)


async def _aread(response: httpx.Response, deadline: float, url: str) -> _Answer:
    body = _Body(deadline, url)
    if response.is_stream_consumed:
        body.add(response.content)
        return body.answer(response, decoded=True)
    # aiter_raw() is an async generator: close it here rather than whenever it is collected.
    chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            if body.add(chunk):
                break
    return body.answer(response, decoded=False)


def _timeout_within(timeout: httpx.Timeout, deadline: float) -> httpx.Timeout:
    """The configured per-operation timeouts, none longer than the time left."""
    left = max(0.001, deadline - time.monotonic())

    def cap(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(
        connect=cap(timeout.connect),
        read=cap(timeout.read),
        write=cap(timeout.write),
        pool=cap(timeout.pool),
    )


#: Failures worth another attempt: the network, the peer, or time. Anything else httpx raises
#: (an unsupported URL scheme, a header it refuses) is a configuration error: retrying is waste.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _transport_error(exc: httpx.TransportError, url: str, secret: Secret) -> Exception:
    """Our error for httpx's; the caller raises it outside its ``except`` and chains nothing.

    httpx's exception carries a traceback through httpx and httpcore frames whose locals hold
    the request's header list, token included; its text is all we keep.
    """
    detail = _clean(_scrub(str(exc) or type(exc).__name__, secret), 200)
    if not isinstance(exc, _TRANSIENT):
        return RemoteError(f"cannot send the upload to {url} ({detail}); check ASSETCACHE_BASE_URL")
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    error = ServerError(
        f"the connection to {httpx.URL(url).host} {kind} ({detail}); "
        "check the network (or ASSETCACHE_BASE_URL) and retry"
    )
    return _Retryable(error, None, _transport_reason(exc, detail))


def _transport_reason(exc: httpx.TransportError, detail: str) -> str:
    """A transient transport failure in a few words, for the announcement of the wait."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in detail.lower() else "cannot connect"
    return "connection lost"


def _timed_out(url: str) -> _Retryable:
    error = ServerError(
        f"the upload to {httpx.URL(url).host} timed out (no complete answer before the "
        "attempt's deadline); check the network and retry, or raise "
        "RetryPolicy.attempt_timeout and max_elapsed for a slow uplink"
    )
    return _Retryable(error, None, "no answer in time")


def _call_before(deadline: float, work: Callable[[], _Answer]) -> _Answer | None:
    """``work()`` on a helper thread: its answer, or None once the deadline passes first.

    Why a watchdog thread: httpx's timeouts bound each socket operation, not the exchange
    (httpcore reads them once per phase and applies them to every send and recv), so a server
    trickling a byte a second never trips them, and neither does a transport that blocks.
    Waiting on the helper bounds connect + send + answer as a whole, whatever the transport.
    Left behind, the helper ends soon anyway: its per-operation timeouts are capped at the time
    that was left, and it stops reading at the deadline. A late answer is dropped -- the image
    may then have been uploaded, as with any timeout.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    outcome: list[_Answer | BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the waiting thread, which raises it
            outcome.append(exc)
        finally:
            done.set()

    context = contextvars.copy_context()  # logging or tracing context follows the work
    threading.Thread(target=context.run, args=(run,), name="assetcache-upload", daemon=True).start()
    if not done.wait(left):
        return None
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


# -- the retry policy, shared --------------------------------------------------------------


class _Budget:
    """When the upload must be over (``max_elapsed``), and each attempt's deadline."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.end = time.monotonic() + policy.max_elapsed

    def attempt_deadline(self) -> float:
        return min(time.monotonic() + self.policy.attempt_timeout, self.end)


class _StopAtBudget(stop_base):
    """Stop before a wait that would end past the budget (or when it is spent)."""

    def __init__(self, budget: _Budget) -> None:
        self._budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self._budget.end


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    def wait(state: tenacity.RetryCallState) -> float:
        # Exponential backoff with full jitter on top, never sooner than Retry-After asks.
        exponent = min(state.attempt_number - 1, 32)
        delay = min(policy.max_backoff, policy.initial * 2**exponent)
        delay += random.uniform(0, policy.jitter)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return float(delay)

    return wait


def _retry_kwargs(budget: _Budget, host: str) -> dict[str, Any]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        announced = RetryWait(
            host=host,
            reason=exc.reason if isinstance(exc, _Retryable) else "failed",
            seconds=wait,
            next_attempt=state.attempt_number + 1,
            attempts=budget.policy.attempts,
        )
        retry_log.info(
            "attempt %d failed (%s); retrying in %.1fs",
            state.attempt_number,
            exc,
            wait,
            extra={"retry_wait": announced},
        )

    return {
        "stop": tenacity.stop_after_attempt(budget.policy.attempts) | _StopAtBudget(budget),
        "wait": _wait(budget.policy),
        "retry": tenacity.retry_if_exception_type(_Retryable),
        "reraise": True,
        "before_sleep": before_sleep,
    }


# -- the clients ---------------------------------------------------------------------------


def _checked_secret(token: str | Secret) -> Secret | UnauthorizedError:
    """The token as it can be sent, or the error to raise.

    The error is returned, not raised: raised here, it would chain usable_token's ValueError,
    whose traceback keeps a frame with the token in its locals.
    """
    value = token.reveal() if isinstance(token, Secret) else token
    if not value:
        return needs_setting(UnauthorizedError, "token", "an upload needs an API token")
    try:
        return Secret(usable_token(value))
    except ValueError as exc:
        return needs_setting(UnauthorizedError, "token", str(exc))


class _Base:
    def __init__(
        self, *, secret: Secret, base_url: str, retry: RetryPolicy, timeout: httpx.Timeout
    ) -> None:
        self._token = secret
        self._auth = _BearerAuth(secret)
        self.base_url = base_url
        self.retry = retry
        self.timeout = timeout

    def __repr__(self) -> str:
        # getattr: tracebacks with locals repr a client whose __init__ raised, too.
        base_url = getattr(self, "base_url", None)
        return f"{type(self).__name__}(base_url={base_url!r}, token=<hidden>)"

    def _request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        url: str,
        data: bytes,
        content_type: str,
        deadline: float,
    ) -> httpx.Request:
        return http.build_request(
            "POST",
            url,
            content=data,
            headers={**_HEADERS, "Content-Type": content_type},
            timeout=_timeout_within(self.timeout, deadline),
        )


class LumaClient(_Base):
    """Synchronous uploads over one pooled httpx.Client."""

    def __init__(
        self,
        *,
        token: str | Secret,
        base_url: str,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        secret = _checked_secret(token)
        del token  # a traceback through this frame must not show it
        if isinstance(secret, UnauthorizedError):
            raise secret
        super().__init__(secret=secret, base_url=base_url, retry=retry, timeout=timeout)
        self._http = httpx.Client(transport=transport, timeout=timeout)
        self._sleep = sleep

    def upload(self, data: bytes, *, content_type: str, email: str) -> UploadResult:
        email = normalize_email(email)
        url = upload_url(self.base_url, email)
        budget = _Budget(self.retry)

        def attempt() -> UploadResult:
            deadline = budget.attempt_deadline()
            started = time.perf_counter()
            answer = _call_before(
                deadline, lambda: self._exchange(url, data, content_type, deadline)
            )
            if answer is None:
                raise _timed_out(url)
            _log_response(url, answer.status, len(data), started)
            return interpret(answer, email, self._token)

        retrying = tenacity.Retrying(sleep=self._sleep, **_retry_kwargs(budget, _host(url)))
        try:
            return retrying(attempt)
        except _Retryable as exc:
            final = exc.error
        raise final  # outside the except: nothing chains back through the attempts

    def _exchange(self, url: str, data: bytes, content_type: str, deadline: float) -> _Answer:
        error: Exception
        try:
            request = self._request(self._http, url, data, content_type, deadline)
            send = functools.partial(self._http.send, request, auth=self._auth, stream=True)
            response = _sent(self._http, send)
            try:
                return _read(response, deadline, url)
            finally:
                response.close()
        except httpx.TransportError as exc:
            error = _transport_error(exc, url, self._token)
        raise error  # outside the except: see _transport_error

    def close(self) -> None:
        self._http.close()


class AsyncLumaClient(_Base):
    """Asynchronous uploads over one pooled httpx.AsyncClient."""

    def __init__(
        self,
        *,
        token: str | Secret,
        base_url: str,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        secret = _checked_secret(token)
        del token  # a traceback through this frame must not show it
        if isinstance(secret, UnauthorizedError):
            raise secret
        super().__init__(secret=secret, base_url=base_url, retry=retry, timeout=timeout)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._sleep = sleep

    async def upload(self, data: bytes, *, content_type: str, email: str) -> UploadResult:
        email = normalize_email(email)
        url = upload_url(self.base_url, email)
        budget = _Budget(self.retry)

        async def attempt() -> UploadResult:
            deadline = budget.attempt_deadline()
            started = time.perf_counter()
            answer = await self._exchange_before(url, data, content_type, deadline)
            _log_response(url, answer.status, len(data), started)
            return interpret(answer, email, self._token)

        kwargs = _retry_kwargs(budget, _host(url))
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        retrying = tenacity.AsyncRetrying(**kwargs)
        try:
            return await retrying(attempt)
        except _Retryable as exc:
            final = exc.error
        raise final  # outside the except: nothing chains back through the attempts

    async def _exchange_before(
        self, url: str, data: bytes, content_type: str, deadline: float
    ) -> _Answer:
        # Cancellation reaches the request wherever it waits, so unlike the sync client no
        # helper thread is needed to bound the exchange as a whole.
        left = deadline - time.monotonic()
        if left > 0:
            try:
                async with asyncio.timeout(left):
                    return await self._exchange(url, data, content_type, deadline)
            except TimeoutError:
                pass
        raise _timed_out(url)  # outside the except: the cancelled request is not chained

    async def _exchange(self, url: str, data: bytes, content_type: str, deadline: float) -> _Answer:
        error: Exception
        try:
            request = self._request(self._http, url, data, content_type, deadline)
            if self._http.is_closed:
                raise _closed_during_upload()
            try:
                response = await self._http.send(request, auth=self._auth, stream=True)
            except RuntimeError:
                if not self._http.is_closed:
                    raise
                raise _closed_during_upload() from None
            try:
                return await _aread(response, deadline, url)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            error = _transport_error(exc, url, self._token)
        raise error  # outside the except: see _transport_error

    async def aclose(self) -> None:
        await self._http.aclose()


def _sent(http: httpx.Client, send: Callable[[], httpx.Response]) -> httpx.Response:
    """``send()``, or the AssetCacheError saying the cache was closed meanwhile (httpx says
    only RuntimeError)."""
    if http.is_closed:
        raise _closed_during_upload()
    try:
        return send()
    except RuntimeError:
        if not http.is_closed:
            raise
    raise _closed_during_upload()


def _closed_during_upload() -> AssetCacheError:
    return AssetCacheError(
        "the cache was closed while an upload was under way (close() or aclose() called from "
        "elsewhere); nothing was recorded: resolve again with an open cache"
    )


def _log_response(url: str, status: int, size: int, started: float) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("POST %s -> %d (%d bytes, %.0f ms)", url, status, size, elapsed_ms)
