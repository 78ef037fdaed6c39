"""The exception tree. Everything assetcache raises on purpose is an ``AssetCacheError``::

    AssetCacheError
    ├── InvalidImageError ........ the bytes cannot be uploaded (local check, or the server's 400)
    ├── InvalidEmailError ........ the account email cannot be used (also a ValueError)
    ├── ImportRowError ........... a row to import could not be an upload (also a ValueError)
    ├── NotCachedError ........... no live ref is known and uploading was not allowed
    ├── FillError ................ a payload's ref fields could not all be filled (one per field)
    ├── AccountError ............. the account or the credentials need the user's attention
    │   ├── UnauthorizedError .... no token, or the server answered 401
    │   ├── AccountNotFoundError . 404: the email is not configured at useapi.net
    │   └── SessionExpiredError .. 596: the Luma session must be re-added
    ├── RemoteError .............. the service failed us, after retries where retrying makes sense
    │   ├── RateLimitedError ..... 429 until the retry budget ran out
    │   ├── ServerError .......... 5xx, connection errors, timeouts
    │   └── ProtocolError ........ an answer that is not the documented one
    └── LedgerError .............. the ledger (or its lock folder) cannot be used: opened, migrated,
                                   read or written, or another user controls it; or an image's
                                   upload lock stayed held past the waiting deadline

Every message says what happened and what to do about it, in Python's words (``pass
token=...``): this is the library's voice. An error whose way out is a setting also carries it
as data, ``setting`` (which one, by ``AssetCache``'s parameter name) and ``problem`` (what
happened, without the advice), so that another front end words its own advice (the command
line names its option or environment variable, never a Python parameter). No message, and no
repr, ever contains the API token: the exceptions are built from status codes, emails and paths
only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # types only: the console script's hit imports this module, never typing
    from typing import Literal, Self, TypeVar

    #: The settings an error can ask for, by the name of AssetCache's parameter.
    Setting = Literal["token", "email"]
    E = TypeVar("E", bound="AssetCacheError")

__all__ = [
    "AccountError",
    "AccountNotFoundError",
    "AssetCacheError",
    "ImportRowError",
    "InvalidEmailError",
    "InvalidImageError",
    "LedgerError",
    "NotCachedError",
    "ProtocolError",
    "RateLimitedError",
    "RemoteError",
    "ServerError",
    "SessionExpiredError",
    "UnauthorizedError",
]


class AssetCacheError(Exception):
    """Base class of every error assetcache raises on purpose.

    ``setting`` names the setting the caller must give or correct when that is the way out
    (``"token"``, ``"email"``), else None; ``problem`` is then what happened, without the advice
    the message adds (see ``needing``).
    """

    setting: Setting | None = None
    problem: str | None = None

    def needing(self, setting: Setting, problem: str) -> Self:
        """This error, marked as one the caller fixes by giving ``setting``: ``problem`` says
        what happened, the message (this error's own text) says it with Python's advice."""
        self.setting = setting
        self.problem = problem
        return self


#: How a Python caller gives each setting: the library's advice, ending its messages.
PYTHON_ADVICE: dict[Setting, str] = {
    "token": "pass token=... or set USEAPI_TOKEN (your token is at https://useapi.net)",
    "email": "pass email=...",
}


def needs_setting(error: type[E], setting: Setting, problem: str) -> E:
    """An error of type ``error`` (built from its message alone) whose way out is ``setting``:
    the message is ``problem`` with the library's advice; the data lets a front end word its
    own."""
    return error(f"{problem}; {PYTHON_ADVICE[setting]}").needing(setting, problem)


class InvalidImageError(AssetCacheError):
    """The data is empty, not JPEG/PNG/WebP, too large, or not a readable regular file."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InvalidEmailError(AssetCacheError, ValueError):
    """The account email is empty, malformed, or cannot be sent as one URL path segment."""


class ImportRowError(AssetCacheError, ValueError):
    """A row given to ``import_rows`` could not be an upload: ``row`` is its number (from 1),
    ``problem`` says what is wrong. Every row before it was merged, none after it."""

    def __init__(self, row: int, problem: str) -> None:
        super().__init__(f"row {row} cannot be imported: {problem}; {merged_before(row)}")
        self.row = row
        self.problem = problem


def merged_before(row: int) -> str:
    """What an import stopped at ``row`` did with the rows before it, for its message."""
    if row == 1:
        return "nothing was imported"
    if row == 2:
        return "the row before it was imported, and importing again once it is fixed skips it"
    return (
        f"the {row - 1} rows before it were imported, and importing again once it is fixed "
        "skips them"
    )


class NotCachedError(AssetCacheError):
    """No live assetRef is cached for this content and account, and uploading was not allowed."""


class AccountError(AssetCacheError):
    """The credentials or the Luma account need the user's attention; retrying will not help."""

    def __init__(self, message: str, *, email: str | None = None) -> None:
        super().__init__(message)
        self.email = email


class UnauthorizedError(AccountError):
    """No API token was given, or useapi.net rejected it (401)."""


class AccountNotFoundError(AccountError):
    """useapi.net has no Luma account configured for this email (404)."""


class SessionExpiredError(AccountError):
    """The Luma account's session has expired (596); it must be re-added."""


class RemoteError(AssetCacheError):
    """The remote service failed; ``status`` is the last HTTP status seen, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitedError(RemoteError):
    """useapi.net kept answering 429 (account at capacity) until the retry budget ran out."""


class ServerError(RemoteError):
    """A 5xx answer, a dropped connection or a timeout, after retries."""


class ProtocolError(RemoteError):
    """The server answered something other than the documented response; nothing was recorded."""


class LedgerError(AssetCacheError):
    """The ledger cannot be opened, migrated, read or written; ``path`` names it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
