"""Option types and options shared by several commands: durations (bounded by the uploads'
retention where a margin is asked for), the account email, FILE arguments (``-`` reads more
paths from stdin; the shell completes them as file names), and ``-o`` files (``-`` is stdout)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any

import click

from .. import _config
from .._asset import RETENTION
from .._durations import format_duration, parse_duration
from .errors import OutputError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


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


class OutputFile(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """-o FILE, ``-`` for stdout. The path is checked while the command line is read (a folder
    that exists and may be written to, and no folder by that name), so a typo is a usage error
    before anything is uploaded or built; the file is opened only once there is something to
    write (``writing``), so a command that fails first leaves no empty file behind."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = os.fsdecode(value)
        problem = None if path == "-" else _unwritable(path)
        if problem is not None:
            self.fail(f"cannot write {path}: {problem}", param, ctx)
        return path

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return complete_path(ctx, param, incomplete)


OUTPUT_FILE = OutputFile()


def _unwritable(path: str) -> str | None:
    """Why ``path`` cannot be written as a file, as far as can be told without creating it."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "it is a folder"
    if not os.path.isdir(folder):
        return f"there is no folder {folder}"
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        return "permission denied"
    return None


@contextmanager
def writing(path: str) -> Iterator[IO[str]]:
    """The -o file opened for writing (stdout for ``-``), flushed and closed at the end: a
    failure (a full disk) ends the command with one error line naming the file and exit 1."""
    try:
        with click.open_file(path, "w", encoding="utf-8") as out:  # stdout is left open
            yield out
            out.flush()
    except BrokenPipeError:
        raise  # stdout's reader went away: click ends quietly with exit 1
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


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


def complete_path(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion for a path that click does not type as one (FILE... also takes ``-``,
    and the library checks the files itself, naming each failure): the shell completes a
    file name, as it would without completion enabled."""
    from click.shell_completion import CompletionItem  # only while the shell asks

    return [CompletionItem(incomplete, type="file")]
