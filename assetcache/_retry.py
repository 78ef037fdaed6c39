"""How hard the client retries (a plain value, importable without the HTTP stack)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry 429, 5xx, dropped connections and timeouts.

    ``attempts`` counts every request, the first included; ``max_elapsed`` (seconds) bounds the
    time spent including waits: no wait starts that would end past it. Backoff doubles from
    ``initial`` up to ``max_backoff``, plus up to ``jitter`` seconds of randomness, and is never
    shorter than the server's ``Retry-After``.
    """

    attempts: int = 6
    max_elapsed: float = 180.0
    initial: float = 1.0
    max_backoff: float = 30.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.max_elapsed < 0 or self.initial < 0 or self.max_backoff < 0 or self.jitter < 0:
            raise ValueError("RetryPolicy times must not be negative")
