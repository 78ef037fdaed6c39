"""The command line's exit codes: what each one means (the --help epilog) and which error
ends a command with which."""

from __future__ import annotations

from .._errors import (
    AccountError,
    InvalidEmailError,
    InvalidImageError,
    NotCachedError,
    RemoteError,
)
from .._fill import FillError

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_NOT_CACHED = 3
EXIT_INVALID_INPUT = 4
EXIT_ACCOUNT = 5
EXIT_REMOTE = 6

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  unexpected error (rerun with -v for the traceback), an unusable ledger, or
     a missing one for a command that only reads
  2  usage error (bad option or argument, missing or malformed --email, an -o
     file that cannot be written), or malformed fill or import input
  3  no live ref cached (ref --offline)
  4  invalid input file: missing, unreadable, empty, unsupported type, too large
  5  account or credentials: no USEAPI_TOKEN, 401, 404, 596
  6  remote failure after retries: 429, 5xx, network, malformed answer
"""


def exit_code(exc: BaseException) -> int:
    """The documented exit code for an error (a FillError: its worst field's)."""
    if isinstance(exc, FillError):
        return max((exit_code(e) for e in exc.failures.values()), default=EXIT_UNEXPECTED)
    if isinstance(exc, NotCachedError):
        return EXIT_NOT_CACHED
    if isinstance(exc, InvalidImageError):
        return EXIT_INVALID_INPUT
    if isinstance(exc, AccountError):
        return EXIT_ACCOUNT
    if isinstance(exc, RemoteError):
        return EXIT_REMOTE
    if isinstance(exc, InvalidEmailError | ValueError):
        return EXIT_USAGE
    return EXIT_UNEXPECTED
