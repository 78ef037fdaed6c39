"""prune, refresh and forget: the ledger kept useful (dead rows dropped, expiring refs
uploaded again, refs Luma rejected revoked)."""

from __future__ import annotations

from datetime import timedelta

import click

from ..._cache import RefreshItem
from ..._durations import relative
from ..._errors import AssetCacheError
from ..app import app_of
from ..errors import describe, error_line
from ..exits import EXIT_NOT_CACHED, EXIT_OK, exit_code
from ..options import DURATION, email_option
from ..output import emit_json, shown


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
    for a in removed:  # streamed: pruning half a million rows stays in bounded memory
        count += 1
        click.echo(
            f"{shown(a.asset_ref)}  {shown(a.email)}  uploaded {relative(a.uploaded_at, now)}"
            f"  {shown(a.source or '-')}"
        )
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {count} entr{'y' if count == 1 else 'ies'}")


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
    items = (
        app_of(ctx).cache().refresh(expiring_within=expiring_within, email=email, dry_run=dry_run)
    )
    worst = EXIT_OK
    for item in items:
        click.echo(_refresh_line(item))
        if item.error is not None:
            worst = max(worst, exit_code(item.error))
    done = sum(i.status in ("refreshed", "would-refresh") for i in items)
    verb = "would refresh" if dry_run else "refreshed"
    click.echo(f"{verb} {done}, cannot refresh {len(items) - done}")
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
@click.argument("files", nargs=-1, metavar="FILE...")
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
                click.echo(line)
    ctx.exit(worst)
