"""prune, refresh and forget: the ledger kept useful (dead rows dropped, expiring refs
uploaded again, refs Luma rejected revoked)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import click

from ..._asset import Asset
from ..._cache import RefreshItem
from ..._durations import relative
from ..._errors import AssetCacheError
from ..app import app_of
from ..errors import describe, error_line
from ..exits import EXIT_NOT_CACHED, EXIT_OK, exit_code
from ..options import DURATION, complete_path, email_option
from ..output import emit_json, shown
from ..terminal import note, progress


@click.command()
@click.option("--older-than", type=DURATION, help="Remove by upload age instead of expiry.")
@email_option(required=False)
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be removed.")
@click.pass_context
def prune(
    ctx: click.Context, older_than: timedelta | None, email: str | None, dry_run: bool
) -> None:
    """Remove expired entries (they are dead anyway), or those older than --older-than."""
    app = app_of(ctx)
    removed = app.cache().iter_prune(
        expired=older_than is None, older_than=older_than, email=email, dry_run=dry_run
    )
    now = app.now()
    count = 0
    verb = "would remove" if dry_run else "removed"
    label = "checking" if dry_run else "pruning"
    with progress(label, None, quiet=app.quiet, unit="row") as bar:
        # Streamed: pruning half a million rows stays in bounded memory; printed a chunk at a
        # time, so that the bar is redrawn once per chunk, not once per row.
        for chunk in _chunks(removed):
            count += len(chunk)
            bar.echo("\n".join(_pruned_line(a, now) for a in chunk))
            bar.advance(len(chunk))
    note(f"{verb} {count} entr{'y' if count == 1 else 'ies'}", quiet=app.quiet)


def _pruned_line(asset: Asset, now: datetime) -> str:
    return (
        f"{shown(asset.asset_ref)}  {shown(asset.email)}  uploaded "
        f"{relative(asset.uploaded_at, now)}  {shown(asset.source or '-')}"
    )


def _chunks(rows: Iterator[Asset], seconds: float = 0.1) -> Iterator[list[Asset]]:
    """The rows in lists, each of those that came within ``seconds``."""
    chunk: list[Asset] = []
    started = time.monotonic()
    for row in rows:
        chunk.append(row)
        if time.monotonic() - started >= seconds:
            yield chunk
            chunk, started = [], time.monotonic()
    if chunk:
        yield chunk


# -- refresh ----------------------------------------------------------------------------


@click.command()
@click.option(
    "--expiring-within",
    type=DURATION,
    default="3d",
    show_default=True,
    help="Refresh live refs expiring within this.",
)
@email_option(required=False)
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be re-uploaded.")
@click.pass_context
def refresh(
    ctx: click.Context, expiring_within: timedelta, email: str | None, dry_run: bool
) -> None:
    """Re-upload expiring refs whose source file still exists with the same content."""
    app = app_of(ctx)
    # A dry run uploads nothing: nothing to wait for, and no bar.
    with progress("re-uploading", None, quiet=app.quiet, unit="ref", wanted=not dry_run) as bar:
        cache = app.counted(bar.advance)
        items = cache.refresh(expiring_within=expiring_within, email=email, dry_run=dry_run)
    worst = EXIT_OK
    for item in items:
        if item.error is not None:
            worst = max(worst, exit_code(item.error))
            if app.quiet:  # errors only: the failed re-uploads, said as errors
                click.echo(error_line(_refresh_line(item)), err=True)
        note(_refresh_line(item), quiet=app.quiet)
    done = sum(i.status in ("refreshed", "would-refresh") for i in items)
    verb = "would refresh" if dry_run else "refreshed"
    note(f"{verb} {done}, cannot refresh {len(items) - done}", quiet=app.quiet)
    ctx.exit(worst)


def _refresh_line(item: RefreshItem) -> str:
    where = shown(item.asset.source or f"sha256:{item.asset.sha256[:12]}")
    if item.status == "refreshed" and item.new is not None:
        return f"refreshed  {where}  {shown(item.new.asset_ref)}"
    if item.status == "would-refresh":
        return f"would refresh  {where}"
    if item.status == "failed" and item.error is not None:  # the library's words speak Python
        return f"cannot refresh  {where}: upload failed: {shown(describe(item.error))}"
    return f"cannot refresh  {where}: {shown(item.reason)}"


@click.command()
@click.argument("files", nargs=-1, metavar="FILE...", shell_complete=complete_path)
@click.option("--ref", "refs", multiple=True, metavar="REF", help="A ref to forget (repeatable).")
@email_option()
@click.option("--json", "as_json", is_flag=True, help="The revoked rows, a JSON object a line.")
@click.pass_context
def forget(
    ctx: click.Context,
    files: tuple[str, ...],
    refs: tuple[str, ...],
    email: str | None,
    as_json: bool,
) -> None:
    """Mark the live refs of each FILE's content, and each --ref, revoked: for refs Luma
    rejected before their time. They stay in the ledger as history, are never answered again,
    and the next upload or ref uploads anew. Without --email (or ASSETCACHE_EMAIL), every
    account's refs of that content. Exit 3 when something matched no live ref."""
    if not files and not refs:
        raise click.UsageError("name a FILE or a --ref to forget")
    from pathlib import Path

    cache = app_of(ctx).cache()
    quiet = app_of(ctx).quiet
    worst = EXIT_OK
    targets: list[tuple[str, Path | str]] = [(f, Path(f)) for f in files]
    targets += [(r, r) for r in refs]
    for shown_as, target in targets:  # a Path is always a file; a str, the ref itself
        try:
            revoked = cache.forget(target, email=email)
        except (AssetCacheError, ValueError) as exc:  # ValueError: not a ref at all
            worst = max(worst, exit_code(exc))
            click.echo(error_line(describe(exc)), err=True)
            continue
        if not revoked:
            worst = max(worst, EXIT_NOT_CACHED)
            click.echo(error_line(f"no live ref to forget for {shown_as}"), err=True)
        for asset in revoked:
            if as_json:
                emit_json(asset.to_dict())
            else:
                line = f"forgot {shown(asset.asset_ref)}  {shown(asset.email)}  {shown(shown_as)}"
                note(line, quiet=quiet)
    ctx.exit(worst)
