"""A PostgreSQL password is a secret like the API token, whatever characters it holds: written
raw or percent-encoded, right or wrong, no piece of it shows in what the commands print (at
-vv too), in an exception's text or repr, or in ``path``, which shows the target libpq really
connects to.

The dangerous case is a raw ``@`` (or ``/``): libpq ends the password at the first ``@`` and
takes the rest for the host, which its own messages (and psycopg's debug log) then quote."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from assetcache import AssetCache, AsyncAssetCache, LedgerError

from .conftest import EMAIL, png
from .postgres_server import database_url

pytestmark = pytest.mark.slow
ROOT = str(Path(__file__).resolve().parent.parent)
#: The characters that read differently in a URL: each goes in a password, raw and encoded.
SPECIALS = ["@", "/", "?", "#", ":", "[", "]", "%", " "]
#: Raw, these make libpq read the URL otherwise (or refuse it): the command fails.
BREAKS_RAW = {"@", "/", "%", " "}


def fragments(secret: str) -> list[str]:
    """Each maximal run of at least 3 characters of the secret between URL separators."""
    runs, run = [], ""
    for ch in secret + "@":
        if ch in "@/?#:[]% ":
            if len(run) >= 3:
                runs.append(run)
            run = ""
        else:
            run += ch
    return runs


def assert_hidden(secret: str, *texts: object) -> None:
    for text in texts:
        for piece in fragments(secret):
            assert piece not in str(text), (piece, text)


@pytest.fixture
def role(postgres_server: Any, postgres_url: str) -> Iterator[tuple[str, str, Any]]:
    """A new role owning the test's database: its name, the database's URL, and a function
    setting the role's password."""
    import psycopg
    from psycopg import sql

    name = f"ann_{uuid.uuid4().hex[:10]}"
    database = sql.Identifier(urlsplit(postgres_url).path.lstrip("/"))
    role = sql.Identifier(name)

    def admin(statement: sql.Composable, url: str = postgres_server.url) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement)

    def set_password(password: str) -> None:
        admin(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(password)))

    admin(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    admin(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, role))
    yield name, postgres_url, set_password
    # The ledger's tables (and the database) go back to the administrator, then the role.
    in_database = database_url(postgres_server.url, urlsplit(postgres_url).path.lstrip("/"))
    admin(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role), in_database)
    admin(sql.SQL("DROP ROLE {}").format(role))


def url_for(base: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    return f"postgresql://{user}:{password}@{parts.hostname}:{parts.port}{parts.path}"


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, with the URL where the README says to keep it: the environment."""
    env = dict(os.environ, PYTHONPATH=ROOT, ASSETCACHE_DB=url)
    return subprocess.run(
        [sys.executable, "-m", "assetcache", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("special", SPECIALS, ids=[f"{ord(c):02x}" for c in SPECIALS])
def test_no_piece_of_a_password_shows_raw_or_encoded_right_or_wrong(
    role: tuple[str, str, Any], special: str
) -> None:
    name, base, set_password = role
    password = f"Qx7Lp{special}Zk9sEcret"
    wrong = f"Wr0ngPw{special}Xy8zQq"
    set_password(password)
    for secret, written, works in [
        (password, quote(password, safe=""), True),
        (password, password, special not in BREAKS_RAW),
        (wrong, quote(wrong, safe=""), False),
        (wrong, wrong, False),
    ]:
        url = url_for(base, name, written)
        listed = run(url, "-vv", "ls")
        assert (listed.returncode == 0) is works, (written, listed.stderr)
        assert "Traceback" not in listed.stderr
        if not works:
            assert listed.stderr.count("assetcache: error: ledger postgresql://") == 1
        shown = run(url, "path")
        assert shown.returncode == 0 and shown.stdout.startswith(f"postgresql://{name}:***")
        assert_hidden(secret, listed.stdout, listed.stderr, shown.stdout, shown.stderr)
        if not works:
            cache = AssetCache(db=url)
            with pytest.raises(LedgerError) as info:
                cache.assets()
            cache.close()
            failure = info.value
            assert_hidden(secret, failure, repr(failure), failure.path, repr(cache), cache.db_path)


def test_the_target_path_shows_is_the_one_libpq_uses(role: tuple[str, str, Any]) -> None:
    name, base, set_password = role
    set_password("Qx7Lp@Zk9sEcret")
    port = urlsplit(base).port
    encoded = run(url_for(base, name, "Qx7Lp%40Zk9sEcret"), "path")
    assert encoded.stdout.startswith(f"postgresql://{name}:***@127.0.0.1:{port}/")
    raw = run(url_for(base, name, "Qx7Lp@Zk9sEcret"), "path")
    # libpq reads "Zk9sEcret@127.0.0.1" as the host: shown so, masked, with what to do
    assert f"host=***@127.0.0.1&port={port}" in raw.stdout
    assert "percent-encode" in raw.stdout
    failed = run(url_for(base, name, "Qx7Lp@Zk9sEcret"), "ls")
    assert "percent-encode" in failed.stderr and "Zk9" not in failed.stderr


def test_the_asyncio_driver_masks_the_same(role: tuple[str, str, Any]) -> None:
    name, base, set_password = role
    password = "Qx7Lp@Zk9sEcret"
    set_password(password)
    url = url_for(base, name, password)

    async def lookup() -> None:
        async with AsyncAssetCache(db=url) as cache:
            await cache.lookup(png("x"), email=EMAIL)

    with pytest.raises(LedgerError) as info:
        asyncio.run(lookup())
    assert_hidden(password, info.value, repr(info.value), info.value.path)
