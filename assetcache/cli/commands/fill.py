"""fill: a Luma request payload's ref fields filled with live refs for the files they name."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import IO, Any

import click

from ... import _fill
from ..._cache import DEFAULT_JOBS, AssetCache
from ..._errors import AssetCacheError, InvalidImageError
from ..._fill import FillError
from ..app import app_of
from ..errors import InputError, describe, error_line
from ..exits import EXIT_OK, exit_code
from ..options import MIN_REMAINING, OUTPUT_FILE, email_option, writing
from ..terminal import progress


@click.command()
@click.argument(
    "payload",
    type=click.File("r", encoding="utf-8", errors="surrogateescape"),
    default="-",
    metavar="[PAYLOAD|-]",
)
@email_option()
@click.option("--min-remaining", type=MIN_REMAINING, help="Life every filled ref must still have.")
@click.option(
    "--jobs", "-j", type=click.IntRange(1, 64), default=DEFAULT_JOBS, show_default=True,
    help="Uploads in flight at once, across the whole batch.",
)  # fmt: skip
@click.option(
    "--base", type=click.Path(exists=True, file_okay=False), metavar="DIR",
    help="Look for relative image paths in DIR only (default: the current folder and the "
    "payload file's folder).",
)  # fmt: skip
@click.option("--output", "-o", type=OUTPUT_FILE, default="-",
              help="Write the filled JSON here (default -: stdout).")  # fmt: skip
@click.pass_context
def fill(
    ctx: click.Context,
    payload: Any,
    email: str | None,
    min_remaining: timedelta | None,
    jobs: int,
    base: str | None,
    output: str,
) -> None:
    """Fill a Luma request payload's ref fields (imageStart, imageEnd, imageCharacter,
    imageRef1..4) with live refs for the image files they name, and print it, same shape, same
    key order, every other value as written.

    PAYLOAD is one JSON object (printed filled, or nothing when it fails), or JSON Lines: one
    payload a line, each filled or failed on its own, and one line out per line in, so output
    line N answers input line N. A failed payload, and a blank input line, give an empty line:
    skip empty lines before sending one on. Errors go to stderr, naming the line and the
    field, and the exit code is the worst failure's.

    A relative image path is looked for in the current folder and in the payload file's folder
    (only the current folder for stdin); when both hold a file by that name and they differ,
    the field fails rather than guess: write the path from one of them, or pass --base DIR to
    look in DIR only. ~ and file:// URLs work.
    """
    # stdin re-wrapped for surrogateescape may lack a name (click's test runner's does)
    folders = _folders(getattr(payload, "name", "-"), base)
    slots, in_lines = _payloads(payload.read())
    read = [slot for slot in slots if slot is not None]
    located = [_located(parsed, folders) for _, parsed in read]
    # --email contradicting a payload's own email is a usage error; ASSETCACHE_EMAIL is only a
    # default, which a payload's email overrides.
    explicit = ctx.get_parameter_source("email") is click.core.ParameterSource.COMMANDLINE
    options: dict[str, Any] = {"base_dir": folders[0], "min_remaining": min_remaining, "jobs": jobs}
    app = app_of(ctx)
    # Written once every payload is done: the bar counts the images resolved meanwhile.
    with progress("resolving", None, quiet=app.quiet, unit="image") as bar:
        payloads = [p for p, _ in located]
        outcomes = _fill_each(app.counted(bar.advance), payloads, email, explicit, options)
    answers = [
        (label, _with_refused(outcome, refused))
        for (label, _), (_, refused), outcome in zip(read, located, outcomes, strict=True)
    ]
    with writing(output) as out:
        worst = _write_in_step(out, slots, answers, in_lines)
    ctx.exit(worst)


def _write_in_step(
    out: IO[str], slots: list[Any], answers: list[tuple[str, Any]], in_lines: bool
) -> int:
    """One line out per input line (JSON Lines): the filled payload, or an empty line for a
    blank line or a failed payload, whose errors go to stderr. The worst exit code."""
    from ... import _json_text

    pending = iter(answers)
    worst = EXIT_OK
    for slot in slots:
        if slot is None:  # a blank line in, a blank line out: lines stay in step
            out.write("\n")
            continue
        label, outcome = next(pending)
        if isinstance(outcome, dict):
            out.write(_json_text.dumps(outcome) + "\n")
            continue
        if in_lines:  # an empty line, never the payload: a failed one must not look filled
            out.write("\n")
        worst = max(worst, _fill_failure(label, outcome))
    return worst


def _folders(name: str, base: str | None) -> list[str]:
    """Where relative image paths are looked for: --base alone, else the current folder and,
    for a payload file elsewhere, its folder."""
    if base is not None:
        return [os.path.abspath(base)]
    here = os.getcwd()
    if name in ("-", "<stdin>"):
        return [here]
    beside = os.path.dirname(os.path.abspath(name))
    return [here] if os.path.realpath(beside) == os.path.realpath(here) else [here, beside]


def _located(payload: Any, folders: list[str]) -> tuple[Any, dict[str, AssetCacheError]]:
    """With two folders to look in: the payload with each relative path made absolute where
    one file answers it, and the fields refused here (two different files, or none and no
    assetRef either). Fields left as they are go to the library, which judges them."""
    if len(folders) == 1 or not isinstance(payload, dict):
        return payload, {}
    located, refused = dict(payload), dict[str, AssetCacheError]()
    for field, value in payload.items():
        if field not in _fill.REF_FIELDS or not _fill.is_relative_path(value):
            continue
        found = _distinct_files([os.path.join(folder, value) for folder in folders])
        if len(found) == 1:
            located[field] = found[0]
        elif found:
            refused[field] = InvalidImageError(
                f"{value!r} names two different files, {found[0]} and {found[1]}: write the "
                "path from one of those folders, or choose it with --base DIR"
            )
        elif not _fill.shaped_like_a_ref(value):
            refused[field] = _fill.no_such_file(value, folders)
    for field in refused:
        del located[field]
    return located, refused


def _distinct_files(paths: list[str]) -> list[str]:
    """The paths that are existing files, one per file (a folder reached twice counts once)."""
    found: list[str] = []
    for path in filter(os.path.isfile, paths):
        if not any(os.path.samefile(path, seen) for seen in found):
            found.append(path)
    return found


def _with_refused(outcome: Any, refused: dict[str, AssetCacheError]) -> Any:
    """A payload's outcome with the fields refused before filling: a FillError naming those
    and the library's own failures, field by field in the fields' order. A payload refused as
    a whole (a ValueError: its account, its shape) stays so."""
    if not refused or not isinstance(outcome, dict | FillError):
        return outcome
    failures = {**refused, **(outcome.failures if isinstance(outcome, FillError) else {})}
    return FillError({name: failures[name] for name in _fill.REF_FIELDS if name in failures})


def _fill_each(
    cache: AssetCache,
    payloads: list[Any],
    email: str | None,
    explicit: bool,
    options: dict[str, Any],
) -> list[Any]:
    """Each payload filled, or its error; a ValueError among ``payloads`` is one refused while
    reading, and stays its outcome. An ``explicit`` email applies to every payload; a default
    one only to payloads without an email of their own (``_fill.own_email``: null is none)."""
    outcomes: list[Any] = list(payloads)
    ready = [i for i, p in enumerate(payloads) if not isinstance(p, ValueError)]
    own = [] if explicit else [i for i in ready if _fill.own_email(payloads[i]) is not None]
    rest = [i for i in ready if i not in set(own)]
    for indexes, account in ((own, None), (rest, email)):
        if indexes:
            done = cache.fill_many([payloads[i] for i in indexes], email=account, **options)
            for i, outcome in zip(indexes, done, strict=True):
                outcomes[i] = outcome
    return outcomes


def _payloads(text: str) -> tuple[list[tuple[str, Any] | None], bool]:
    """One JSON object, or JSON Lines (then True): for each line, how errors name it and its
    payload, or None for a blank line (one JSON object over many lines is one payload).

    Text that is not JSON stops everything before any upload (exit 2). A payload that parses
    but holds a lone surrogate (an unpaired \\ud800-\\udfff escape, or a byte that is not
    UTF-8: the input is read with ``surrogateescape``) becomes a ValueError of its own: no UTF-8
    output can carry it, so it fails alone, before anything is uploaded for it.
    """
    from ... import _json_text

    try:
        whole = _json_text.loads(text)
    except (ValueError, RecursionError):
        whole = None
    if isinstance(whole, dict):
        return [("the payload", _readable(whole))], False
    # "\n" only: str.splitlines also splits at U+2028, U+0085..., which JSON strings may hold.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no line of its own
    slots: list[tuple[str, Any] | None] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            slots.append(None)
            continue
        try:
            parsed = _json_text.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested past the parser
            raise InputError(f"line {number} of the payload is not JSON") from None
        slots.append((f"line {number}", _readable(parsed)))
    if all(slot is None for slot in slots):
        raise InputError("no payload given (the input was empty)")
    return slots, True


def _readable(payload: Any) -> Any:
    """The payload, or the ValueError that refuses it: a lone surrogate, which is not text."""
    from ... import _json_text

    where = _json_text.lone_surrogate(payload)
    if where is None:
        return payload
    return ValueError(
        f"{where}, which is not text: half of a \\ud800-\\udfff surrogate pair, or a byte "
        "that is not UTF-8; write the whole character and fill this payload again"
    )


def _fill_failure(label: str, error: Exception) -> int:
    """Report every failing field of one payload on stderr; its exit code (the worst)."""
    if isinstance(error, FillError):
        for name, cause in error.failures.items():
            click.echo(error_line(f"{label}: {name}: {describe(cause)}"), err=True)
        return exit_code(error)
    click.echo(error_line(f"{label}: {describe(error)}"), err=True)
    return exit_code(error)
