"""export and import: a ledger's rows as JSON Lines, to move them to another ledger."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..._errors import ImportRowError, merged_before
from ..app import app_of
from ..errors import InputError
from ..options import email_option
from ..terminal import Progress, note, progress


@click.command()
@email_option(required=False)
@click.option("--live", is_flag=True, help="Only refs still live.")
@click.pass_context
def export(ctx: click.Context, email: str | None, live: bool) -> None:
    """Write every upload row as JSON Lines to stdout (one object a line, every column but
    the local row id), to move a ledger with import."""
    import json

    app = app_of(ctx)
    encoder = json.JSONEncoder(ensure_ascii=False)
    rows = app.reading_cache().export(email=email, live=live)  # streamed: any size
    # A bar while the rows go to a file or a pipe; on the terminal, rows scrolling by are
    # progress enough.
    with progress("exporting", None, quiet=app.quiet, unit="row", wanted=_elsewhere()) as bar:
        for row in rows:
            click.echo(encoder.encode(row))
            bar.advance()


def _elsewhere() -> bool:
    """Whether stdout goes somewhere other than a terminal."""
    return not sys.stdout.isatty()


@click.command("import")
@click.argument("file", type=click.File("rb"), default="-", metavar="[FILE|-]")
@click.pass_context
def import_command(ctx: click.Context, file: Any) -> None:
    """Merge rows written by export (from FILE, or stdin) into this ledger. The same rows
    twice add nothing; a line that is not a valid upload stops the import (exit 2), after the
    rows before it are merged."""
    app = app_of(ctx)
    size = _regular_size(file)
    # A regular file's bar counts its bytes; from a pipe, with no end known, its lines.
    with progress("importing", size, quiet=app.quiet, unit="line" if size is None else "B") as bar:
        rows = _JsonLines(file, on_line=_stepper(bar, by_bytes=size is not None))
        try:
            report = app.cache().import_rows(rows)
        except ImportRowError as exc:  # a row that is not an upload: the input is wrong
            # import_rows reads no row past the one it refuses, so that row is the line last read.
            problem = f"line {rows.line} cannot be imported: {exc.problem}"
            raise InputError(f"{problem}; {merged_before(exc.row)}") from None
    if rows.unreadable is not None:
        raise InputError(f"{rows.unreadable}; {merged_before(rows.count + 1)}")
    note(
        f"added {report.added}, revoked {report.revoked}, skipped {report.skipped} already present",
        quiet=app.quiet,
    )


def _regular_size(file: Any) -> int | None:
    """The size of the file import reads, if it is a regular file (not a pipe, not a
    terminal): the end its bar runs to."""
    try:
        info = os.fstat(file.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _stepper(bar: Progress, *, by_bytes: bool) -> Callable[[int], None]:
    """What advances the bar as a line of ``n`` bytes is read: its bytes, or one line."""
    if by_bytes:
        return bar.advance
    return lambda n: bar.advance()


class _JsonLines:
    """An import's input as rows: one JSON value a line, blank lines skipped. At a line that is
    not UTF-8 JSON it stops, saying so in ``unreadable``, so that the rows before it are still
    merged. ``line`` is the line of the row last read; ``count`` how many rows were read;
    ``on_line(n)`` is called as each line of ``n`` bytes is read."""

    def __init__(self, file: Any, on_line: Callable[[int], None]) -> None:
        self._file = file
        self._on_line = on_line
        self.line = 0
        self.count = 0
        self.unreadable: str | None = None

    def __iter__(self) -> Iterator[object]:
        import json

        for number, raw in enumerate(self._file, 1):
            self.line = number
            self._on_line(len(raw))
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.unreadable = f"line {self.line} of the input is not UTF-8 text"
                return
            except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
                self.unreadable = f"line {self.line} of the input is not JSON"
                return
            self.count += 1
            yield row
