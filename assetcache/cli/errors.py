"""How the command line words an error: always one line on stderr, ``assetcache: error: …``,
in the command line's own words.

The library's messages speak Python (``pass token=...``); an error whose way out is a setting
carries it as data (``setting``, ``problem``), and here it gets the command line's advice (an
option or an environment variable). Click's own usage errors (three lines: usage, a hint, the
error) are reworded into the same one line, with the command's ``--help`` named in it.
"""

from __future__ import annotations

from typing import Final

import click

from .. import _config
from .._errors import AssetCacheError, LedgerError
from .._fill import FillError
from .exits import EXIT_UNEXPECTED, EXIT_USAGE
from .output import shown

PREFIX: Final = "assetcache: error: "

#: How a person at the command line gives each setting an error can ask for.
CLI_ADVICE: Final = {
    "token": f"set {_config.ENV_TOKEN} to your useapi.net API token (it is at https://useapi.net)",
    "email": f"pass --email or set {_config.ENV_EMAIL}",
}


class InputError(click.ClickException):
    """The input a command read (a payload, an import file) is malformed: exit 2 like a usage
    error, but the command line itself was right, so no pointer to ``--help``."""

    exit_code = EXIT_USAGE


class OutputError(click.ClickException):
    """An -o file could not be written (a full disk): exit 1, as for an unusable ledger."""

    exit_code = EXIT_UNEXPECTED


def error_line(text: str) -> str:
    """``text`` as the one error line: prefixed, escaped, and on one line whatever it holds."""
    return PREFIX + shown(" ".join(part.strip() for part in text.splitlines() if part.strip()))


def describe(error: BaseException) -> str:
    """What went wrong and what to do, in the command line's words."""
    if isinstance(error, FillError):
        listed = "; ".join(f"{name}: {describe(e)}" for name, e in error.failures.items())
        return f"the payload was not filled ({listed})"
    if isinstance(error, AssetCacheError) and error.setting is not None and error.problem:
        text = f"{error.problem}; {CLI_ADVICE[error.setting]}"
    else:
        text = str(error)
    if isinstance(error, LedgerError) and error.path is not None:
        # The library names the ledger's path; how it was chosen is the command line's to say.
        text += f"; the ledger is chosen by --db or {_config.ENV_DB}"
    return text


def click_error_text(error: click.ClickException) -> str:
    """Click's error as our sentence: lower-case start, no full stop, and for a usage error the
    command's help named in the same line (click prints usage and hint on lines of their own)."""
    text = error.format_message().strip()
    if text[:1].isupper() and not text[1:2].isupper():  # "Missing argument", not "URL ..."
        text = text[0].lower() + text[1:]
    text = text.removesuffix(".")
    if isinstance(error, click.UsageError):
        command = error.ctx.command_path if error.ctx is not None else "assetcache"
        text += f" (see '{command} --help')"
    return text
