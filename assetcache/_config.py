"""The one place that decides where things live and which settings apply.

Each setting is taken from the explicit argument, else its environment variable, else the
platform default. Nothing here imports the ORM or the HTTP stack: it runs on every cache hit.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

ENV_TOKEN: Final = "USEAPI_TOKEN"  # noqa: S105 - the variable's name, not a token
ENV_DB: Final = "ASSETCACHE_DB"
ENV_BASE_URL: Final = "ASSETCACHE_BASE_URL"
ENV_EMAIL: Final = "ASSETCACHE_EMAIL"

DEFAULT_BASE_URL: Final = "https://api.useapi.net"
APP_NAME: Final = "assetcache"
LEDGER_FILENAME: Final = "ledger.db"


def user_dir() -> str:
    """The per-user data directory, where the default ledger lives."""
    return _platform_dir("XDG_DATA_HOME", ".local/share", "user_data_dir")


def cache_dir() -> str:
    """The per-user cache directory: what is per machine for a shared ledger (its stat cache,
    mirror, spool and lock folder) lives here."""
    return _platform_dir("XDG_CACHE_HOME", ".cache", "user_cache_dir")


def _platform_dir(variable: str, under_home: str, platformdirs_name: str) -> str:
    """platformdirs' answer. Importing platformdirs (pathlib, re, enum, tempfile) costs more
    than a whole cache hit, so on Linux the two plain cases of the XDG rule are spelled out
    here: the variable when it holds an absolute path, else ``under_home`` in an absolute HOME.
    Anything else (a relative value, no HOME, another platform) is platformdirs' to decide;
    tests/test_user_dirs.py checks that both agree."""
    if sys.platform.startswith("linux"):
        value = os.environ.get(variable, "")
        home = os.environ.get("HOME", "")
        if value.startswith("/"):
            return os.path.join(value, APP_NAME)
        if not value and home.startswith("/"):
            return os.path.join(home.rstrip("/") or "/", under_home, APP_NAME)
    import platformdirs

    return str(getattr(platformdirs, platformdirs_name)(APP_NAME, appauthor=False))


def resolve_db(db: str | os.PathLike[str] | None) -> str:
    """A ledger location: the argument, else $ASSETCACHE_DB, else ledger.db in the user dir.

    The result is either a filesystem path or an SQLAlchemy URL (anything with ``://``).
    """
    if db is not None:
        return os.fspath(db)
    from_env = os.environ.get(ENV_DB)
    if from_env:
        return from_env
    return os.path.join(user_dir(), LEDGER_FILENAME)


def resolve_base_url(base_url: str | None) -> str:
    value = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    return value.rstrip("/")


def resolve_token(token: str | None) -> str | None:
    """The API token, or None; an empty variable counts as unset."""
    return token or os.environ.get(ENV_TOKEN) or None


class Secret:
    """Holds the API token so that no repr, str, log line or debugger dump can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<hidden>')"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("the API token is not picklable: pass it to each process instead")


def resolve_secret(token: str | None) -> Secret | None:
    value = resolve_token(token)
    return None if value is None else Secret(value)


def usable_token(value: str) -> str:
    """The token as it can go in a header, or ValueError (that never quotes it).

    Surrounding whitespace is dropped: ``export USEAPI_TOKEN=$(cat token.txt)`` keeps a CR
    from a CRLF file. Anything else outside printable ASCII would make httpx refuse the
    header with an error that quotes it, so it is refused here first, without the value.
    """
    stripped = value.strip()
    if not stripped or any(not ("!" <= ch <= "~") for ch in stripped):
        raise ValueError(
            "the API token contains spaces, control or non-ASCII characters, which no API token has"
        )
    return stripped
