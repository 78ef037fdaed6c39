"""ls, audit, report and path: what the ledger holds, read without changing it."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import click

from ... import _config
from ..._asset import EXPORT_FIELDS, Asset
from ..._cache import AccountAudit, Advice
from ..._durations import format_duration, relative
from ...ledger import pgurl
from ..app import app_of
from ..options import DURATION, OUTPUT_FILE, email_option, writing
from ..output import emit_json, human_size, short_ref, shown, table
from ..terminal import SOON, STATUS_COLOURS, colour_on, note, painted

_FIELDS = EXPORT_FIELDS


@click.command("ls")
@email_option(required=False)
@click.option("--expiring-within", type=DURATION, help="Only live refs expiring within this.")
@click.option("--expired", is_flag=True, help="Only expired refs.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of objects.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.pass_context
def ls_command(
    ctx: click.Context,
    email: str | None,
    expiring_within: timedelta | None,
    expired: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List the ledger, sorted by expiry."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    if expired and expiring_within is not None:
        raise click.UsageError("--expired and --expiring-within are exclusive")
    app = app_of(ctx)
    assets = app.cache().assets(
        email=email, expiring_within=expiring_within, expired=True if expired else None
    )
    now = app.now()
    if as_json:
        emit_json([_row(a, now) for a in assets], indent=2)
    elif as_csv:
        import csv
        import io

        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=(*_FIELDS, "status"), lineterminator="\n")
        writer.writeheader()
        writer.writerows(_row(a, now) for a in assets)
        click.echo(out.getvalue(), nl=False)
    elif not assets:
        note("no entries", quiet=app.quiet, err=True)
    else:
        rows = [("REF", "EMAIL", "SIZE", "TYPE", "UPLOADED", "EXPIRES", "STATUS", "SOURCE")]
        rows += [
            (
                shown(short_ref(a.asset_ref)),
                shown(a.email),
                human_size(a.size),
                shown(a.content_type.removeprefix("image/")),
                relative(a.uploaded_at, now),
                relative(a.expires_at, now),
                _STATUS_SHOWN[a.state(now)],
                shown(a.source or "-"),
            )
            for a in assets
        ]
        colours = [{}, *(_colours(a, now) for a in assets)] if colour_on(sys.stdout) else None
        # one write: tens of thousands of rows is common
        click.echo("\n".join(table(rows, colours)))


#: ls's STATUS column; "future" rows were recorded while the clock ran ahead (never answers).
_STATUS_SHOWN = {
    "live": "live",
    "expired": "expired",
    "revoked": "revoked",
    "future": "FUTURE(clock)",
}


#: ls's columns that colour shows: EXPIRES and STATUS.
_EXPIRES, _STATUS = 5, 6


def _colours(asset: Asset, now: datetime) -> dict[int, str]:
    """The colour of a row's cells (on a terminal): its status, or its expiry when it is live
    and expires within 24 h."""
    state = asset.state(now)
    if state == "live":
        if asset.remaining_at(now) > SOON:
            return {}
        soon = STATUS_COLOURS["soon"]
        return {_EXPIRES: soon, _STATUS: soon}
    return {_STATUS: STATUS_COLOURS[state]}


def _row(asset: Asset, now: datetime) -> dict[str, Any]:
    data = asset.to_dict()
    row = {k: data[k] for k in _FIELDS}
    row["status"] = asset.state(now)
    return row


# -- audit ------------------------------------------------------------------------------


@click.command()
@email_option(required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_context
def audit(ctx: click.Context, email: str | None, as_json: bool) -> None:
    """Per account: live refs, expiring within 24 h and 7 d, expired, and refreshable."""
    report = app_of(ctx).cache().audit(email=email)
    advice = _overall_advice(report)
    if as_json:
        accounts = [
            {
                "email": r.email,
                "live": r.live,
                "expiring_24h": r.expiring_24h,
                "expiring_7d": r.expiring_7d,
                "expired": r.expired,
                "future": r.future,
                "revoked": r.revoked,
                "refreshable": r.refreshable,
                "uploads": r.uploads,
                "next": _advice_text(r.advice),
            }
            for r in report
        ]
        emit_json({"accounts": accounts, "next": advice})
        return
    if not report:
        click.echo("the ledger is empty: nothing uploaded yet")
        return
    colour = colour_on(sys.stdout)

    def counted(count: int, words: str, status: str) -> str:
        """``3 expired``, in the status's colour on a terminal when there are any."""
        text = f"{count} {words}"
        return painted(text, STATUS_COLOURS[status]) if colour and count else text

    for r in report:
        future = ""
        if r.future:
            future += ", " + counted(r.future, "recorded in the future (clock ran ahead)", "future")
        if r.revoked:
            future += ", " + counted(r.revoked, "revoked", "revoked")
        click.echo(
            f"{shown(r.email)}: {r.live} live "
            f"({counted(r.expiring_24h, 'expiring within 24h', 'soon')}, "
            f"{r.expiring_7d} within 7d), {counted(r.expired, 'expired', 'expired')}{future}, "
            f"{r.refreshable} refreshable, {r.uploads} upload(s) recorded"
        )
    click.echo(f"next: {advice}")


def _advice_text(advice: Advice) -> str:
    """One account's advice as the command to run (the library gives it as data)."""
    if advice.action == "refresh":
        window = format_duration(advice.expiring_within or timedelta(days=7), parts=1)
        return (
            f"assetcache refresh --expiring-within {window} --email {shown(advice.email)}"
            f"  # re-uploads {advice.count} expiring ref(s)"
        )
    if advice.action == "upload-again":
        return "expiring refs have no unchanged source file: upload those files again"
    if advice.action == "prune":
        return (
            f"assetcache prune --email {shown(advice.email)}"
            f"  # drops {advice.count} expired, revoked or untrusted ref(s)"
        )
    return "nothing to do"


def _overall_advice(report: Sequence[AccountAudit]) -> str:
    actions = {r.advice.action for r in report}
    if "refresh" in actions:
        return "assetcache refresh --expiring-within 7d"
    if "upload-again" in actions:
        return "expiring refs have no unchanged source file: upload those files again"
    if "prune" in actions:
        return "assetcache prune  # drop expired, revoked and untrusted refs"
    return "nothing to do: every ref has more than 7 days left"


@click.command()
@email_option(required=False)
@click.option(
    "--output", "-o", required=True, type=OUTPUT_FILE, metavar="FILE.html",
    help="Where to write the page (- for stdout).",
)  # fmt: skip
@click.pass_context
def report(ctx: click.Context, email: str | None, output: str) -> None:
    """Write one self-contained HTML page: a summary per account, expiries per day, and every
    ref with its thumbnail, time left, source, a copy button, account and size, to search by
    file name or ref and filter by account and urgency."""
    page = app_of(ctx).cache().report(email=email)
    with writing(output) as out:
        out.write(page)
    if output != "-":  # on stdout the page is the whole output
        note(f"wrote {shown(output)}", quiet=app_of(ctx).quiet)


@click.command()
@click.pass_context
def path(ctx: click.Context) -> None:
    """Print where the ledger is, and its size."""
    from ...ledger import POSTGRES_SCHEMES, scheme_of, shown_location

    configured = _config.resolve_db(app_of(ctx).db)
    location = shown_location(configured)  # a URL's password is masked
    if scheme_of(configured) in POSTGRES_SCHEMES:
        # The target libpq connects to, built from the URL's parts; and what to do when a
        # password with a raw "@" or "/" made libpq read part of it as the host.
        click.echo(f"{shown(location)}  (shared PostgreSQL ledger{pgurl.hint(configured)})")
        return
    if not os.path.exists(location):
        click.echo(f"{shown(location)}  (not created yet)")
        return
    size = sum(os.path.getsize(p) for p in (location, location + "-wal") if os.path.exists(p))
    click.echo(f"{shown(location)}  ({human_size(size)})")
