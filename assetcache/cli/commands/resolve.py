"""upload and ref: files to live refs, uploading what is missing."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import click

from ..._asset import RETENTION, Asset
from ..._cache import DEFAULT_JOBS, AssetCache
from ..._durations import readable
from ..._errors import AssetCacheError
from ..app import app_of
from ..errors import describe, error_line
from ..exits import EXIT_OK, exit_code
from ..options import MIN_REMAINING, complete_path, email_option, need_email, read_paths
from ..output import json_text, shown
from ..terminal import SOON, STATUS_COLOURS, above_bar, colour_on, painted, progress


class _OrderedPrinter:
    """Prints results in input order as soon as each one and all before it are done."""

    def __init__(
        self, paths: Sequence[str], render: Callable[[str, Asset | AssetCacheError], None]
    ) -> None:
        self._paths = paths
        self._render = render
        self._done: dict[int, Asset | AssetCacheError] = {}
        self._next = 0
        self._lock = threading.Lock()
        self.progress: Callable[[], None] = lambda: None

    def __call__(self, index: int, outcome: Asset | AssetCacheError) -> None:
        with self._lock:
            self._done[index] = outcome
            self.progress()
            while self._next in self._done:
                self._render(self._paths[self._next], self._done.pop(self._next))
                self._next += 1


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...", shell_complete=complete_path)
@email_option()
@click.option("--force", is_flag=True, help="Upload even when a live ref is cached.")
@click.option(
    "--min-remaining",
    type=MIN_REMAINING,
    help="Re-upload when less than this is left (default 1d).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=DEFAULT_JOBS,
    show_default=True,
    help="Uploads in flight at once.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, per line.")
@click.pass_context
def upload(
    ctx: click.Context,
    files: tuple[str, ...],
    email: str | None,
    force: bool,
    min_remaining: timedelta | None,
    jobs: int,
    as_json: bool,
) -> None:
    """Resolve each FILE to a live assetRef, uploading only when needed.

    FILE may be - to read more paths from stdin, one a line. A failing file does not stop
    the others; the exit code is the highest of the failures' codes.
    """
    app = app_of(ctx)
    email = need_email(email)
    paths = read_paths(files)
    if not paths:
        raise click.UsageError("no files given (stdin was empty)")
    worst = EXIT_OK
    colour = colour_on(sys.stdout)

    with progress("resolving", len(paths), quiet=app.quiet) as bar:

        def render(path: str, outcome: Asset | AssetCacheError) -> None:
            nonlocal worst
            if isinstance(outcome, AssetCacheError):
                code = exit_code(outcome)
                worst = max(worst, code)
                if as_json:  # data, which -q keeps: above the bar, but not through it
                    failure = {"path": path, "error": describe(outcome), "exit_code": code}
                    above_bar(json_text(failure))
                else:
                    bar.echo(error_line(describe(outcome)), err=True)
            elif as_json:
                above_bar(json_text(_json_result(path, outcome)))
            else:
                bar.echo(_result_line(path, outcome, app.now(), colour))

        printer = _OrderedPrinter(paths, render)
        printer.progress = bar.advance
        app.cache().resolve_many(
            paths,
            email=email,
            jobs=jobs,
            force=force,
            min_remaining=min_remaining,
            on_result=printer,
        )
    ctx.exit(worst)


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...", shell_complete=complete_path)
@email_option()
@click.option("--min-remaining", type=MIN_REMAINING, help="Re-upload when less than this is left.")
@click.option(
    "--offline",
    is_flag=True,
    help="Never upload: exit 3 with empty stdout when no live ref is cached.",
)
@click.pass_context
def ref(
    ctx: click.Context,
    files: tuple[str, ...],
    email: str | None,
    min_remaining: timedelta | None,
    offline: bool,
) -> None:
    """Print exactly the assetRef of each FILE, one a line in input order, for
    REF=$(assetcache ref x.png). A FILE that fails leaves its line empty (so lines stay in
    step with the arguments), its error goes to stderr, and the exit code is the worst one."""
    email = need_email(email)
    app = app_of(ctx)
    cache = app.reading_cache() if offline else app.cache()  # a read creates no ledger
    if len(files) == 1:  # errors propagate: one message, its exit code, empty stdout
        asset = _ref_of(cache, files[0], email, min_remaining, offline)
        click.echo(asset.asset_ref)
        return
    if offline:
        outcomes = [_ref_outcome(cache, f, email, min_remaining) for f in files]
    else:
        outcomes = cache.resolve_many(files, email=email, min_remaining=min_remaining)
    worst = EXIT_OK
    for outcome in outcomes:
        if isinstance(outcome, AssetCacheError):
            worst = max(worst, exit_code(outcome))
            click.echo(error_line(describe(outcome)), err=True)
            click.echo("")
        else:
            click.echo(outcome.asset_ref)
    ctx.exit(worst)


def _json_result(path: str, outcome: Asset) -> dict[str, object]:
    return {
        "path": path,
        "sha256": outcome.sha256,
        "email": outcome.email,
        "asset_ref": outcome.asset_ref,
        "reused": outcome.reused,
        "uploaded_at": outcome.uploaded_at.isoformat(),
        "expires_at": outcome.expires_at.isoformat(),
    }


def _result_line(path: str, outcome: Asset, now: datetime, colour: bool) -> str:
    """``REF  uploaded  30d left  PATH``. The time left is taken when the line is printed and
    capped at the retention: "now" read before a batch would make its later uploads show
    more (``30d 1s``) than any upload can have."""
    how = "reused" if outcome.reused else "uploaded"
    remaining = min(outcome.remaining_at(now), RETENTION)
    left = f"{readable(remaining)} left"
    if colour and remaining <= SOON:
        left = painted(left, STATUS_COLOURS["soon"])
    return f"{shown(outcome.asset_ref)}  {how}  {left}  {shown(path)}"


def _ref_of(
    cache: AssetCache, file: str, email: str, min_remaining: timedelta | None, offline: bool
) -> Asset:
    if offline:
        return cache.require(file, email=email, min_remaining=min_remaining)
    return cache.resolve(file, email=email, min_remaining=min_remaining)


def _ref_outcome(
    cache: AssetCache, file: str, email: str, min_remaining: timedelta | None
) -> Asset | AssetCacheError:
    try:
        return cache.require(file, email=email, min_remaining=min_remaining)
    except AssetCacheError as exc:
        return exc
