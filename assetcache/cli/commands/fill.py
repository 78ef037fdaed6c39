"""fill: a Luma request payload's ref fields filled with live refs for the files they name."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import click

from ... import _fill
from ..._cache import DEFAULT_JOBS, AssetCache
from ..._fill import FillError
from ..app import app_of
from ..exits import EXIT_OK, exit_code
from ..options import MIN_REMAINING, email_option
from ..output import shown


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
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="Write the filled JSON here (default stdout).")  # fmt: skip
@click.pass_context
def fill(
    ctx: click.Context,
    payload: Any,
    email: str | None,
    min_remaining: timedelta | None,
    jobs: int,
    output: Any,
) -> None:
    """Fill a Luma request payload's ref fields (imageStart, imageEnd, imageCharacter,
    imageRef1..4) with live refs for the image files they name, and print it, same shape, same
    key order, every other value as written. PAYLOAD is one JSON object or JSON Lines (one
    payload a line, each filled or failed on its own); paths are relative to its folder (to the
    current one for stdin)."""
    from ... import _json_text

    text = payload.read()
    # stdin re-wrapped for surrogateescape may lack a name (click's test runner's does)
    name = getattr(payload, "name", "-")
    base_dir = os.getcwd() if name in ("-", "<stdin>") else os.path.dirname(os.path.abspath(name))
    payloads, labels = _payloads(text)
    # --email contradicting a payload's own email is a usage error; ASSETCACHE_EMAIL is only a
    # default, which a payload's email overrides.
    explicit = ctx.get_parameter_source("email") is click.core.ParameterSource.COMMANDLINE
    options: dict[str, Any] = {"base_dir": base_dir, "min_remaining": min_remaining, "jobs": jobs}
    outcomes = _fill_each(app_of(ctx).cache(), payloads, email, explicit, options)
    worst = EXIT_OK
    for label, outcome in zip(labels, outcomes, strict=True):
        if isinstance(outcome, dict):
            output.write(_json_text.dumps(outcome) + "\n")
            continue
        worst = max(worst, _fill_failure(label, outcome))
    ctx.exit(worst)


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


def _payloads(text: str) -> tuple[list[Any], list[str]]:
    """One JSON object, or JSON Lines: the payloads and how to name each in errors.

    Text that is not JSON stops everything before any upload (a usage error). A payload that
    parses but holds a lone surrogate (an unpaired \\ud800-\\udfff escape, or a byte that
    is not UTF-8: the input is read with ``surrogateescape``) becomes a ValueError of its own:
    no UTF-8 output can carry it, so it fails alone, before anything is uploaded for it.
    """
    from ... import _json_text

    try:
        whole = _json_text.loads(text)
    except (ValueError, RecursionError):
        whole = None
    if isinstance(whole, dict):
        return [_readable(whole)], ["the payload"]
    payloads, labels = [], []
    # "\n" only: str.splitlines also splits at U+2028, U+0085..., which JSON strings may hold.
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                parsed = _json_text.loads(line)
            except (ValueError, RecursionError):  # RecursionError: nested past the parser
                raise click.UsageError(f"line {number} of the payload is not JSON") from None
            payloads.append(_readable(parsed))
            labels.append(f"line {number}")
    if not payloads:
        raise click.UsageError("no payload given (the input was empty)")
    return payloads, labels


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
            click.echo(f"assetcache: error: {label}: {name}: {shown(str(cause))}", err=True)
        return exit_code(error)
    click.echo(f"assetcache: error: {label}: {shown(str(error))}", err=True)
    return exit_code(error)
