"""What only a person at a terminal gets, and what ``-q`` takes away.

- Progress bars on stderr, drawn by tqdm, which is imported only once a bar is drawn: never on
  a pipe, a log file or the console script's fast path. Lines printed while a bar is up go
  above it (tqdm clears the bar, the line is written, the bar is redrawn below it), so a
  result is never glued to the bar, whichever of stdout and stderr each one goes to.
- Colour for statuses (``expired``, ``revoked``, ``FUTURE(clock)``, live but expiring within
  24 h) on a stream that is a terminal, unless ``NO_COLOR`` is set (https://no-color.org) or
  ``TERM`` is ``dumb``.
- The retry notice: the library announces each wait before another attempt on the
  ``assetcache.retry`` logger (as data, a RetryWait); on a terminal the CLI says it once per
  wait, ``waiting 4 s for api.useapi.net: connection refused (try 3 of 6)``.
- ``-q``: no bar, no notice, no per-file line nor summary, only errors (and the data a
  command exists to print: refs, ls, audit, export, fill's output, --json).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import IO, Protocol

import click

from .._retry import RETRY_LOGGER, RetryWait


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def colour_on(stream: IO[str]) -> bool:
    """Whether ``stream`` gets colour: a terminal, ``NO_COLOR`` unset or empty (as no-color.org
    says), and a ``TERM`` that is not ``dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


#: A live ref with this little left is coloured as soon to expire.
SOON = timedelta(days=1)
#: The colour of each status a person should notice; "live" within SOON of its end is "soon".
STATUS_COLOURS = {"expired": "red", "revoked": "magenta", "future": "yellow", "soon": "yellow"}


def painted(text: str, colour: str | None) -> str:
    """``text`` in ``colour`` (ANSI), or as it is for None."""
    return text if colour is None else click.style(text, fg=colour)


# -- the progress bar ------------------------------------------------------------------------


class Progress(Protocol):
    """What a command does while a person waits: count steps, and print lines above the bar."""

    def advance(self, steps: int = 1, /) -> None: ...

    def echo(self, line: str, *, err: bool = False) -> None:
        """A line on stdout (a result: dropped by ``-q``) or stderr (an error: always)."""


@contextmanager
def progress(
    label: str,
    total: int | None,
    *,
    quiet: bool,
    unit: str = "file",
    minimum: int = 2,
    wanted: bool = True,
) -> Iterator[Progress]:
    """A bar on stderr over ``total`` steps of ``unit`` (None: a count with no end known;
    "B": bytes, shown in KiB, MiB...), shown only when stderr is a terminal, ``-q`` was not
    given, the command ``wanted`` one and there are at least ``minimum`` steps; otherwise
    lines are printed as they come and nothing else is."""
    few = total is not None and total < minimum
    if quiet or not wanted or few or not stderr_is_terminal():
        yield _Lines(quiet=quiet)
        return
    bar = _Bar(label, total, unit)
    try:
        yield bar
    finally:
        bar.close()


class _Lines:
    """No bar: lines as they come."""

    def __init__(self, *, quiet: bool) -> None:
        self._quiet = quiet

    def advance(self, steps: int = 1, /) -> None:
        pass

    def echo(self, line: str, *, err: bool = False) -> None:
        if err or not self._quiet:
            click.echo(line, err=err)


class _Bar:
    """A tqdm bar on stderr, redrawn below each line printed while it is up."""

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        from tqdm import tqdm  # here only: a terminal is there to draw on

        # leave=False: once done the bar goes, and the results stay on the screen.
        self._tqdm = tqdm(
            total=total,
            desc=label,
            unit=unit,
            unit_scale=unit == "B",
            unit_divisor=1024,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        self._lock = threading.Lock()  # the steps of a batch finish on several threads

    def advance(self, steps: int = 1, /) -> None:
        with self._lock:
            self._tqdm.update(steps)

    def echo(self, line: str, *, err: bool = False) -> None:
        above_bar(line, err=err)

    def close(self) -> None:
        self._tqdm.close()


def above_bar(text: str, *, err: bool = False) -> None:
    """``text`` and a newline on stdout or stderr; while a bar is drawn, above it.

    A stream that is not the terminal (stdout redirected to a file) is written straight away:
    nothing there can garble the bar.
    """
    stream = sys.stderr if err else sys.stdout
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None or not stream.isatty():
        click.echo(text, err=err)
        return
    with tqdm_module.tqdm.external_write_mode(file=stream):
        click.echo(text, err=err)  # click.echo flushes: the line is out before the redraw


# -- the retry notice ------------------------------------------------------------------------


def retry_notice(wait: RetryWait) -> str:
    """``waiting 4 s for api.useapi.net: connection refused (try 3 of 6)``."""
    seconds = int(wait.seconds + 0.5)  # half up, as readable() rounds
    how_long = f"{seconds} s" if seconds else "under 1 s"
    return (
        f"waiting {how_long} for {wait.host}: {wait.reason} "
        f"(try {wait.next_attempt} of {wait.attempts})"
    )


class _RetryNotices(logging.Handler):
    """Says each wait the clients announce, once: uploads in flight together fail and wait
    together, so a notice is not repeated for the same server until the wait it announced is
    over."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._say = say
        self._quiet_until: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler's lock
        wait = getattr(record, "retry_wait", None)
        if not isinstance(wait, RetryWait):
            return
        now = time.monotonic()
        if now < self._quiet_until.get(wait.host, 0.0):
            return
        self._quiet_until[wait.host] = now + wait.seconds
        self._say(retry_notice(wait))


def retry_notices(*, quiet: bool) -> Callable[[], None]:
    """When a person is watching (stderr a terminal, no ``-q``), say each wait before another
    attempt on stderr, above any bar, until the returned function is called."""
    if quiet or not stderr_is_terminal():
        return lambda: None
    logger = logging.getLogger(RETRY_LOGGER)
    handler = _RetryNotices(lambda text: above_bar(text, err=True))
    previous_level = logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):  # without -v, INFO records are not even made
        logger.setLevel(logging.INFO)

    def stop() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    return stop


def note(text: str, *, quiet: bool, err: bool = False) -> None:
    """A line for a person, not an error nor the data asked for (a summary, a count, "wrote
    FILE"): ``-q`` drops it."""
    if not quiet:
        click.echo(text, err=err)
