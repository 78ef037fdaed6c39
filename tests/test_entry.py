"""The fast `ref` path answers exactly what the click CLI answers, and imports nothing heavy."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import assetcache
from assetcache import AssetCache, RetryPolicy, _cache, _entry, _hit
from assetcache._entry import _parse_ref, fast_ref
from assetcache.cli import cli
from assetcache.content import stat_cache

from .conftest import EMAIL, TOKEN, FakeLuma, png, write

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def hashed_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are hashed "3 s after" their last change: past the racy window, so the stat cache
    trusts them and the fast path answers from the ledger file alone. (Tests cannot age a
    file's ctime; they can age the moment the stat cache records.)"""
    real = time.time_ns
    monkeypatch.setattr(stat_cache, "time", types.SimpleNamespace(time_ns=lambda: real() + 3 * 10**9))


@pytest.fixture(params=["ledger-file", "cache"])
def seeded(
    request: pytest.FixtureRequest, tmp_path: Path, luma: FakeLuma, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """A ledger with one upload of "a b.png". ``ledger-file``: its stat is trusted, so the lean
    path (``_ledger_refs``) answers; ``cache``: just written, so AssetCache must hash it."""
    if request.param == "ledger-file":
        request.getfixturevalue("hashed_later")
    db = tmp_path / "l.db"
    path = write(tmp_path / "a b.png", png("fast"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        cache.resolve(path, email=EMAIL)
    if request.param == "ledger-file":
        # Answered without the caches' lookup, or not at all.
        monkeypatch.setattr(_entry, "_cache_refs", lambda *args: None)
    return db, path


@pytest.fixture
def settled(tmp_path: Path, luma: FakeLuma, hashed_later: None) -> tuple[Path, list[Path]]:
    """A ledger whose stat cache trusts three uploaded files."""
    db = tmp_path / "l.db"
    paths = [write(tmp_path / f"{n}.png", png(n)) for n in ("a", "b", "c")]
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        for path in paths:
            cache.resolve(path, email=EMAIL)
    return db, paths


def _fast(db: Path, *args: str | Path) -> tuple[int | None, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fast_ref(["--db", str(db), "ref", *map(str, args), "-e", EMAIL])
    return code, out.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ["ref", "{file}", "--email", EMAIL],
        ["ref", "{file}", f"--email={EMAIL}"],
        ["ref", "-e", EMAIL, "{file}"],
        ["ref", "{file}", "--email", EMAIL, "--offline"],
        ["ref", "{file}", "--email", EMAIL, "--min-remaining", "2d"],
        ["ref", "{file}", "--email", EMAIL, "--min-remaining=29d23h", "--offline"],
        ["ref", "{file}", "--email", "  me@EXAMPLE.com "],  # same account, normalised
        ["ref", "{file}", "--email", "ME@example.com"],  # local part is case-sensitive: a miss
        ["ref", "{file}", "--email", "other@example.com", "--offline"],
        ["ref", "{missing}", "--email", EMAIL, "--offline"],
        ["ref", "{file}", "--email", "bad", "--offline"],
        ["ref", "{file}", "{file}", "--email", EMAIL],  # several files, all hits
        ["ref", "{file}", "{missing}", "--email", EMAIL, "--offline"],  # one miss: click
    ],
)
def test_fast_path_agrees_with_click(
    args: list[str], seeded: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, path = seeded
    argv = ["--db", str(db)] + [
        a.format(file=path, missing=path.with_name("missing.png")) for a in args
    ]
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fast = fast_ref(argv)
    slow = CliRunner().invoke(
        cli, argv, env={"USEAPI_TOKEN": None}, obj={"retry": RetryPolicy(attempts=1)}
    )
    if fast is None:  # no hit: the full CLI answers
        assert out.getvalue() == ""
        assert slow.exit_code in (2, 3, 4, 5)  # the full CLI finds no hit either
    else:
        assert (fast, out.getvalue()) == (slow.exit_code, slow.stdout)


def test_parse_hands_unusual_command_lines_to_click() -> None:
    for argv in (
        [],
        ["ls"],
        ["-v", "ref", "f", "-e", "x@y"],
        ["ref", "--help"],
        ["ref", "f", "-e"],
        ["ref", "f", "-e", "x@y", "--min-remaining", "soon"],
        ["--db"],
        ["ref", "-"],
        ["ref", "f", "-ex@y"],
    ):
        assert _parse_ref(argv) is None, argv
    assert _parse_ref(["--db=x.db", "ref", "f", "-e", "a@b"]) == ("x.db", ["f"], "a@b", None, False)
    assert _parse_ref(["ref", "a", "-e", "x@y", "b"]) == (None, ["a", "b"], "x@y", None, False)
    assert _parse_ref(["ref", "f", "--email=a@b", "--min-remaining", "1d", "--offline"]) == (
        None,
        ["f"],
        "a@b",
        timedelta(days=1),
        True,
    )


HEAVY = (
    *("click", "httpx", "sqlalchemy", "sqlmodel", "alembic", "asyncio", "tenacity", "psycopg"),
    "tqdm",  # the CLI's progress bars: only once a bar is drawn at a terminal
)
#: What the console script's hit does without (the floor it is measured against imports none of
#: them either): each costs more to import than the hit's own work.
LEAN = (
    *HEAVY,
    "typing",
    "dataclasses",
    "inspect",
    "enum",
    "re",
    "threading",
    "weakref",
    "contextlib",
    "logging",
    "socket",
    "unicodedata",
    "assetcache._asset",
    "assetcache._cache",
    "assetcache.cli",  # the click CLI: the fast path lives outside it (assetcache/_entry.py)
    "assetcache.ledger.sqlite",
    "assetcache.content.sniff",  # the stat cache reads no file on a hit, so never imports it
    "platformdirs",
)


def _imported(script: str, forbidden: tuple[str, ...]) -> list[str]:
    """Which of ``forbidden`` a fresh interpreter has imported after running ``script``, less
    what it imports anyway (site hooks, .pth files)."""
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    env["PYTHONPATH"] = ROOT
    report = f"\nimport sys; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    found = []
    for code in ("", textwrap.dedent(script)):
        result = subprocess.run(
            [sys.executable, "-c", code + report], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        found.append(set(eval(result.stdout.splitlines()[-1])))
    return sorted(found[1] - found[0])


def test_hits_import_nothing_heavy(seeded: tuple[Path, Path]) -> None:
    db, path = seeded
    script = f"""
        from assetcache._entry import fast_ref
        assert fast_ref(["--db", {str(db)!r}, "ref", {str(path)!r}, "-e", {EMAIL!r}]) == 0
        from assetcache import AssetCache
        with AssetCache(db={str(db)!r}) as cache:
            assert cache.resolve({str(path)!r}, email={EMAIL!r}).reused
            assert cache.lookup({str(path)!r}, email={EMAIL!r}) is not None
        """
    assert _imported(script, HEAVY) == []


def test_console_hit_imports_only_what_it_needs(settled: tuple[Path, list[Path]]) -> None:
    db, paths = settled
    argv = ["--db", str(db), "ref", *map(str, paths), "-e", EMAIL, "--min-remaining", "1d"]
    script = f"""
        import io, sys
        out, sys.stdout = sys.stdout, io.StringIO()
        import assetcache._entry
        code = assetcache._entry.fast_ref({argv!r})
        sys.stdout = out
        assert code == 0, "not a hit"
        """
    assert _imported(script, LEAN) == []


def test_importing_the_package_imports_no_module_of_it() -> None:
    script = "import assetcache, sys; print(sorted(m for m in sys.modules if 'assetcache.' in m))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert result.stdout.split() == ["[]"], result.stderr


def test_every_public_name_resolves() -> None:
    for name in assetcache.__all__:
        assert getattr(assetcache, name) is not None, name
        assert name in dir(assetcache)
    namespace: dict[str, object] = {}
    exec("from assetcache import *", namespace)
    assert set(assetcache.__all__) <= set(namespace)
    assert assetcache.AssetCache is _cache.AssetCache
    with pytest.raises(AttributeError, match="no_such_name"):
        assetcache.no_such_name  # noqa: B018


def test_several_files_answered_by_the_ledger_file(
    settled: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, paths = settled
    monkeypatch.setattr(_entry, "_cache_refs", lambda *args: pytest.fail("not the lean path"))
    code, out = _fast(db, *paths)
    with AssetCache(db=db) as cache:
        expected = [cache.require(p, email=EMAIL).asset_ref for p in paths]
    assert (code, out.splitlines()) == (0, expected)
    assert _fast(db, paths[2], paths[0]) == (0, f"{expected[2]}\n{expected[0]}\n")


def _at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr(_hit, "utcnow", lambda: moment)


@pytest.mark.parametrize(
    ("shift", "answered"),
    [
        (timedelta(0), True),
        (timedelta(days=28, hours=23), True),  # more than the default day left
        (timedelta(days=29, hours=1), False),  # less than a day left: ref uploads again
        (timedelta(days=31), False),  # expired
        (-timedelta(hours=1), False),  # uploaded "later than now": the clock ran ahead
    ],
)
def test_the_lean_path_answers_only_a_live_ref_with_its_margin(
    settled: tuple[Path, list[Path]],
    monkeypatch: pytest.MonkeyPatch,
    shift: timedelta,
    answered: bool,
) -> None:
    db, paths = settled
    monkeypatch.setattr(_entry, "_cache_refs", lambda *args: None)
    _at(monkeypatch, datetime.now(UTC) + shift)
    code, out = _fast(db, paths[0])
    assert (code == 0) is answered
    assert bool(out) is answered


def test_the_lean_path_never_answers_a_revoked_or_foreign_ref(
    settled: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, (revoked, foreign, fine) = settled
    monkeypatch.setattr(_entry, "_cache_refs", lambda *args: None)
    with AssetCache(db=db) as cache:
        cache.forget(revoked)
    conn = sqlite3.connect(db)
    with conn:  # another program wrote a ref naming another account
        sha = conn.execute(
            "SELECT sha256 FROM file_stats WHERE path = ?", (str(foreign),)
        ).fetchone()[0]
        conn.execute(
            "UPDATE uploads SET asset_ref = 'u1-email:someone@else.com-image:x' WHERE sha256 = ?",
            (sha,),
        )
    conn.close()
    assert _fast(db, revoked) == (None, "")
    assert _fast(db, foreign) == (None, "")
    assert _fast(db, fine)[0] == 0


def test_the_lean_path_notices_a_rewritten_file(settled: tuple[Path, list[Path]]) -> None:
    db, (path, *_) = settled
    write(path, png("rewritten"))  # same name, new bytes: must be hashed again
    assert _entry._ledger_refs(str(db), [str(path)], EMAIL, timedelta(0)) is None


def test_the_lean_path_refuses_a_ledger_in_a_folder_others_may_write(
    settled: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, paths = settled
    monkeypatch.setattr(_entry, "_cache_refs", lambda *args: None)
    db.parent.chmod(0o777)
    try:
        assert _fast(db, paths[0]) == (None, "")  # the full CLI then says why
    finally:
        db.parent.chmod(0o700)
    assert _fast(db, paths[0])[0] == 0


def test_the_lean_path_records_a_new_source_like_lookup(
    settled: tuple[Path, list[Path]], tmp_path: Path, luma: FakeLuma
) -> None:
    db, (path, *_) = settled
    alias = tmp_path / "alias.png"
    alias.hardlink_to(path)  # same inode: the stat cache of "alias" is learnt below
    with AssetCache(db=db, token=TOKEN, transport=luma.transport) as cache:
        cache.lookup(alias, email=EMAIL)
        cache.lookup(path, email=EMAIL)
        assert cache.assets()[0].source == str(path)
        assert _fast(db, alias)[0] == 0
        assert cache.assets()[0].source == str(alias)


def test_console_entry_point_hit_and_miss(seeded: tuple[Path, Path], tmp_path: Path) -> None:
    db, path = seeded
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    env.update(ASSETCACHE_DB=str(db), ASSETCACHE_EMAIL=EMAIL)
    hit = subprocess.run(
        [sys.executable, "-m", "assetcache", "ref", str(path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert hit.returncode == 0 and hit.stdout.startswith("u1-") and hit.stderr == ""
    other = write(tmp_path / "other.png", png("other"))
    miss = subprocess.run(
        [sys.executable, "-m", "assetcache", "ref", str(other)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert miss.returncode == 5 and "USEAPI_TOKEN" in miss.stderr  # the full CLI answered


def test_fast_path_treats_an_empty_email_like_click(
    tmp_path: Path, luma: FakeLuma, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.db"
    path = write(tmp_path / "a.png", png("a"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        cache.resolve(path, email=EMAIL)
    monkeypatch.setenv("ASSETCACHE_EMAIL", EMAIL)
    assert fast_ref(["--db", str(db), "ref", str(path), "--email="]) is None
    assert fast_ref(["--db", str(db), "ref", str(path)]) == 0


@pytest.mark.parametrize("argv", [["--db=", "ref", "f", "-e", "a@b"], ["--db", "", "ref", "f"]])
def test_fast_path_leaves_an_empty_db_to_click(argv: list[str]) -> None:
    assert _parse_ref(argv) is None


def test_a_hit_on_the_default_ledger_imports_only_what_it_needs(
    tmp_path: Path, hashed_later: None
) -> None:
    """No --db and no ASSETCACHE_DB: the ledger in the user data dir, found without platformdirs
    (whose import costs more than the hit)."""
    path = tmp_path / "k.png"
    path.write_bytes(png("default"))
    with AssetCache(token=TOKEN, transport=FakeLuma().transport, base_url="https://api.test") as c:
        ref = c.resolve(path, email=EMAIL).asset_ref
        assert c.db_path.startswith(os.environ["HOME"])
    script = f"""
        import io, sys
        out, sys.stdout = sys.stdout, io.StringIO()
        import assetcache._entry
        code = assetcache._entry.fast_ref(["ref", {str(path)!r}, "-e", {EMAIL!r}])
        printed, sys.stdout = sys.stdout.getvalue(), out
        assert code == 0 and printed == {ref + chr(10)!r}, (code, printed)
        """
    assert _imported(script, LEAN) == []
