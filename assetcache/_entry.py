"""The console-script entry point, with a fast path for the commonest call of all.

Scripts run ``REF=$(assetcache ref frame.png)`` once per file, so a cache hit must cost little
more than starting Python. Importing click alone costs more than the whole hit (startup, a
stat, two indexed reads), so a plain ``ref`` that hits is answered here, before click is
imported. The fast path accepts a strict subset of the command line and answers only a hit;
anything else (a miss, an error, an option it does not know, ``--help``, ``-v``) goes to the
full click CLI, which then does the same work and reports it the usual way. tests/test_entry.py
checks that both paths print the same thing.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta


_VALUED = ("--email", "--min-remaining")


def _parse_ref(
    argv: Sequence[str],
) -> tuple[str | None, list[str], str, timedelta | None, bool] | None:
    """(db, files, email, min_remaining, offline) for a plain ``ref`` command, else None."""
    from ._config import ENV_DB, ENV_EMAIL

    args = list(argv)
    db = None
    while args and args[0] != "ref":
        option, eq, value = args.pop(0).partition("=")
        if option != "--db":
            return None
        db = value if eq else (args.pop(0) if args else None)
        if not db:  # missing, or empty as in --db= : click says what is wrong
            return None
    if not args:
        return None
    args.pop(0)  # "ref"
    files: list[str] = []
    email = None
    min_remaining = None
    offline = False
    while args:
        arg = args.pop(0)
        name, eq, inline = arg.partition("=")
        takes_value = arg == "-e" or (arg.startswith("--") and name in _VALUED)
        if takes_value:
            if not (eq and arg != "-e"):
                if not args:
                    return None
                inline = args.pop(0)
            value = inline
            if name == "--min-remaining":
                from ._durations import parse_duration

                try:
                    min_remaining = parse_duration(value)
                except ValueError:
                    return None
            else:
                email = value
        elif arg == "--offline":
            offline = True
        elif arg.startswith("-"):
            return None  # an option we do not handle here: click decides
        else:
            files.append(arg)
    if email is None:  # as click does: the variable only when the option is absent
        email = os.environ.get(ENV_EMAIL)
    if not files or not email:
        return None
    return db or os.environ.get(ENV_DB) or None, files, email, min_remaining, offline


def fast_ref(argv: Sequence[str]) -> int | None:
    """Print the refs and return 0 when every file hits; None means "let the full CLI answer"
    (which then looks again, uploads what is missing and reports errors)."""
    if sys.stdout is None:  # started with stdout closed: what that means is click's to say
        return None
    parsed = _parse_ref(argv)
    if parsed is None:
        return None
    db, files, email, min_remaining, offline = parsed
    from datetime import timedelta

    from ._rules import DEFAULT_MIN_REMAINING

    if min_remaining is None:  # the same margins as the click CLI's `ref` and `ref --offline`
        min_remaining = timedelta(0) if offline else DEFAULT_MIN_REMAINING
    try:
        if offline and _absent(db):  # a read creates no ledger: the full CLI says it is missing
            return None
        refs = _ledger_refs(db, files, email, min_remaining)
        if refs is None:  # a file to hash, or another engine: the caches' own lookup decides
            refs = _cache_refs(db, files, email, min_remaining)
    except Exception:  # any failure, expected or not, is the full CLI's to report
        # (a row another program wrote can fail to decode with OverflowError, an unusable HOME
        # makes platformdirs raise RuntimeError): it does the same work again and says what
        # is wrong in one line with a documented exit code, never a traceback.
        return None
    if refs is None:
        return None
    text = "".join(ref + "\n" for ref in refs)
    if not text.isascii():  # an account email with accents: how it is encoded is click's call
        return None  # (click.echo writes UTF-8 where stdout claims ASCII, print would fail)
    return _print(text)


def _print(text: str) -> int:
    """Print ASCII text as ``click.echo`` would; a reader that went away (``| head -0``) ends
    the command as click's own main ends it: exit 1, and nothing more on stdout or stderr."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return 1
    return 0


def _silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null: the interpreter's last flush of what is still
    buffered would fail again and print "Exception ignored" (click pacifies it the same way)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's StringIO): nothing
        return


def _absent(db: str | None) -> bool:
    """Whether the SQLite ledger ``db`` names does not exist (``ledger.absent_ledger``)."""
    from . import _config
    from .ledger import absent_ledger

    return absent_ledger(_config.resolve_db(db)) is not None


def _ledger_refs(
    db: str | None, files: list[str], email: str, margin: timedelta
) -> list[str] | None:
    """The refs straight from an SQLite ledger (or a shared ledger's mirror, for rows this
    machine read recently) whose stat cache knows every file (the common case, and the
    cheapest: no ``Asset`` is built, and little is imported); else None."""
    from . import _config, _hit, _rules
    from ._email import normalize_email
    from .ledger import POSTGRES_SCHEMES, scheme_of
    from .ledger.sqlite_file import LedgerFile, machine_file

    location = _config.resolve_db(db)
    scheme = scheme_of(location)
    mirror = scheme in POSTGRES_SCHEMES
    if mirror:  # a shared ledger: this machine's mirror of it, if it has one yet
        location = machine_file(location)
        if not os.path.exists(location):
            return None
    elif scheme != "sqlite":
        return None
    email = normalize_email(email)
    margin = _rules.check_min_remaining(margin)
    ledger = LedgerFile(location)
    try:
        refs = []
        for file in files:
            ref = _hit.cached_ref(ledger, file, email, margin, _hit.utcnow(), mirror=mirror)
            if ref is None:
                return None
            refs.append(ref)
        return refs
    finally:
        ledger.close()


def _cache_refs(
    db: str | None, files: list[str], email: str, margin: timedelta
) -> list[str] | None:
    """The refs ``AssetCache.lookup`` answers (it hashes files the stat cache does not know,
    and speaks to every engine), or None at the first miss."""
    from ._cache import AssetCache

    refs = []
    with AssetCache(db=db) as cache:
        for file in files:
            asset = cache.lookup(file, email=email, min_remaining=margin)
            if asset is None:
                return None
            refs.append(asset.asset_ref)
    return refs


def main() -> None:
    code = fast_ref(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from .cli import main as click_main

    click_main()
