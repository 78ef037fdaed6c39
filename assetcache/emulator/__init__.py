"""A local stand-in for the useapi.net Luma "upload assets" endpoint.

``Emulator`` serves ``POST /v1/luma/assets/{email}`` over real HTTP on loopback and answers
the way the published contract says the remote does (200 model, 400/401/404/596 errors,
JSON bodies), so that code using assetcache -- ours and our users' -- can be tested without
a useapi.net account, without network access and without spending uploads. It can also
misbehave on purpose (latency, 429/5xx answers, short retention) to exercise retry and expiry
handling deterministically.

Use it in a pytest fixture::

    import pytest
    from assetcache import Emulator

    @pytest.fixture
    def luma():
        with Emulator(accounts=["me@example.com"]) as emulator:
            yield emulator

    def test_upload(luma):
        luma.fail_next(429, retry_after=0)      # the first upload is turned away once
        ...  # point the client at luma.base_url with token luma.token
        assert [u.email for u in luma.uploads] == ["me@example.com"]

The emulator keeps uploaded bytes in memory and serves them back at ``GET /media/{id}``
(the ``upload.media.url`` of the answer) until ``retention`` has passed on ``clock``.
Only the standard library is used, so it runs anywhere assetcache does.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote

from .._content import MAX_UPLOAD_BYTES

__all__ = ["EmulatedUpload", "Emulator"]

_logger = logging.getLogger(__name__)

#: What the remote accepts, per the contract. Deliberately not shared with the client side:
#: the emulator stands for the server, so a client mistake must not be mirrored here.
ACCEPTED_CONTENT_TYPES: Final = ("image/jpeg", "image/png", "image/webp")

#: useapi.net's non-standard status for an account whose Luma session is broken.
SESSION_ERROR_STATUS: Final = 596
SESSION_ERROR_MESSAGE: Final = (
    "Luma account has an error. Please check your account configuration via "
    "GET /v1/luma/accounts or re-add the account via POST /v1/luma/accounts"
)

#: Statuses a random (fail_rate) failure is drawn from: capacity and ordinary server trouble.
SIMULATED_FAILURES: Final = (429, 500, 503)

_ASSETS_PREFIX: Final = "/v1/luma/assets/"
_MEDIA_PREFIX: Final = "/media/"

_ERROR_MESSAGES: Final[Mapping[int, str]] = {
    401: "Unauthorized",
    429: "Too many requests: all configured Luma accounts are busy, retry later",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
    SESSION_ERROR_STATUS: SESSION_ERROR_MESSAGE,
}
_REASONS: Final[Mapping[int, str]] = {SESSION_ERROR_STATUS: "Account Error"}

#: Longest chunk-size or trailer line accepted in a chunked body, and most trailer lines.
_MAX_LINE: Final = 8192
_MAX_TRAILER_LINES: Final = 64
#: After refusing a body without reading it, how much of it we still swallow (and for how
#: long) so the client can read our answer: closing a socket with unread input sends RST,
#: which can destroy the answer in the client's receive buffer.
_LINGER_BYTES: Final = 2 * MAX_UPLOAD_BYTES
_LINGER_SECONDS: Final = 2.0
#: A client silent this long mid-request is dropped, so handler threads cannot pile up.
_SOCKET_TIMEOUT: Final = 30.0
#: How often the accept loop checks for stop(); bounds how long stop() takes.
_POLL_INTERVAL: Final = 0.05


@dataclass(frozen=True, slots=True)
class EmulatedUpload:
    """One upload the emulator accepted, as the server would remember it."""

    asset_ref: str
    email: str
    upload_id: str
    content_type: str  # the declared Content-Type, lowercased, without parameters
    size: int
    sha256: str  # hex digest of the bytes received
    received_at: datetime  # tz-aware, from the emulator's clock
    media_url: str


class _RequestError(Exception):
    """An error answer: raised anywhere while handling, turned into a JSON response."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: Mapping[str, str] = headers or {}


@dataclass(frozen=True, slots=True)
class _Stored:
    upload: EmulatedUpload
    data: bytes


class _State:
    """Everything handler threads share; every mutable field is guarded by ``_lock``."""

    def __init__(
        self,
        *,
        token: str,
        accounts: frozenset[str] | None,
        session_errors: frozenset[str],
        latency: float,
        fail_rate: float,
        retention: timedelta,
        retry_after: float | None,
        seed: int | None,
        clock: Callable[[], datetime] | None,
        log: Callable[[str], None] | None,
    ) -> None:
        self.token = token
        self.accounts = accounts
        self.session_errors = session_errors
        self.latency = latency
        self.fail_rate = fail_rate
        self.retention = retention
        self.retry_after = retry_after
        self.base_url = ""
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._stored: dict[str, _Stored] = {}
        self._statuses: Counter[int] = Counter()
        self._posts = 0
        self._forced: deque[tuple[int, float | None]] = deque()

    # -- time and retention ------------------------------------------------------------

    def now(self) -> datetime:
        moment = self._clock() if self._clock is not None else datetime.now(UTC)
        # A naive clock is taken to be UTC rather than refused: it is test scaffolding.
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def _prune_locked(self, now: datetime) -> None:
        expired = [
            key
            for key, stored in self._stored.items()
            if stored.upload.received_at + self.retention <= now
        ]
        for key in expired:
            del self._stored[key]

    # -- checks ------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Header values arrive decoded as latin-1; compare the raw bytes in constant time.
        given = credentials.strip().encode("latin-1", "replace")
        return hmac.compare_digest(given, self.token.encode("utf-8"))

    def check_account(self, email: str) -> None:
        # An account whose session expired is still a configured account: 596, never 404,
        # whether or not it is also listed among ``accounts``.
        if email in self.session_errors:
            raise _RequestError(SESSION_ERROR_STATUS, SESSION_ERROR_MESSAGE)
        if self.accounts is not None and email not in self.accounts:
            raise _RequestError(404, f"Unable to find configuration for email {email}")

    # -- simulated trouble -------------------------------------------------------------

    def force(self, statuses: Iterable[int], retry_after: float | None) -> None:
        with self._lock:
            self._forced.extend((status, retry_after) for status in statuses)

    def next_failure(self) -> _RequestError | None:
        with self._lock:
            if self._forced:
                status, retry_after = self._forced.popleft()
            elif self.fail_rate > 0 and self._rng.random() < self.fail_rate:
                status, retry_after = self._rng.choice(SIMULATED_FAILURES), self.retry_after
            else:
                return None
        return _failure(status, retry_after)

    # -- uploads -----------------------------------------------------------------------

    def record(self, email: str, content_type: str, data: bytes) -> EmulatedUpload:
        upload_id = str(uuid.uuid4())
        received_at = self.now()
        upload = EmulatedUpload(
            asset_ref=f"u{_user_id(email)}-email:{email}-image:{upload_id}",
            email=email,
            upload_id=upload_id,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            received_at=received_at,
            media_url=f"{self.base_url}/media/{upload_id}",
        )
        with self._lock:
            self._prune_locked(received_at)
            self._stored[upload_id] = _Stored(upload, data)
        return upload

    def uploads(self) -> list[EmulatedUpload]:
        now = self.now()
        with self._lock:
            self._prune_locked(now)
            return [stored.upload for stored in self._stored.values()]

    def media(self, upload_id: str) -> _Stored | None:
        now = self.now()
        with self._lock:
            self._prune_locked(now)
            return self._stored.get(upload_id)

    # -- accounting --------------------------------------------------------------------

    def note_post(self) -> None:
        with self._lock:
            self._posts += 1

    def note_status(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    @property
    def post_count(self) -> int:
        with self._lock:
            return self._posts

    def status_counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._statuses)

    def log(self, line: str) -> None:
        if self._log is None:
            return
        try:
            self._log(line)
        except Exception:
            # A broken log callback must not turn into a broken response.
            _logger.exception("assetcache emulator: log callback failed")


def _user_id(email: str) -> int:
    """A stable, plausible Luma user number for an email (the real one is opaque to us)."""
    digest = hashlib.sha256(email.encode("utf-8")).digest()
    return 10000 + int.from_bytes(digest[:8], "big") % 90000


def _format_seconds(seconds: float) -> str:
    # Whole seconds as the RFC wants; fractions are kept (non-standard) so tests can
    # ask for sub-second waits.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _failure(status: int, retry_after: float | None) -> _RequestError:
    try:
        fallback = HTTPStatus(status).phrase
    except ValueError:
        fallback = "Simulated failure"
    headers = {}
    if status == 429 and retry_after is not None:
        headers["Retry-After"] = _format_seconds(retry_after)
    return _RequestError(status, _ERROR_MESSAGES.get(status, fallback), headers)


def _describe_limit(limit: int) -> str:
    mib = 1024 * 1024
    if limit % mib == 0:
        return f"{limit // mib} MB"
    if limit % 1_000_000 == 0:
        return f"{limit // 1_000_000} MB"
    return f"{limit} bytes"


def _too_large(size: int) -> _RequestError:
    return _RequestError(
        400,
        f"File size ({size} bytes) exceeds maximum of {_describe_limit(MAX_UPLOAD_BYTES)}",
    )


def _email_from_path(path: str) -> str:
    """The account email of an assets path; one percent-encoded segment, nothing after."""
    segment = path[len(_ASSETS_PREFIX) :] if path.startswith(_ASSETS_PREFIX) else ""
    if not segment or "/" in segment:
        raise _RequestError(404, "Not found")
    return unquote(segment)


def _declared_type(header: str | None) -> str:
    """The declared media type; like the real server, the bytes themselves are not looked at."""
    declared = (header or "").split(";", 1)[0].strip().lower()
    if declared not in ACCEPTED_CONTENT_TYPES:
        raise _RequestError(
            400,
            f"Content-Type ({declared or 'none'}) not supported. "
            f"Valid: {', '.join(ACCEPTED_CONTENT_TYPES)}",
        )
    return declared


def _content_length(headers: Message) -> int:
    values = {str(value).strip() for value in headers.get_all("Content-Length") or []}
    if not values:
        return 0
    if len(values) > 1:
        raise _RequestError(400, "Conflicting Content-Length headers")
    text = values.pop()
    if not (text.isascii() and text.isdigit()):
        raise _RequestError(400, f"Invalid Content-Length ({text})")
    return int(text)


def _read_line(rfile: BufferedIOBase) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE or not line.endswith(b"\n"):
        raise _RequestError(400, "Malformed chunked body")
    return line


def _chunk_size(line: bytes) -> int:
    # Chunk extensions (";name=value") carry nothing we need.
    text = line.split(b";", 1)[0].strip()
    # int(..., 16) would also take "0x", "_" and signs, which are not HTTP.
    if not text or any(byte not in b"0123456789abcdefABCDEF" for byte in text):
        raise _RequestError(400, "Malformed chunked body")
    return int(text, 16)


def _read_chunked(rfile: BufferedIOBase, limit: int) -> bytes:
    """Decode a chunked body, refusing (before reading it) the chunk that crosses ``limit``."""
    parts: list[bytes] = []
    total = 0
    while (size := _chunk_size(_read_line(rfile))) > 0:
        if total + size > limit:
            raise _too_large(total + size)
        data = rfile.read(size)
        if len(data) != size or _read_line(rfile).strip():
            raise _RequestError(400, "Malformed chunked body")
        parts.append(data)
        total += size
    for _ in range(_MAX_TRAILER_LINES):  # trailers, ignored, up to the blank line
        if not _read_line(rfile).strip():
            return b"".join(parts)
    raise _RequestError(400, "Malformed chunked body")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: _State) -> None:
        # Chosen per instance: the class default is IPv4 only.
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall for seconds on
        # machines with slow DNS; the emulator never needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def stop_serving(self) -> None:
        """``shutdown()``, without waiting for the accept loop's next poll to notice it."""
        stopper = threading.Thread(target=self.shutdown, name="assetcache-emulator-stop")
        stopper.start()
        while stopper.is_alive():
            # A connection wakes the loop's select() at once; it is never accepted once the
            # shutdown flag is seen, and is dropped when the listening socket closes.
            with contextlib.suppress(OSError):
                socket.create_connection((self.server_name, self.server_port), timeout=1).close()
            stopper.join(_POLL_INTERVAL / 5)

    def track(self, connection: socket.socket, *, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End idle keep-alive connections, so their handler threads return promptly."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up or stalling is routine; anything else is a bug worth a trace,
        # sent to logging rather than straight to stderr.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        _logger.exception("assetcache emulator: error handling request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "assetcache-emulator"
    sys_version = ""
    timeout = _SOCKET_TIMEOUT
    # Headers and body go out in separate writes; Nagle + delayed ACK would stall keep-alive.
    disable_nagle_algorithm = True

    server: _Server
    _started: float
    _body_done: bool
    _expect_continue: bool
    _log_size: int

    # -- connection and request lifecycle ----------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        self.server.track(self.connection, alive=False)
        super().finish()

    def handle_one_request(self) -> None:
        self._started = time.perf_counter()
        self._body_done = False
        self._expect_continue = False
        self._log_size = 0
        self.path = ""
        super().handle_one_request()

    def parse_request(self) -> bool:
        # Restart the clock once the request line is in: on a keep-alive connection the
        # wait for it is the client's idle time, not time spent answering.
        self._started = time.perf_counter()
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        # Defer "100 Continue" until the request passed every check that needs no body, so
        # a client such as curl does not send megabytes only to be told 401.
        self._expect_continue = True
        return True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence BaseHTTPRequestHandler's stderr lines; see the ``log`` callback instead."""

    # -- routing -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        state = self.server.state
        if self.command == "POST":
            state.note_post()
        if state.latency > 0:
            time.sleep(state.latency)
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            if path.startswith(_MEDIA_PREFIX):
                self._serve_media(path[len(_MEDIA_PREFIX) :])
            else:
                self._serve_api(path)
        except _RequestError as error:
            self._send_json(error.status, {"error": error.message}, error.headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _serve_media(self, upload_id: str) -> None:
        # The CDN URL is public: no token, like the real storage.cdn-luma.com links.
        if self.command not in ("GET", "HEAD"):
            raise _RequestError(405, "Method not allowed", {"Allow": "GET, HEAD"})
        stored = self.server.state.media(upload_id)
        if stored is None:
            raise _RequestError(404, "Not found")
        self._log_size = len(stored.data)
        self._send(200, stored.data, stored.upload.content_type)

    def _serve_api(self, path: str) -> None:
        state = self.server.state
        if not state.authorized(self.headers.get("Authorization")):
            raise _RequestError(401, "Unauthorized", {"WWW-Authenticate": "Bearer"})
        email = _email_from_path(path)
        if self.command != "POST":
            raise _RequestError(405, "Method not allowed", {"Allow": "POST"})
        state.check_account(email)
        content_type = _declared_type(self.headers.get("Content-Type"))
        body = self._read_body()
        if not body:
            raise _RequestError(400, "Content is empty")
        # Simulated trouble only replaces answers that would have been a success.
        failure = state.next_failure()
        if failure is not None:
            raise failure
        upload = state.record(email, content_type, body)
        self._send_json(
            200,
            {
                "assetRef": upload.asset_ref,
                "email": upload.email,
                "upload": {"id": upload.upload_id, "media": {"url": upload.media_url}},
            },
        )

    # -- request body ------------------------------------------------------------------

    def _declares_body(self) -> bool:
        length = self.headers.get("Content-Length")
        return "Transfer-Encoding" in self.headers or (length is not None and length.strip() != "0")

    def _continue(self) -> None:
        if self._expect_continue:
            self._expect_continue = False
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()

    def _read_body(self) -> bytes:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if [part.strip().lower() for part in encoding.split(",")] != ["chunked"]:
                raise _RequestError(400, f"Transfer-Encoding ({encoding}) not supported")
            if "Content-Length" in self.headers:
                # Both framings at once is how requests get smuggled: never reuse this one.
                self.close_connection = True
            self._continue()
            body = _read_chunked(self.rfile, MAX_UPLOAD_BYTES)
        else:
            length = _content_length(self.headers)
            if length > MAX_UPLOAD_BYTES:
                raise _too_large(length)  # answered without reading a byte of it
            if length:
                self._continue()
            body = self.rfile.read(length)
            if len(body) != length:
                raise _RequestError(400, "Request body ended early")
        self._body_done = True
        self._log_size = len(body)
        return body

    # -- responses ---------------------------------------------------------------------

    def _send_json(
        self, status: int, payload: object, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        unread = not self._body_done and self._declares_body()
        if unread:
            self.close_connection = True
        self.server.state.note_status(status)
        try:
            self.send_response(status, _REASONS.get(status))
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            if unread:
                self._linger()
        finally:
            self._log_answer(status)

    def _linger(self) -> None:
        """Swallow (boundedly) a body we refused, so the client gets to read the answer."""
        connection = self.connection
        deadline = time.monotonic() + _LINGER_SECONDS
        budget = _LINGER_BYTES
        try:
            connection.shutdown(socket.SHUT_WR)
            while budget > 0 and (remaining := deadline - time.monotonic()) > 0:
                connection.settimeout(remaining)
                chunk = connection.recv(min(budget, 65536))
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass  # the client is gone or slow; either way we are done with it

    def _log_answer(self, status: int) -> None:
        path = self.path.split("?", 1)[0]  # a query string is no business of a log line
        elapsed_ms = (time.perf_counter() - self._started) * 1000
        self.server.state.log(
            f"{self.command or '-'} {path or '-'} -> {status} "
            f"({self._log_size} bytes, {elapsed_ms:.0f} ms)"
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors raised by the base class (bad request line, 501...), as JSON."""
        # The request could not even be parsed: nothing of it can be trusted or drained.
        self._body_done = True
        self.close_connection = True
        try:
            fallback = HTTPStatus(code).phrase
        except ValueError:
            fallback = "Error"
        self._send_json(code, {"error": message or fallback})


class Emulator:
    """A local, faithful stand-in for ``POST /v1/luma/assets/{email}``.

    ``start()`` (or ``with Emulator() as emulator:``) serves it on a daemon thread;
    ``serve_forever()`` blocks instead, for the command line. ``base_url`` and ``token``
    are what a client needs. ``accounts`` limits the known emails (any email otherwise);
    emails in ``session_errors`` are known accounts too, whose session expired: they answer
    596. ``latency``, ``fail_rate`` (429/500/503 drawn from ``random.Random(seed)``) and
    ``fail_next()`` simulate a troubled server; failures only ever replace answers that would
    have been a 200. ``log`` receives one line per request,
    ``"POST /v1/luma/assets/me%40example.com -> 200 (1234 bytes, 2 ms)"``, where the size is
    the request body read (uploads) or the body served (media); never the token.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        accounts: Iterable[str] | None = None,
        session_errors: Iterable[str] = (),
        latency: float = 0.0,
        fail_rate: float = 0.0,
        retention: timedelta = timedelta(days=30),
        retry_after: float | None = 1.0,
        seed: int | None = None,
        clock: Callable[[], datetime] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        _check_options(token, port, latency, fail_rate, retention, retry_after)
        self._host = host.removeprefix("[").removesuffix("]")
        self._port = port
        self._state = _State(
            token=token if token is not None else secrets.token_urlsafe(24),
            accounts=frozenset(accounts) if accounts is not None else None,
            session_errors=frozenset(session_errors),
            latency=latency,
            fail_rate=fail_rate,
            retention=retention,
            retry_after=retry_after,
            seed=seed,
            clock=clock,
            log=log,
        )
        self._lifecycle = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        # Never the token: reprs end up in logs, tracebacks and pytest failure output.
        where = self._state.base_url or "not started"
        return f"<Emulator {where} running={self._server is not None}>"

    @property
    def token(self) -> str:
        """The bearer token clients must send (random unless given)."""
        return self._state.token

    @property
    def base_url(self) -> str:
        """``http://host:port`` without a trailing slash, once started."""
        if not self._state.base_url:
            raise RuntimeError("the emulator has not been started")
        return self._state.base_url

    @property
    def uploads(self) -> list[EmulatedUpload]:
        """The uploads still retained, oldest first (a copy)."""
        return self._state.uploads()

    @property
    def request_count(self) -> int:
        """How many POST requests arrived, whatever their answer."""
        return self._state.post_count

    def status_counts(self) -> dict[int, int]:
        """How many answers of each status were sent (a copy)."""
        return self._state.status_counts()

    def fail_next(self, *statuses: int, retry_after: float | None = None) -> None:
        """Answer the next uploads that would succeed with these statuses, in order.

        A 429 carries ``Retry-After: retry_after`` when it is given.
        """
        for status in statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"fail_next() takes error statuses (400-599), not {status}")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must not be negative")
        self._state.force(statuses, retry_after)

    def start(self) -> Emulator:
        """Bind and serve on a daemon thread; a no-op when already running."""
        with self._lifecycle:
            if self._server is None:
                server = _Server(self._host, self._port, self._state)
                self._state.base_url = _base_url(self._host, server.server_port)
                self._thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": _POLL_INTERVAL},
                    name=f"assetcache-emulator-{server.server_port}",
                    daemon=True,
                )
                self._server = server
                self._stopped.clear()
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; safe to call more than once."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is not None:
                server.stop_serving()
                server.server_close()
                server.close_connections()
            if thread is not None:
                thread.join()
        self._stopped.set()

    def serve_forever(self) -> None:
        """Serve until Ctrl-C or ``stop()`` from another thread, then close cleanly."""
        try:
            self.start()
            # The accept loop runs on the daemon thread; this thread only waits, in slices
            # that let a KeyboardInterrupt through wherever it lands.
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _check_options(
    token: str | None,
    port: int,
    latency: float,
    fail_rate: float,
    retention: timedelta,
    retry_after: float | None,
) -> None:
    if token is not None and not token.strip():
        raise ValueError("token must not be empty")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be within 0..65535, not {port}")
    if latency < 0:
        raise ValueError("latency must not be negative")
    if not 0.0 <= fail_rate <= 1.0:
        raise ValueError(f"fail_rate must be within 0..1, not {fail_rate}")
    if retention <= timedelta(0):
        raise ValueError("retention must be positive")
    if retry_after is not None and retry_after < 0:
        raise ValueError("retry_after must not be negative")


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
