"""The HTTP side of the emulator: one request read (routing, checks, bodies with a length or
chunked) and answered as the remote would, in JSON. Knows nothing of the server that runs it:
the state and the connection registry are handed to each handler.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from io import BufferedIOBase
from socketserver import BaseServer
from typing import Any, Final
from urllib.parse import unquote

from ..content.sniff import MAX_UPLOAD_BYTES
from .state import ACCEPTED_CONTENT_TYPES, SESSION_ERROR_STATUS, RequestError, State

_ASSETS_PREFIX: Final = "/v1/luma/assets/"
_MEDIA_PREFIX: Final = "/media/"

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


def _describe_limit(limit: int) -> str:
    mib = 1024 * 1024
    if limit % mib == 0:
        return f"{limit // mib} MB"
    if limit % 1_000_000 == 0:
        return f"{limit // 1_000_000} MB"
    return f"{limit} bytes"


def _too_large(size: int) -> RequestError:
    return RequestError(
        400,
        f"File size ({size} bytes) exceeds maximum of {_describe_limit(MAX_UPLOAD_BYTES)}",
    )


def _email_from_path(path: str) -> str:
    """The account email of an assets path; one percent-encoded segment, nothing after."""
    segment = path[len(_ASSETS_PREFIX) :] if path.startswith(_ASSETS_PREFIX) else ""
    if not segment or "/" in segment:
        raise RequestError(404, "Not found")
    return unquote(segment)


def _declared_type(header: str | None) -> str:
    """The declared media type; like the real server, the bytes themselves are not looked at."""
    declared = (header or "").split(";", 1)[0].strip().lower()
    if declared not in ACCEPTED_CONTENT_TYPES:
        raise RequestError(
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
        raise RequestError(400, "Conflicting Content-Length headers")
    text = values.pop()
    if not (text.isascii() and text.isdigit()):
        raise RequestError(400, f"Invalid Content-Length ({text})")
    return int(text)


def _read_line(rfile: BufferedIOBase) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE or not line.endswith(b"\n"):
        raise RequestError(400, "Malformed chunked body")
    return line


def _chunk_size(line: bytes) -> int:
    # Chunk extensions (";name=value") carry nothing we need.
    text = line.split(b";", 1)[0].strip()
    # int(..., 16) would also take "0x", "_" and signs, which are not HTTP.
    if not text or any(byte not in b"0123456789abcdefABCDEF" for byte in text):
        raise RequestError(400, "Malformed chunked body")
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
            raise RequestError(400, "Malformed chunked body")
        parts.append(data)
        total += size
    for _ in range(_MAX_TRAILER_LINES):  # trailers, ignored, up to the blank line
        if not _read_line(rfile).strip():
            return b"".join(parts)
    raise RequestError(400, "Malformed chunked body")


class Connections:
    """The connections being handled, so that stopping can end idle keep-alive ones (whose
    handler threads would otherwise wait for the client's next request)."""

    def __init__(self) -> None:
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def track(self, connection: socket.socket, *, alive: bool) -> None:
        with self._lock:
            if alive:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_all(self) -> None:
        """End every connection still open, so their handler threads return promptly."""
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    """One connection's requests; the server binds ``state`` and ``connections`` with
    ``functools.partial``, so that the handler needs nothing of the server's class."""

    protocol_version = "HTTP/1.1"
    server_version = "assetcache-emulator"
    sys_version = ""
    timeout = _SOCKET_TIMEOUT
    # Headers and body go out in separate writes; Nagle + delayed ACK would stall keep-alive.
    disable_nagle_algorithm = True

    _started: float
    _body_done: bool
    _expect_continue: bool
    _log_size: int

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: BaseServer,
        *,
        state: State,
        connections: Connections,
    ) -> None:
        # Set before the base class's __init__, which handles the whole connection.
        self.state = state
        self.connections = connections
        super().__init__(request, client_address, server)

    # -- connection and request lifecycle ----------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connections.track(self.connection, alive=True)

    def finish(self) -> None:
        self.connections.track(self.connection, alive=False)
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
        state = self.state
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
        except RequestError as error:
            self._send_json(error.status, {"error": error.message}, error.headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _serve_media(self, upload_id: str) -> None:
        # The CDN URL is public: no token, like the real storage.cdn-luma.com links.
        if self.command not in ("GET", "HEAD"):
            raise RequestError(405, "Method not allowed", {"Allow": "GET, HEAD"})
        stored = self.state.media(upload_id)
        if stored is None:
            raise RequestError(404, "Not found")
        self._log_size = len(stored.data)
        self._send(200, stored.data, stored.upload.content_type)

    def _serve_api(self, path: str) -> None:
        state = self.state
        if not state.authorized(self.headers.get("Authorization")):
            raise RequestError(401, "Unauthorized", {"WWW-Authenticate": "Bearer"})
        email = _email_from_path(path)
        if self.command != "POST":
            raise RequestError(405, "Method not allowed", {"Allow": "POST"})
        state.check_account(email)
        content_type = _declared_type(self.headers.get("Content-Type"))
        body = self._read_body()
        if not body:
            raise RequestError(400, "Content is empty")
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
                raise RequestError(400, f"Transfer-Encoding ({encoding}) not supported")
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
                raise RequestError(400, "Request body ended early")
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
        self.state.note_status(status)
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
        self.state.log(
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
