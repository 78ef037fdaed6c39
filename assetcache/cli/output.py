"""What the command line shows: text made safe for a terminal, JSON, tables, sizes, short
refs, and the progress bar (on stderr, on a terminal only)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

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
    import json  # only the --json outputs need it

    click.echo(json.dumps(value, ensure_ascii=False, indent=indent))


def short_ref(ref: str) -> str:
    return ref if len(ref) <= 20 else f"{ref[:6]}…{ref[-8:]}"


def table(rows: Sequence[Sequence[str]]) -> Iterator[str]:
    """Left-aligned columns two spaces apart; one format string per table, not per cell."""
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    return (line.format(*row).rstrip() for row in rows)


class ProgressBar(Protocol):
    """What a command does with a bar: count steps done."""

    def update(self, n_steps: int, /) -> None: ...


def progress_bar(length: int, label: str) -> AbstractContextManager[ProgressBar]:
    """A bar on stderr for ``length`` steps; one that shows nothing for a single step or when
    stderr is not a terminal (a log file or a pipe would fill with its redraws)."""
    if length > 1 and _stderr_is_tty():
        return click.progressbar(length=length, label=label, file=sys.stderr)
    return _NullBar()


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


class _NullBar:
    """A bar that shows nothing."""

    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
