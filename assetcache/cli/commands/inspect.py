"""ls, audit, report and path: what the ledger holds, read without changing it."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from ... import _config
from ..._asset import EXPORT_FIELDS, Asset
from ..._cache import AccountAudit, Advice
from ..._durations import format_duration, relative
from ..._listing import current_per_key, listed_status, selected
from ...ledger import pgurl
from ..app import app_of
from ..options import DURATION, OUTPUT_FILE, email_option, writing
from ..output import emit_json, human_size, short_ref, shown, table
from ..terminal import SOON, STATUS_COLOURS, colour_on, note, painted

if TYPE_CHECKING:
    from ..._listing import ListedStatus

_FIELDS = EXPORT_FIELDS


#: ls --sort: each a key over rows already in expiry order (sorted() keeps ties in that order).
_SORTS = ("expiry", "uploaded", "name", "size")


@click.command("ls")
@email_option(required=False)
@click.option("--expiring-within", type=DURATION, help="Only live refs expiring within this.")
@click.option("--expired", is_flag=True, help="Only expired refs.")
@click.option(
    "--history",
    "--all",
    "history",
    is_flag=True,
    help="Every upload, not only the current row of each file and account; rows a later "
    "upload of the same content replaced are marked superseded.",
)
@click.option(
    "--sort",
    "sort_by",
    type=click.Choice(_SORTS),
    default="expiry",
    show_default=True,
    help="expiry: soonest first; uploaded: latest first; name: by source file name; "
    "size: largest first.",
)
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N rows.")
@click.option("--full", is_flag=True, help="Whole refs in the table (they are shortened).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of objects.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.pass_context
def ls_command(
    ctx: click.Context,
    email: str | None,
    expiring_within: timedelta | None,
    expired: bool,
    history: bool,
    sort_by: str,
    limit: int | None,
    full: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List the ledger: by default the row `ref` decides on for each file and account (live,
    or why nothing answers: expired, revoked, FUTURE(clock)), sorted by expiry."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    if expired and expiring_within is not None:
        raise click.UsageError("--expired and --expiring-within are exclusive")
    app = app_of(ctx)
    cache = app.reading_cache()
    now = app.now()
    if expiring_within is not None:
        # Only live rows expiring soon can be listed: the ledger's index finds those, and each
        # one's key is asked for its current row, rather than every row read into memory.
        current = cache.assets(email=email, expiring_within=expiring_within, current=True)
        listed = cache.assets(email=email, expiring_within=expiring_within) if history else current
    else:
        everything = cache.assets(email=email)  # one read decides both views
        current = current_per_key(everything, now)
        listed = selected(
            everything if history else current,
            now,
            expiring_within=None,
            expired=True if expired else None,
        )
    total = len(listed)
    listed = _sorted(listed, sort_by)[:limit]
    current_ids = {a.id for a in current}
    rows = [_row(a, listed_status(a, now, a.id in current_ids)) for a in listed]
    if as_json:
        emit_json(rows, indent=2)
    elif as_csv:
        _echo_csv(rows)
    elif not listed:
        note("no entries", quiet=app.quiet, err=True)
    else:
        _echo_table(listed, rows, now, full=full)
        if len(listed) < total:
            note(f"{len(listed)} of {total} rows shown (--limit)", quiet=app.quiet, err=True)


def _sorted(assets: list[Asset], sort_by: str) -> list[Asset]:
    if sort_by == "uploaded":
        return sorted(assets, key=lambda a: a.uploaded_at, reverse=True)
    if sort_by == "size":
        return sorted(assets, key=lambda a: a.size, reverse=True)
    if sort_by == "name":  # by file name, then folder; rows resolved from bytes last
        return sorted(assets, key=_name_key)
    return assets  # the ledger lists them by expiry


def _name_key(asset: Asset) -> tuple[bool, str, str]:
    source = asset.source
    return (source is None, os.path.basename(source or ""), source or "")


def _echo_csv(rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=(*_FIELDS, "status"), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    click.echo(out.getvalue(), nl=False)


def _echo_table(
    assets: list[Asset], rows: list[dict[str, Any]], now: datetime, *, full: bool
) -> None:
    ref_of = (lambda ref: ref) if full else short_ref
    lines = [("REF", "EMAIL", "SIZE", "TYPE", "UPLOADED", "EXPIRES", "STATUS", "SOURCE")]
    lines += [
        (
            shown(ref_of(a.asset_ref)),
            shown(a.email),
            human_size(a.size),
            shown(a.content_type.removeprefix("image/")),
            relative(a.uploaded_at, now),
            relative(a.expires_at, now),
            _STATUS_SHOWN[row["status"]],
            shown(a.source or "-"),
        )
        for a, row in zip(assets, rows, strict=True)
    ]
    colours = None
    if colour_on(sys.stdout):
        pairs = zip(assets, rows, strict=True)
        colours = [{}, *(_colours(a, row["status"], now) for a, row in pairs)]
    # one write: tens of thousands of rows is common
    click.echo("\n".join(table(lines, colours)))


#: ls's STATUS column; "future" rows were recorded while the clock ran ahead (never answers).
_STATUS_SHOWN: dict[str, str] = {
    "live": "live",
    "superseded": "superseded",
    "expired": "expired",
    "revoked": "revoked",
    "future": "FUTURE(clock)",
}


#: ls's columns that colour shows: EXPIRES and STATUS.
_EXPIRES, _STATUS = 5, 6


def _colours(asset: Asset, status: ListedStatus, now: datetime) -> dict[int, str]:
    """The colour of a row's cells (on a terminal): its status, or its expiry when it is live
    and expires within 24 h. A superseded row is history, not news: no colour."""
    if status == "superseded":
        return {}
    if status == "live":
        if asset.remaining_at(now) > SOON:
            return {}
        soon = STATUS_COLOURS["soon"]
        return {_EXPIRES: soon, _STATUS: soon}
    return {_STATUS: STATUS_COLOURS[status]}


def _row(asset: Asset, status: ListedStatus) -> dict[str, Any]:
    data = asset.to_dict()
    row = {k: data[k] for k in _FIELDS}
    row["status"] = status
    return row


# -- audit ------------------------------------------------------------------------------


@click.command()
@email_option(required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_context
def audit(ctx: click.Context, email: str | None, as_json: bool) -> None:
    """Per account: live refs, expiring within 24 h and 7 d, expired, and refreshable."""
    report = app_of(ctx).reading_cache().audit(email=email)
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
    page = app_of(ctx).reading_cache().report(email=email)
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
