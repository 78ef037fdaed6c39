"""emulator and demo: a local stand-in for the upload endpoint, and the whole job run
offline against it."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from ..._cache import AssetCache
from ..._errors import AssetCacheError
from ..app import App, app_of
from ..options import DURATION
from ..output import short_ref, shown
from .inspect import audit, ls_command


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="Port (0 picks a free one).",
)
@click.option("--token", help="Accepted API token (default: a random one, printed at start).")
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="EMAIL",
    help="Known account (repeatable); without any, every email is accepted.",
)
@click.option(
    "--session-error",
    "session_errors",
    multiple=True,
    metavar="EMAIL",
    help="Account that answers 596, as with an expired Luma session (repeatable).",
)
@click.option(
    "--latency",
    type=click.FloatRange(0),
    default=0.0,
    metavar="MS",
    help="Milliseconds added to every answer.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    metavar="P",
    help="Probability of answering 429 (with Retry-After), 500 or 503.",
)
@click.option(
    "--retention",
    type=DURATION,
    default="30d",
    show_default=True,
    help="How long uploads are kept.",
)
@click.option("--seed", type=int, help="Seed for --fail-rate, for reproducible runs.")
def emulator(
    host: str,
    port: int,
    token: str | None,
    accounts: tuple[str, ...],
    session_errors: tuple[str, ...],
    latency: float,
    fail_rate: float,
    retention: timedelta,
    seed: int | None,
) -> None:
    """Serve a local emulator of the upload endpoint, for offline scripts and tests."""
    import signal

    from ...emulator import Emulator

    # A shell starting us in the background ignores SIGINT; Ctrl-C must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    emu = Emulator(
        host=host,
        port=port,
        token=token,
        accounts=accounts or None,
        session_errors=session_errors,
        latency=latency / 1000,
        fail_rate=fail_rate,
        retention=retention,
        seed=seed,
        log=lambda line: click.echo(line, err=True),
    )
    emu.start()
    click.echo(f"assetcache emulator listening on {emu.base_url}  (Ctrl-C stops it)")
    click.echo(f"export ASSETCACHE_BASE_URL={emu.base_url}")
    if token is None:
        click.echo(f"export USEAPI_TOKEN={emu.token}")
    sys.stdout.flush()
    emu.serve_forever()
    click.echo("stopped", err=True)


@click.command()
@click.option(
    "--report", "report_path", default=None, type=click.Path(dir_okay=False),
    help="Where the demo's HTML report is written  [default: demo/report.html in the user's "
    "cache folder, e.g. ~/.cache/assetcache]",
)  # fmt: skip
@click.pass_context
def demo(ctx: click.Context, report_path: str | None) -> None:
    """Run the whole job offline: emulator, temporary ledger, uploads, reuse, ls, audit, and
    an HTML report."""
    import tempfile
    from pathlib import Path

    from ..._demo import SAMPLES, default_report_path, sample_png, write_report
    from ...emulator import Emulator

    report_path = report_path or default_report_path()
    email = "demo@example.com"
    with (
        tempfile.TemporaryDirectory(prefix="assetcache-demo-") as tmp,
        Emulator(accounts=[email], latency=0.05) as emu,
    ):
        click.echo(f"emulator on {emu.base_url}; temporary ledger in {tmp}\n")
        paths = []
        for name, (w, h, rgb) in SAMPLES.items():
            Path(tmp, name).write_bytes(sample_png(w, h, rgb))
            paths.append(str(Path(tmp, name)))
        app = App(db=str(Path(tmp, "ledger.db")), verbose=app_of(ctx).verbose)
        app._cache = AssetCache(db=app.db, token=emu.token, base_url=emu.base_url)
        try:
            for label in ("first run: uploads", "second run: answered from the ledger"):
                before = emu.request_count
                click.echo(
                    f"$ assetcache upload {' '.join(Path(p).name for p in paths)}  # {label}"
                )
                for path, outcome in zip(
                    paths, app.cache().resolve_many(paths, email=email), strict=True
                ):
                    if isinstance(outcome, AssetCacheError):
                        raise outcome
                    how = "reused" if outcome.reused else "uploaded"
                    click.echo(f"  {short_ref(outcome.asset_ref)}  {how}  {Path(path).name}")
                click.echo(f"  -> {emu.request_count - before} request(s) sent\n")
            click.echo("$ assetcache ls")
            _show(ctx, app, ls_command)
            click.echo("\n$ assetcache audit")
            _show(ctx, app, audit)
            click.echo(f"\n$ assetcache report -o {shown(report_path)}")
            write_report(app.cache().report(), report_path)
            click.echo(f"wrote {shown(report_path)}")
        finally:
            app.close()
    click.echo("\ndone: nothing was sent outside this machine, and the ledger is gone.")
    click.echo(
        f"The report stays: open {shown(report_path)} in a browser (its thumbnails are "
        "embedded, so it needs neither the stopped emulator nor the deleted files)."
    )


def _show(ctx: click.Context, app: App, command: click.Command) -> None:
    """Run another command, with its defaults, against the demo's own app state."""
    with click.Context(ctx.find_root().command, parent=ctx, obj=app) as host:
        host.invoke(command)
