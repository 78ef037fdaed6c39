"""The remote client: one upload to ``POST {base}/v1/luma/assets/{email}``, with retries.

The request and the reading of the answer are plain functions shared by ``LumaClient`` (sync)
and ``AsyncLumaClient``; only sending differs. Retries use tenacity so the two clients share
one policy instead of two hand-written loops: 429, 5xx, connection errors and timeouts are
retried with exponential backoff and jitter, never sooner than a ``Retry-After`` header asks,
and never past the attempt or time budget. 400, 401, 404 and 596 are answered at once: no
retry can change them.

The token lives only in the ``Authorization`` header of each request. It is not an attribute
anyone prints, not in any repr, and never in an exception message.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import tenacity

from ._config import Secret, usable_token
from ._email import email_segment
from ._errors import (
    AccountNotFoundError,
    InvalidImageError,
    ProtocolError,
    RateLimitedError,
    RemoteError,
    ServerError,
    SessionExpiredError,
    UnauthorizedError,
)
from ._retry import RetryPolicy

log = logging.getLogger("assetcache")

#: Explicit timeouts: connecting is quick or hopeless; sending 20 MB on a slow uplink is not.
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=30.0)
_MESSAGE_LIMIT: Final = 300


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What the server answered to a successful upload."""

    asset_ref: str
    upload_id: str
    media_url: str
    email: str | None


class _Retryable(Exception):
    """Marks a RemoteError worth another attempt; carries the server's Retry-After."""

    def __init__(self, error: RemoteError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


# -- the request and the answer, shared by both clients ------------------------------------


def upload_url(base_url: str, email: str) -> str:
    return f"{base_url.rstrip('/')}/v1/luma/assets/{email_segment(email)}"


def _headers(token: str, content_type: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": content_type,
        "Accept": "application/json",
    }


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


def _scrub(text: str, request: httpx.Request | None) -> str:
    """Remove the request's token from text a server or a library produced.

    A proxy may echo headers back in an error page; nothing such text contains may show it.
    """
    if request is None:
        return text
    _, _, token = request.headers.get("authorization", "").partition(" ")
    return text.replace(token, "***") if token else text


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = body["error"]
    else:
        text = response.text
    text = " ".join(_scrub(text, response.request).split())
    return text[:_MESSAGE_LIMIT] + ("…" if len(text) > _MESSAGE_LIMIT else "")


def interpret(response: httpx.Response, email: str) -> UploadResult:
    """Turn an answer into an UploadResult, or raise the error the user can act on."""
    status = response.status_code
    if status == 200:
        return _parse_success(response)
    said = _server_message(response)
    said_part = f": {said}" if said else ""
    if status in (400, 413, 415):
        raise InvalidImageError(f"useapi.net refused the image (HTTP {status}){said_part}")
    if status in (401, 403):
        raise UnauthorizedError(
            f"useapi.net rejected the API token (HTTP {status}){said_part}; "
            "check USEAPI_TOKEN (your token is at https://useapi.net)",
            email=email,
        )
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
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        error: RemoteError = RateLimitedError(
            f"useapi.net is rate limiting {email} (HTTP 429: account at capacity){said_part}; "
            "wait a few minutes and retry, or lower --jobs",
            status=status,
        )
        raise _Retryable(error, retry_after)
    if status >= 500:
        error = ServerError(
            f"useapi.net failed (HTTP {status}){said_part}; retry later", status=status
        )
        raise _Retryable(error, retry_after)
    raise ProtocolError(
        f"useapi.net answered HTTP {status}, which the upload API does not document"
        f"{said_part}; nothing was recorded",
        status=status,
    )


def _parse_success(response: httpx.Response) -> UploadResult:
    def bad(why: str) -> ProtocolError:
        return ProtocolError(
            f"useapi.net answered 200 but {why}; nothing was recorded, retry later",
            status=200,
        )

    try:
        body = response.json()
    except ValueError:
        raise bad("the body is not JSON") from None
    if not isinstance(body, dict):
        raise bad("the body is not a JSON object")
    asset_ref = body.get("assetRef")
    if not isinstance(asset_ref, str) or not asset_ref.strip():
        raise bad("without an assetRef")
    upload = body.get("upload")
    upload_id = upload.get("id") if isinstance(upload, dict) else None
    media = upload.get("media") if isinstance(upload, dict) else None
    media_url = media.get("url") if isinstance(media, dict) else None
    if not isinstance(upload_id, str) or not upload_id:
        raise bad("without upload.id")
    if not isinstance(media_url, str) or not media_url:
        raise bad("without upload.media.url")
    answered_email = body.get("email")
    return UploadResult(
        asset_ref=asset_ref,
        upload_id=upload_id,
        media_url=media_url,
        email=answered_email if isinstance(answered_email, str) else None,
    )


#: Failures worth another attempt: the network, the peer, or time. Anything else httpx raises
#: (an unsupported URL scheme, a header it refuses) is a configuration error: retrying is waste.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def _transport_error(exc: httpx.TransportError, url: str) -> Exception:
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # httpx raises this when no request is attached
        request = None
    detail = _scrub(str(exc) or type(exc).__name__, request)
    if not isinstance(exc, _TRANSIENT):
        return RemoteError(f"cannot send the upload to {url} ({detail}); check ASSETCACHE_BASE_URL")
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    error = ServerError(
        f"the connection to {httpx.URL(url).host} {kind} ({detail}); "
        "check the network (or ASSETCACHE_BASE_URL) and retry"
    )
    return _Retryable(error, None)


# -- the retry policy, shared --------------------------------------------------------------


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


def _retry_kwargs(policy: RetryPolicy) -> dict[str, Any]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("attempt %d failed (%s); retrying in %.1fs", state.attempt_number, exc, wait)

    return {
        "stop": tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_before_delay(policy.max_elapsed),
        "wait": _wait(policy),
        "retry": tenacity.retry_if_exception_type(_Retryable),
        "reraise": True,
        "before_sleep": before_sleep,
    }


def _unwrap(exc: _Retryable) -> RemoteError:
    return exc.error


# -- the clients ---------------------------------------------------------------------------


class _Base:
    def __init__(
        self, *, token: str, base_url: str, retry: RetryPolicy, timeout: httpx.Timeout
    ) -> None:
        if not token:
            raise UnauthorizedError("no API token: set USEAPI_TOKEN (or pass token=...) to upload")
        try:
            self._token = Secret(usable_token(token))
        except ValueError as exc:
            raise UnauthorizedError(str(exc)) from None
        self.base_url = base_url
        self.retry = retry
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, token=<hidden>)"

    def _prepare(self, email: str, content_type: str) -> tuple[str, dict[str, str]]:
        return upload_url(self.base_url, email), _headers(self._token.reveal(), content_type)


class LumaClient(_Base):
    """Synchronous uploads over one pooled httpx.Client."""

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(token=token, base_url=base_url, retry=retry, timeout=timeout)
        self._http = httpx.Client(transport=transport, timeout=timeout)
        self._sleep = sleep

    def upload(self, data: bytes, *, content_type: str, email: str) -> UploadResult:
        url, headers = self._prepare(email, content_type)

        def attempt() -> UploadResult:
            started = time.perf_counter()
            try:
                response = self._http.post(url, content=data, headers=headers)
            except httpx.TransportError as exc:
                error = _transport_error(exc, url)
                # Only network failures keep their cause: httpx's text for a refused request
                # may quote the request itself.
                raise error from (exc if isinstance(error, _Retryable) else None)
            _log_response(url, response, len(data), started)
            return interpret(response, email)

        retrying = tenacity.Retrying(sleep=self._sleep, **_retry_kwargs(self.retry))
        try:
            return retrying(attempt)
        except _Retryable as exc:
            raise _unwrap(exc) from exc.__cause__

    def close(self) -> None:
        self._http.close()


class AsyncLumaClient(_Base):
    """Asynchronous uploads over one pooled httpx.AsyncClient."""

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(token=token, base_url=base_url, retry=retry, timeout=timeout)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._sleep = sleep

    async def upload(self, data: bytes, *, content_type: str, email: str) -> UploadResult:
        url, headers = self._prepare(email, content_type)

        async def attempt() -> UploadResult:
            started = time.perf_counter()
            try:
                response = await self._http.post(url, content=data, headers=headers)
            except httpx.TransportError as exc:
                error = _transport_error(exc, url)
                # Only network failures keep their cause: httpx's text for a refused request
                # may quote the request itself.
                raise error from (exc if isinstance(error, _Retryable) else None)
            _log_response(url, response, len(data), started)
            return interpret(response, email)

        kwargs = _retry_kwargs(self.retry)
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        retrying = tenacity.AsyncRetrying(**kwargs)
        try:
            return await retrying(attempt)
        except _Retryable as exc:
            raise _unwrap(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._http.aclose()


def _log_response(url: str, response: httpx.Response, size: int, started: float) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("POST %s -> %d (%d bytes, %.0f ms)", url, response.status_code, size, elapsed_ms)
