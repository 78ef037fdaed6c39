"""How hard the client retries (a plain value, importable without the HTTP stack)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry 429, 5xx, dropped connections and timeouts, and for how long.

    ``attempts`` counts every request, the first included. ``max_elapsed`` (seconds) bounds the
    whole upload, attempts and waits together: no wait starts that would end past it, and no
    attempt runs past it. ``attempt_timeout`` (seconds) bounds one attempt as a whole --
    connecting, sending the image and reading the complete answer -- however slowly the server
    trickles it; sending 20 MB within the default 120 s needs about 1.4 Mbit/s of uplink, so
    raise it (and ``max_elapsed``) for slower links. Backoff doubles from ``initial`` up to
    ``max_backoff``, plus up to ``jitter`` seconds of randomness, and is never shorter than the
    server's ``Retry-After``.
    """

    attempts: int = 6
    max_elapsed: float = 180.0
    initial: float = 1.0
    max_backoff: float = 30.0
    jitter: float = 1.0
    attempt_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.initial < 0 or self.max_backoff < 0 or self.jitter < 0:
            raise ValueError("RetryPolicy times must not be negative")
        if not (self.max_elapsed > 0 and self.attempt_timeout > 0):
            # Zero would leave no time for even the first request.
            raise ValueError("RetryPolicy.max_elapsed and attempt_timeout must be positive")


#: The logger on which both clients announce each wait before another attempt (level INFO).
#: Each of its records carries the wait as data, ``record.retry_wait`` (a RetryWait), for a
#: front end to word as it likes: the library itself never prints.
RETRY_LOGGER = "assetcache.retry"


@dataclass(frozen=True, slots=True)
class RetryWait:
    """One wait before another attempt at an upload, as data."""

    host: str  # the server's host name, as in the upload URL
    reason: str  # why the last attempt failed, in a few words: "connection refused", "HTTP 503"
    seconds: float  # how long until the next attempt starts
    next_attempt: int  # that attempt's number, the first one being 1
    attempts: int  # the most attempts the policy allows (the budget may end them sooner)
