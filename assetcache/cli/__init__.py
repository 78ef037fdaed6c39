"""The command line: a thin click skin over AssetCache.

Each command is one library call plus formatting. Errors become messages and exit codes in one
place (``_Group.invoke``); nothing below it prints a traceback unless ``-v`` asked for it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import click

from .. import __version__, _config, _fill, _pgurl
from .._asset import EXPORT_FIELDS, RETENTION, Asset
from .._cache import DEFAULT_JOBS, AccountAudit, Advice, AssetCache, RefreshItem
from .._durations import format_duration, parse_duration, relative
from .._errors import (
    AccountError,
    AssetCacheError,
    ImportRowError,
    InvalidEmailError,
    InvalidImageError,
    LedgerError,
    NotCachedError,
    RemoteError,
    merged_before,
)
from .._fill import FillError
from .._retry import RetryPolicy

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_NOT_CACHED = 3
EXIT_INVALID_INPUT = 4
EXIT_ACCOUNT = 5
EXIT_REMOTE = 6

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  unexpected error (rerun with -v for the traceback), or an unusable ledger
  2  usage error (bad option, missing or malformed --email)
  3  no live ref cached (ref --offline)
  4  invalid input file: missing, unreadable, empty, unsupported type, too large
  5  account or credentials: no USEAPI_TOKEN, 401, 404, 596
  6  remote failure after retries: 429, 5xx, network, malformed answer
"""

log = logging.getLogger("assetcache")


def exit_code(exc: BaseException) -> int:
    """The documented exit code for an error (a FillError: its worst field's)."""
    if isinstance(exc, FillError):
        return max((exit_code(e) for e in exc.failures.values()), default=EXIT_UNEXPECTED)
    if isinstance(exc, NotCachedError):
        return EXIT_NOT_CACHED
    if isinstance(exc, InvalidImageError):
        return EXIT_INVALID_INPUT
    if isinstance(exc, AccountError):
        return EXIT_ACCOUNT
    if isinstance(exc, RemoteError):
        return EXIT_REMOTE
    if isinstance(exc, InvalidEmailError | ValueError):
        return EXIT_USAGE
    return EXIT_UNEXPECTED


# -- plumbing ---------------------------------------------------------------------------

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
_ESCAPES: dict[int, str] = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNSHOWABLE
}
_ESCAPES.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})


def shown(text: str) -> str:
    """Text for a human's terminal: control characters escaped, so a hostile file name or
    server answer can neither move the cursor, recolour the screen nor forge a line."""
    if text.isascii() and text.isprintable():  # nothing to escape (both checks run in C):
        return text  # the common case, four times per row of a 50,000-row ls
    return text.translate(_ESCAPES)



@dataclass
class _App:
    """Per-invocation state; tests pass ``obj={"clock": ..., "transport": ..., "retry": ...}``."""

    db: str | None
    verbose: int
    clock: Callable[[], datetime] | None = None
    transport: Any = None
    retry: RetryPolicy | None = None
    _cache: AssetCache | None = field(default=None, repr=False)

    def cache(self) -> AssetCache:
        if self._cache is None:
            self._cache = AssetCache(
                db=self.db, transport=self.transport, clock=self.clock, retry=self.retry
            )
        return self._cache

    def now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(UTC)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()


class _Redact(logging.Filter):
    """Defence in depth: even if the token, or a piece of the ledger URL's password, reached a
    log record (psycopg's debug lines name the host it tries, which holds the rest of a
    password with a raw "@"), it would be printed masked."""

    def __init__(self, db: str | None) -> None:
        super().__init__()
        location = _config.resolve_db(db)
        self._secrets = _pgurl.Secrets(location) if _pgurl.is_postgres(location) else None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        token = os.environ.get(_config.ENV_TOKEN)
        if token:
            masked = masked.replace(token, "***")
        if self._secrets is not None:
            masked = self._secrets.mask(masked)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _setup_logging(verbose: int, db: str | None) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_Redact(db))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    logging.getLogger("assetcache").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


class _Group(click.Group):
    """Turns every error into one line on stderr and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`assetcache ref f | head -0`): click's main ends quietly with
            # exit 1, as the console script's fast path does (_entry._print). Not "unexpected".
            raise
        except KeyboardInterrupt:
            click.echo("assetcache: interrupted", err=True)
            ctx.exit(130)
        except AssetCacheError as exc:
            click.echo(f"assetcache: error: {shown(str(exc))}", err=True)
            if isinstance(exc, LedgerError):  # the library names the path, not the option
                hint = f"assetcache: the ledger is chosen by --db or {_config.ENV_DB}"
                click.echo(hint, err=True)
            ctx.exit(exit_code(exc))
        except Exception as exc:
            app = ctx.find_object(_App)
            if app is not None and app.verbose:
                import traceback

                click.echo(traceback.format_exc(), err=True, nl=False)
            click.echo(
                f"assetcache: unexpected error: {type(exc).__name__}: {shown(str(exc))}; "
                "rerun with -v for the traceback",
                err=True,
            )
            ctx.exit(EXIT_UNEXPECTED)


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    name = "duration"

    def __init__(self, below: timedelta | None = None) -> None:
        self.below = below

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            duration = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.below is not None and duration >= self.below:
            self.fail(
                f"{value} is not under {format_duration(self.below)}: uploads live "
                f"{RETENTION.days} days, so no upload could ever have that much left",
                param,
                ctx,
            )
        return duration


DURATION = Duration()
#: --min-remaining: what a fresh upload can satisfy (resolve refuses more, as ValueError).
MIN_REMAINING = Duration(below=RETENTION)


def _email_option(required: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--email: the account for commands that need one (falling back to $ASSETCACHE_EMAIL);
    an optional filter elsewhere, where the variable would narrow ls or prune by surprise."""
    if required:
        return click.option(
            "--email",
            "-e",
            envvar=_config.ENV_EMAIL,
            show_envvar=True,
            help="The Luma account's email at useapi.net.",
        )
    return click.option("--email", "-e", help="Only this account (default: every account).")


def _need_email(email: str | None) -> str:
    if not email:
        raise click.UsageError(f"no account email: pass --email or set {_config.ENV_EMAIL}")
    return email


def _app(ctx: click.Context) -> _App:
    return ctx.ensure_object(_App)


def _emit_json(value: Any, *, indent: int | None = None) -> None:
    import json  # only the --json outputs need it

    click.echo(json.dumps(value, ensure_ascii=False, indent=indent))


def _short_ref(ref: str) -> str:
    return ref if len(ref) <= 20 else f"{ref[:6]}…{ref[-8:]}"


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _table(rows: Sequence[Sequence[str]]) -> Iterator[str]:
    """Left-aligned columns two spaces apart; one format string per table, not per cell."""
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    return (line.format(*row).rstrip() for row in rows)


# -- the group --------------------------------------------------------------------------


@click.group(
    cls=_Group, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--db",
    envvar=_config.ENV_DB,
    show_envvar=True,
    metavar="PATH_OR_URL",
    help="Ledger file or sqlite:/// URL (default: ledger.db in the user data dir).",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr; -vv for debug. Never the token.")
@click.version_option(__version__, prog_name="assetcache")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int) -> None:
    """Cache useapi.net Luma asset uploads by content: upload each image once, reuse its
    assetRef until it is about to expire, and see what is about to expire.

    The API token is read from USEAPI_TOKEN only (never a flag: it would land in shell
    history and in ps).
    """
    options = ctx.obj if isinstance(ctx.obj, dict) else {}
    app = _App(db=db, verbose=verbose, **options)
    ctx.obj = app
    ctx.call_on_close(app.close)
    _setup_logging(verbose, db)


# -- upload -----------------------------------------------------------------------------


def _read_paths(files: Sequence[str]) -> list[str]:
    paths: list[str] = []
    for name in files:
        if name == "-":
            paths.extend(line.rstrip("\r\n") for line in sys.stdin if line.strip())
        else:
            paths.append(name)
    return paths


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


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@_email_option()
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
    app = _app(ctx)
    email = _need_email(email)
    paths = _read_paths(files)
    if not paths:
        raise click.UsageError("no files given (stdin was empty)")
    now = app.now()
    worst = EXIT_OK

    def render(path: str, outcome: Asset | AssetCacheError) -> None:
        nonlocal worst
        if isinstance(outcome, AssetCacheError):
            code = exit_code(outcome)
            worst = max(worst, code)
            if as_json:
                _emit_json({"path": path, "error": str(outcome), "exit_code": code})
            else:
                click.echo(f"assetcache: error: {shown(str(outcome))}", err=True)
            return
        if as_json:
            _emit_json(
                {
                    "path": path,
                    "sha256": outcome.sha256,
                    "email": outcome.email,
                    "asset_ref": outcome.asset_ref,
                    "reused": outcome.reused,
                    "uploaded_at": outcome.uploaded_at.isoformat(),
                    "expires_at": outcome.expires_at.isoformat(),
                }
            )
        else:
            how = "reused" if outcome.reused else "uploaded"
            left = format_duration(outcome.remaining_at(now))
            click.echo(f"{shown(outcome.asset_ref)}  {how}  {left} left  {shown(path)}")

    printer = _OrderedPrinter(paths, render)
    show_bar = len(paths) > 1 and _stderr_is_tty()
    with (
        click.progressbar(length=len(paths), label="resolving", file=sys.stderr)
        if show_bar
        else _nullbar() as bar
    ):
        printer.progress = lambda: bar.update(1)
        app.cache().resolve_many(
            paths,
            email=email,
            jobs=jobs,
            force=force,
            min_remaining=min_remaining,
            on_result=printer,
        )
    ctx.exit(worst)


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _nullbar() -> _NullBar:
    return _NullBar()


# -- ref --------------------------------------------------------------------------------


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@_email_option()
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
    cache = _app(ctx).cache()
    email = _need_email(email)
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
            click.echo(f"assetcache: error: {shown(str(outcome))}", err=True)
            click.echo("")
        else:
            click.echo(outcome.asset_ref)
    ctx.exit(worst)


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


# -- ls ---------------------------------------------------------------------------------

_FIELDS = EXPORT_FIELDS


@cli.command("ls")
@_email_option(required=False)
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
    app = _app(ctx)
    assets = app.cache().assets(
        email=email, expiring_within=expiring_within, expired=True if expired else None
    )
    now = app.now()
    if as_json:
        _emit_json([_row(a, now) for a in assets], indent=2)
    elif as_csv:
        import csv
        import io

        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=(*_FIELDS, "status"), lineterminator="\n")
        writer.writeheader()
        writer.writerows(_row(a, now) for a in assets)
        click.echo(out.getvalue(), nl=False)
    elif not assets:
        click.echo("no entries", err=True)
    else:
        rows = [("REF", "EMAIL", "SIZE", "TYPE", "UPLOADED", "EXPIRES", "STATUS", "SOURCE")]
        rows += [
            (
                shown(_short_ref(a.asset_ref)),
                shown(a.email),
                _human_size(a.size),
                shown(a.content_type.removeprefix("image/")),
                relative(a.uploaded_at, now),
                relative(a.expires_at, now),
                _STATUS_SHOWN[a.state(now)],
                shown(a.source or "-"),
            )
            for a in assets
        ]
        click.echo("\n".join(_table(rows)))  # one write: tens of thousands of rows is common


#: ls's STATUS column; "future" rows were recorded while the clock ran ahead (never answers).
_STATUS_SHOWN = {
    "live": "live",
    "expired": "expired",
    "revoked": "revoked",
    "future": "FUTURE(clock)",
}


def _row(asset: Asset, now: datetime) -> dict[str, Any]:
    data = asset.to_dict()
    row = {k: data[k] for k in _FIELDS}
    row["status"] = asset.state(now)
    return row


# -- audit ------------------------------------------------------------------------------


@cli.command()
@_email_option(required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_context
def audit(ctx: click.Context, email: str | None, as_json: bool) -> None:
    """Per account: live refs, expiring within 24 h and 7 d, expired, and refreshable."""
    report = _app(ctx).cache().audit(email=email)
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
        _emit_json({"accounts": accounts, "next": advice})
        return
    if not report:
        click.echo("the ledger is empty: nothing uploaded yet")
        return
    for r in report:
        future = f", {r.future} recorded in the future (clock ran ahead)" if r.future else ""
        future += f", {r.revoked} revoked" if r.revoked else ""
        click.echo(
            f"{shown(r.email)}: {r.live} live ({r.expiring_24h} expiring within 24h, "
            f"{r.expiring_7d} within 7d), {r.expired} expired{future}, "
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


# -- prune ------------------------------------------------------------------------------


@cli.command()
@click.option("--older-than", type=DURATION, help="Remove by upload age instead of expiry.")
@_email_option(required=False)
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be removed.")
@click.pass_context
def prune(
    ctx: click.Context, older_than: timedelta | None, email: str | None, dry_run: bool
) -> None:
    """Remove expired entries (they are dead anyway), or those older than --older-than."""
    app = _app(ctx)
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


@cli.command()
@click.option(
    "--expiring-within",
    type=DURATION,
    default="3d",
    show_default=True,
    help="Refresh live refs expiring within this.",
)
@_email_option(required=False)
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be re-uploaded.")
@click.pass_context
def refresh(
    ctx: click.Context, expiring_within: timedelta, email: str | None, dry_run: bool
) -> None:
    """Re-upload expiring refs whose source file still exists with the same content."""
    items = _app(ctx).cache().refresh(expiring_within=expiring_within, email=email, dry_run=dry_run)
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
    return f"cannot refresh  {where}: {shown(item.reason)}"


# -- fill -------------------------------------------------------------------------------


@cli.command()
@click.argument(
    "payload",
    type=click.File("r", encoding="utf-8", errors="surrogateescape"),
    default="-",
    metavar="[PAYLOAD|-]",
)
@_email_option()
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
    from .. import _json_text

    text = payload.read()
    # stdin re-wrapped for surrogateescape may lack a name (click's test runner's does)
    name = getattr(payload, "name", "-")
    base_dir = os.getcwd() if name in ("-", "<stdin>") else os.path.dirname(os.path.abspath(name))
    payloads, labels = _payloads(text)
    # --email contradicting a payload's own email is a usage error; ASSETCACHE_EMAIL is only a
    # default, which a payload's email overrides.
    explicit = ctx.get_parameter_source("email") is click.core.ParameterSource.COMMANDLINE
    options: dict[str, Any] = {"base_dir": base_dir, "min_remaining": min_remaining, "jobs": jobs}
    outcomes = _fill_each(_app(ctx).cache(), payloads, email, explicit, options)
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
    from .. import _json_text

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
    from .. import _json_text

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


# -- report -----------------------------------------------------------------------------


@cli.command()
@_email_option(required=False)
@click.option(
    "--output", "-o", required=True, type=click.Path(dir_okay=False), metavar="FILE.html",
    help="Where to write the page.",
)  # fmt: skip
@click.pass_context
def report(ctx: click.Context, email: str | None, output: str) -> None:
    """Write one self-contained HTML page: expiries per day, and a card per live ref with its
    thumbnail, the ref and a copy button, account, size, type, time left and source."""
    page = _app(ctx).cache().report(email=email)
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)
    click.echo(f"wrote {shown(output)}")


# -- forget -----------------------------------------------------------------------------


@cli.command()
@click.argument("files", nargs=-1, metavar="FILE...")
@click.option("--ref", "refs", multiple=True, metavar="REF", help="A ref to forget (repeatable).")
@_email_option()
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

    cache = _app(ctx).cache()
    worst = EXIT_OK
    targets: list[tuple[str, Path | str]] = [(f, Path(f)) for f in files]
    targets += [(r, r) for r in refs]
    for shown_as, target in targets:  # a Path is always a file; a str, the ref itself
        try:
            revoked = cache.forget(target, email=email)
        except (AssetCacheError, ValueError) as exc:  # ValueError: not a ref at all
            worst = max(worst, exit_code(exc))
            click.echo(f"assetcache: error: {shown(str(exc))}", err=True)
            continue
        if not revoked:
            worst = max(worst, EXIT_NOT_CACHED)
            click.echo(f"assetcache: no live ref to forget for {shown(shown_as)}", err=True)
        for asset in revoked:
            if as_json:
                _emit_json(asset.to_dict())
            else:
                line = f"forgot {shown(asset.asset_ref)}  {shown(asset.email)}  {shown(shown_as)}"
                click.echo(line)
    ctx.exit(worst)


# -- export & import --------------------------------------------------------------------


@cli.command()
@_email_option(required=False)
@click.option("--live", is_flag=True, help="Only refs still live.")
@click.pass_context
def export(ctx: click.Context, email: str | None, live: bool) -> None:
    """Write every upload row as JSON Lines to stdout (one object a line, every column but
    the local row id), to move a ledger with import."""
    import json

    encoder = json.JSONEncoder(ensure_ascii=False)
    for row in _app(ctx).cache().export(email=email, live=live):  # streamed: any size
        click.echo(encoder.encode(row))


@cli.command("import")
@click.argument("file", type=click.File("rb"), default="-", metavar="[FILE|-]")
@click.pass_context
def import_command(ctx: click.Context, file: Any) -> None:
    """Merge rows written by export (from FILE, or stdin) into this ledger. The same rows
    twice add nothing; a line that is not a valid upload stops the import (exit 2), after the
    rows before it are merged."""
    rows = _JsonLines(file)
    try:
        report = _app(ctx).cache().import_rows(rows)
    except ImportRowError as exc:  # a row that is not an upload: the input is wrong
        # import_rows reads no row past the one it refuses, so that row is the line last read.
        message = f"line {rows.line} cannot be imported: {exc.problem}; {merged_before(exc.row)}"
        raise click.UsageError(message) from None
    if rows.unreadable is not None:
        raise click.UsageError(f"{rows.unreadable}; {merged_before(rows.count + 1)}")
    click.echo(
        f"added {report.added}, revoked {report.revoked}, skipped {report.skipped} already present"
    )


class _JsonLines:
    """An import's input as rows: one JSON value a line, blank lines skipped. At a line that is
    not UTF-8 JSON it stops, saying so in ``unreadable``, so that the rows before it are still
    merged. ``line`` is the line of the row last read; ``count`` how many rows were read."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.line = 0
        self.count = 0
        self.unreadable: str | None = None

    def __iter__(self) -> Iterator[object]:
        import json

        for number, raw in enumerate(self._file, 1):
            self.line = number
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.unreadable = f"line {self.line} of the input is not UTF-8 text"
                return
            except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
                self.unreadable = f"line {self.line} of the input is not JSON"
                return
            self.count += 1
            yield row


# -- path -------------------------------------------------------------------------------


@cli.command()
@click.pass_context
def path(ctx: click.Context) -> None:
    """Print where the ledger is, and its size."""
    from .._engine import POSTGRES_SCHEMES, scheme_of, shown_location

    configured = _config.resolve_db(_app(ctx).db)
    location = shown_location(configured)  # a URL's password is masked
    if scheme_of(configured) in POSTGRES_SCHEMES:
        # The target libpq connects to, built from the URL's parts; and what to do when a
        # password with a raw "@" or "/" made libpq read part of it as the host.
        click.echo(f"{shown(location)}  (shared PostgreSQL ledger{_pgurl.hint(configured)})")
        return
    if not os.path.exists(location):
        click.echo(f"{shown(location)}  (not created yet)")
        return
    size = sum(os.path.getsize(p) for p in (location, location + "-wal") if os.path.exists(p))
    click.echo(f"{shown(location)}  ({_human_size(size)})")


# -- emulator & demo ---------------------------------------------------------------------


@cli.command()
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

    from ..emulator import Emulator

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


@cli.command()
@click.option(
    "--report", "report_path", default="assetcache-demo-report.html", show_default=True,
    type=click.Path(dir_okay=False), help="Where the demo's HTML report is written.",
)  # fmt: skip
@click.pass_context
def demo(ctx: click.Context, report_path: str) -> None:
    """Run the whole job offline: emulator, temporary ledger, uploads, reuse, ls, audit, and
    an HTML report."""
    import tempfile
    from pathlib import Path

    from .._demo import SAMPLES, sample_png
    from ..emulator import Emulator

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
        app = _App(db=str(Path(tmp, "ledger.db")), verbose=_app(ctx).verbose)
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
                    click.echo(f"  {_short_ref(outcome.asset_ref)}  {how}  {Path(path).name}")
                click.echo(f"  -> {emu.request_count - before} request(s) sent\n")
            click.echo("$ assetcache ls")
            _show(ctx, app, ls_command)
            click.echo("\n$ assetcache audit")
            _show(ctx, app, audit)
            click.echo(f"\n$ assetcache report -o {shown(report_path)}")
            with open(report_path, "w", encoding="utf-8") as f:
                f.write(app.cache().report())
            click.echo(f"wrote {shown(report_path)} (its thumbnails came from the emulator)")
        finally:
            app.close()
    click.echo("\ndone: nothing was sent outside this machine, and the ledger is gone.")


def _show(ctx: click.Context, app: _App, command: click.Command) -> None:
    """Run another command, with its defaults, against the demo's own app state."""
    with click.Context(cli, parent=ctx, obj=app) as host:
        host.invoke(command)


def main() -> NoReturn:
    """Console-script entry point."""
    cli.main(prog_name="assetcache")
    raise SystemExit(0)  # pragma: no cover - click.main exits itself
