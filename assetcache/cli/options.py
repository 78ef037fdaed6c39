"""Option types and options shared by several commands: durations (bounded by the uploads'
retention where a margin is asked for), the account email, FILE arguments (``-`` reads more
paths from stdin), and ``-o`` files (``-`` is stdout)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TextIO

import click

from .. import _config
from .._asset import RETENTION
from .._durations import format_duration, parse_duration
from .errors import OutputError


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A duration such as ``1d12h``; with ``below``, one shorter than that."""

    name = "duration"

    def __init__(self, below: timedelta | None = None) -> None:
        self.below = below

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            duration = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.below is not None and duration >= self.below:
            self.fail(
                f"{value} is not under {format_duration(self.below)}: uploads live "
                f"{RETENTION.days} days, so no upload could ever have that much left",
                param,
                ctx,
            )
        return duration


DURATION = Duration()
#: --min-remaining: what a fresh upload can satisfy (resolve refuses more, as ValueError).
MIN_REMAINING = Duration(below=RETENTION)

#: -o FILE: ``-`` is stdout. A file is opened (and emptied) while the command line is read, as a
#: shell's ``>`` would be, so a path that cannot be written is a usage error naming it, before
#: anything is uploaded or built. Write to it inside ``writing``.
OUTPUT_FILE = click.File("w", encoding="utf-8", lazy=False)


@contextmanager
def writing(output: TextIO) -> Iterator[TextIO]:
    """Writes to an -o file, flushed at the end: one that fails (a full disk) ends the command
    with one error line naming the file and exit 1. Unflushed, the last writes would fail in
    click's closing of the file, which swallows the error (exit 0, the file cut short)."""
    try:
        yield output
        output.flush()
    except BrokenPipeError:
        raise  # stdout's reader went away: click ends quietly with exit 1
    except OSError as exc:
        raise OutputError(f"cannot write {output.name}: {exc.strerror or exc}") from None


def email_option(required: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--email: the account for commands that need one (falling back to $ASSETCACHE_EMAIL);
    an optional filter elsewhere, where the variable would narrow ls or prune by surprise."""
    if required:
        return click.option(
            "--email",
            "-e",
            envvar=_config.ENV_EMAIL,
            show_envvar=True,
            help="The Luma account's email at useapi.net.",
        )
    return click.option("--email", "-e", help="Only this account (default: every account).")


def need_email(email: str | None) -> str:
    """The account, or the usage error that names both ways of giving it."""
    if not email:
        raise click.UsageError(f"no account email: pass --email or set {_config.ENV_EMAIL}")
    return email


def read_paths(files: Sequence[str]) -> list[str]:
    """FILE arguments as paths; each ``-`` stands for the paths on stdin, one a line."""
    paths: list[str] = []
    for name in files:
        if name == "-":
            paths.extend(line.rstrip("\r\n") for line in sys.stdin if line.strip())
        else:
            paths.append(name)
    return paths
