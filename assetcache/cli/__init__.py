"""The command line: a thin click skin over AssetCache, one module per job.

    __init__.py   the group: global options (--db, -v, --version), and every error turned into
                  one line on stderr and a documented exit code (``_Group``); nothing below it
                  prints a traceback unless ``-v`` asked for it
    commands/     one module per group of commands; each command is one library call plus output
    app.py        one invocation's state, and the cache it opens on first use
    options.py    option types (durations, -o files) and shared options (--email, FILE... with
                  ``-``, completing as file names)
    output.py     what reaches the terminal: escaped text, tables, JSON
    terminal.py   what only a terminal gets (progress bars, colour, the retry notice) and -q
    exits.py      the exit codes, and which error ends a command with which
    errors.py     how an error is worded: one line, ``assetcache: error: …``, in CLI words
    logs.py       ``-v``'s logging to stderr, secrets masked

Imports run one way: this module imports the commands, the commands import the plumbing
modules beside them (never this one), and those import only the library. The console script's
fast path for a ``ref`` that hits (``assetcache/_entry.py``) lives outside this package, so that
a hit neither runs this file nor imports click; everything else it hands to ``main`` here.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from .. import __version__, _config
from .._errors import AssetCacheError
from .app import App
from .commands import fill, inspect, maintain, move, resolve, tools
from .errors import click_error_text, describe, error_line
from .exits import EXIT_CODES_HELP, EXIT_UNEXPECTED, exit_code
from .logs import setup_logging
from .options import complete_path
from .output import shown
from .terminal import retry_notices


class _Group(click.Group):
    """Turns every error into one line on stderr and a documented exit code: click's own
    (usage errors while parsing, in ``make_context`` for the group's options and in ``invoke``
    for a command's), ours, and the unexpected."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            _fail(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.ClickException as exc:
            _fail(exc)
        except BrokenPipeError:
            # The reader went away (`assetcache ref f | head -0`): click's main ends quietly with
            # exit 1, as the console script's fast path does (_entry._print). Not "unexpected".
            raise
        except KeyboardInterrupt:
            click.echo("assetcache: interrupted", err=True)
            ctx.exit(130)
        except AssetCacheError as exc:
            click.echo(error_line(describe(exc)), err=True)
            ctx.exit(exit_code(exc))
        except Exception as exc:
            app = ctx.find_object(App)
            if app is not None and app.verbose:
                import traceback

                click.echo(traceback.format_exc(), err=True, nl=False)
            click.echo(
                f"assetcache: unexpected error: {type(exc).__name__}: {shown(str(exc))}; "
                "rerun with -v for the traceback",
                err=True,
            )
            ctx.exit(EXIT_UNEXPECTED)


@click.group(
    "assetcache",  # as errors and help name it, even where no prog_name is given (CliRunner)
    cls=_Group,
    commands=(
        resolve.upload,
        resolve.ref,
        fill.fill,
        inspect.ls_command,
        inspect.audit,
        inspect.report,
        inspect.path,
        maintain.prune,
        maintain.refresh,
        maintain.forget,
        move.export,
        move.import_command,
        tools.emulator,
        tools.demo,
    ),
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--db",
    envvar=_config.ENV_DB,
    show_envvar=True,
    metavar="PATH_OR_URL",
    shell_complete=complete_path,
    help="The ledger: a file path or a sqlite:////absolute/path URL (SQLite on this machine), "
    "or a postgresql://user:password@host/dbname URL (one ledger shared by machines). Default: "
    "ledger.db in the user data dir (assetcache path prints it).",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr; -vv for debug. Never the token.")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Errors only: no progress bar, retry notice, per-file line or summary (the data a "
    "command prints, such as refs, ls, export or --json, still is).",
)
@click.version_option(__version__, prog_name="assetcache")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int, quiet: bool) -> None:
    """Cache useapi.net Luma asset uploads by content: upload each image once, reuse its
    assetRef until it is about to expire, and see what is about to expire.

    \b
    Environment variables:
      USEAPI_TOKEN         the useapi.net API token, needed only to upload; read
                           from here only (a flag would land in shell history
                           and in ps), never stored or shown
      ASSETCACHE_DB        the ledger, when --db is not given
      ASSETCACHE_EMAIL     the account, when --email is not given (upload, ref,
                           fill, forget)
      ASSETCACHE_BASE_URL  the API's address (default https://api.useapi.net);
                           point it at `assetcache emulator` to work offline

    Durations (DURATION) are a number and a unit, s, m, h, d or w, alone or
    combined: 90s, 45m, 12h, 3d, 2w, 1d12h.

    fill looks for a relative image path in the current folder and in the
    payload file's folder (an error if both hold different files), or only in
    --base DIR; see assetcache fill --help.
    """
    if quiet and verbose:
        raise click.UsageError("-q and -v are exclusive: -q shows errors only, -v adds logs")
    options = ctx.obj if isinstance(ctx.obj, dict) else {}
    app = App(db=db, verbose=verbose, quiet=quiet, **options)
    ctx.obj = app
    ctx.call_on_close(app.close)
    setup_logging(verbose, db)
    ctx.call_on_close(retry_notices(quiet=quiet))


def _fail(exc: click.ClickException) -> NoReturn:
    """End with click's error in our one line and its exit code (2 for usage errors)."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc  # no arguments at all: click shows the help, which is the answer
    click.echo(error_line(click_error_text(exc)), err=True)
    raise click.exceptions.Exit(exc.exit_code)


def main() -> NoReturn:
    """Console-script entry point."""
    cli.main(prog_name="assetcache")
    raise SystemExit(0)  # pragma: no cover - click.main exits itself
