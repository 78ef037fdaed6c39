"""The emulator served: a threaded HTTP server on loopback that starts and stops cleanly, and
``Emulator``, the public face that holds it (start, stop, serve_forever, what clients need).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

from .handler import Connections, Handler
from .state import EmulatedUpload, State, logger

#: How often the accept loop checks for stop(); bounds how long stop() takes.
_POLL_INTERVAL: Final = 0.05


class _Server(ThreadingHTTPServer):
    """Serves each connection on a daemon thread; stops without waiting for a poll."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: State) -> None:
        # Chosen per instance: the class default is IPv4 only.
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.connections = Connections()
        handler = functools.partial(Handler, state=state, connections=self.connections)
        super().__init__((host, port), handler)

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up or stalling is routine; anything else is a bug worth a trace,
        # sent to logging rather than straight to stderr.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        logger.exception("assetcache emulator: error handling request from %s", client_address)


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
        self._state = State(
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
                server.connections.close_all()
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
