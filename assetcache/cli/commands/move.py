"""export and import: a ledger's rows as JSON Lines, to move them to another ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from ..._errors import ImportRowError, merged_before
from ..app import app_of
from ..errors import InputError
from ..options import email_option


@click.command()
@email_option(required=False)
@click.option("--live", is_flag=True, help="Only refs still live.")
@click.pass_context
def export(ctx: click.Context, email: str | None, live: bool) -> None:
    """Write every upload row as JSON Lines to stdout (one object a line, every column but
    the local row id), to move a ledger with import."""
    import json

    encoder = json.JSONEncoder(ensure_ascii=False)
    for row in app_of(ctx).cache().export(email=email, live=live):  # streamed: any size
        click.echo(encoder.encode(row))


@click.command("import")
@click.argument("file", type=click.File("rb"), default="-", metavar="[FILE|-]")
@click.pass_context
def import_command(ctx: click.Context, file: Any) -> None:
    """Merge rows written by export (from FILE, or stdin) into this ledger. The same rows
    twice add nothing; a line that is not a valid upload stops the import (exit 2), after the
    rows before it are merged."""
    rows = _JsonLines(file)
    try:
        report = app_of(ctx).cache().import_rows(rows)
    except ImportRowError as exc:  # a row that is not an upload: the input is wrong
        # import_rows reads no row past the one it refuses, so that row is the line last read.
        message = f"line {rows.line} cannot be imported: {exc.problem}; {merged_before(exc.row)}"
        raise InputError(message) from None
    if rows.unreadable is not None:
        raise InputError(f"{rows.unreadable}; {merged_before(rows.count + 1)}")
    click.echo(
        f"added {report.added}, revoked {report.revoked}, skipped {report.skipped} already present"
    )


class _JsonLines:
    """An import's input as rows: one JSON value a line, blank lines skipped. At a line that is
    not UTF-8 JSON it stops, saying so in ``unreadable``, so that the rows before it are still
    merged. ``line`` is the line of the row last read; ``count`` how many rows were read."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.line = 0
        self.count = 0
        self.unreadable: str | None = None

    def __iter__(self) -> Iterator[object]:
        import json

        for number, raw in enumerate(self._file, 1):
            self.line = number
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
