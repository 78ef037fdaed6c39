"""The emulator's memory and its rules: the uploads it keeps (until their retention has
passed), the accounts it knows, the trouble it was asked to simulate, and the error answers the
published contract defines. Shared by every handler thread, behind one lock.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Final

#: One logger for the whole emulator, whichever of its modules logs.
logger = logging.getLogger("assetcache.emulator")

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

_ERROR_MESSAGES: Final[Mapping[int, str]] = {
    401: "Unauthorized",
    429: "Too many requests: all configured Luma accounts are busy, retry later",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
    SESSION_ERROR_STATUS: SESSION_ERROR_MESSAGE,
}


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


class RequestError(Exception):
    """An error answer: raised anywhere while handling, turned into a JSON response."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: Mapping[str, str] = headers or {}


@dataclass(frozen=True, slots=True)
class Stored:
    upload: EmulatedUpload
    data: bytes


class State:
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
        self._stored: dict[str, Stored] = {}
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
            raise RequestError(SESSION_ERROR_STATUS, SESSION_ERROR_MESSAGE)
        if self.accounts is not None and email not in self.accounts:
            raise RequestError(404, f"Unable to find configuration for email {email}")

    # -- simulated trouble -------------------------------------------------------------

    def force(self, statuses: Iterable[int], retry_after: float | None) -> None:
        with self._lock:
            self._forced.extend((status, retry_after) for status in statuses)

    def next_failure(self) -> RequestError | None:
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
            self._stored[upload_id] = Stored(upload, data)
        return upload

    def uploads(self) -> list[EmulatedUpload]:
        now = self.now()
        with self._lock:
            self._prune_locked(now)
            return [stored.upload for stored in self._stored.values()]

    def media(self, upload_id: str) -> Stored | None:
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
            logger.exception("assetcache emulator: log callback failed")


def _user_id(email: str) -> int:
    """A stable, plausible Luma user number for an email (the real one is opaque to us)."""
    digest = hashlib.sha256(email.encode("utf-8")).digest()
    return 10000 + int.from_bytes(digest[:8], "big") % 90000


def _format_seconds(seconds: float) -> str:
    # Whole seconds as the RFC wants; fractions are kept (non-standard) so tests can
    # ask for sub-second waits.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _failure(status: int, retry_after: float | None) -> RequestError:
    try:
        fallback = HTTPStatus(status).phrase
    except ValueError:
        fallback = "Simulated failure"
    headers = {}
    if status == 429 and retry_after is not None:
        headers["Retry-After"] = _format_seconds(retry_after)
    return RequestError(status, _ERROR_MESSAGES.get(status, fallback), headers)
