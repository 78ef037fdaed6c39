"""What the command line shows: text made safe for a terminal, JSON, tables, sizes, short
refs. (What only a terminal gets, progress bars and colour, is terminal.py's.)"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import click

# Sizes as ls prints them: the report shows the same words, so the rule lives in a leaf both use.
from .._sizes import human_size as human_size

#: Characters a terminal would act on rather than show: C0 and C1 controls, DEL, and the
#: Unicode marks that reorder text (a file name can make "gnp.exe" read "exe.png").
_UNSHOWABLE = (
    *range(0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
)
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNSHOWABLE}
_ESCAPES.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})


def shown(text: str) -> str:
    """Text for a human's terminal: control characters escaped, so a hostile file name or
    server answer can neither move the cursor, recolour the screen nor forge a line."""
    if text.isascii() and text.isprintable():  # nothing to escape (both checks run in C):
        return text  # the common case, four times per row of a 50,000-row ls
    return text.translate(_ESCAPES)


def emit_json(value: Any, *, indent: int | None = None) -> None:
    click.echo(json_text(value, indent=indent))


def json_text(value: Any, *, indent: int | None = None) -> str:
    import json  # only the --json outputs need it

    return json.dumps(value, ensure_ascii=False, indent=indent)


def short_ref(ref: str) -> str:
    return ref if len(ref) <= 20 else f"{ref[:6]}…{ref[-8:]}"


def table(
    rows: Sequence[Sequence[str]], colours: Sequence[Mapping[int, str]] | None = None
) -> Iterator[str]:
    """Left-aligned columns two spaces apart; one format string per table, not per cell.

    ``colours``: for each row, the colour of some of its cells by column (terminal.py decides
    whether there is colour at all); the padding stays outside the colour codes.
    """
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    if colours is not None:
        return (_coloured(row, widths, c) for row, c in zip(rows, colours, strict=True))
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    return (line.format(*row).rstrip() for row in rows)


def _coloured(row: Sequence[str], widths: Sequence[int], colours: Mapping[int, str]) -> str:
    cells = (
        (click.style(cell, fg=colours[i]) if i in colours else cell) + " " * (width - len(cell))
        for i, (cell, width) in enumerate(zip(row, widths, strict=True))
    )
    return "  ".join(cells).rstrip()
