"""For any command line, the console script's fast path prints what the click CLI prints, with
its exit code, or leaves the command to it (prints nothing): hypothesis writes the argv."""

from __future__ import annotations

import contextlib
import io
import os
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from assetcache import AssetCache, RetryPolicy
from assetcache._config import ENV_EMAIL
from assetcache._entry import fast_ref
from assetcache.cli import cli
from assetcache.content import stat_cache

from .conftest import EMAIL, TOKEN, FakeLuma, png, write

#: Stand-ins replaced by the fixture's paths.
HIT, SECOND, MISSING, FOLDER, DB = "<hit>", "<second>", "<missing>", "<folder>", "<db>"
EMAILS = [EMAIL, " me@EXAMPLE.com ", "ME@example.com", "me@example.com\u200b", "bad", "", "x@y"]
DURATIONS = ["0", "0s", "1d", "23h", "29d23h", "30d", "-1d", "1e9d", "soon", "1 d", ""]
#: Anything else a command line may hold.
WORDS = [
    *(MISSING, FOLDER, "ref", "-", "--", "-e", "--email", "-v", "-h", "--help", "--offline=1"),
    *("--min-remaining", "--db", f"--db={DB}", "--db=", "--e", "--emai", "-e=" + EMAIL),
    *("-e" + EMAIL, "--email=", *EMAILS, *DURATIONS),
]
FILE = st.sampled_from([HIT, HIT, SECOND, MISSING, FOLDER]).map(lambda word: [word])
EMAIL_OPTION = st.tuples(st.sampled_from(["-e", "--email", "--email="]), st.sampled_from(EMAILS))
MARGIN = st.tuples(
    st.sampled_from(["--min-remaining", "--min-remaining="]), st.sampled_from(DURATIONS)
)


def _option(pair: tuple[str, str]) -> list[str]:
    name, value = pair
    return [name + value] if name.endswith("=") else [name, value]


ITEM = st.one_of(
    FILE,
    EMAIL_OPTION.map(_option),
    MARGIN.map(_option),
    st.just(["--offline"]),
    st.sampled_from(WORDS).map(lambda word: [word]),
)
#: Mostly plausible ``ref`` command lines (a file and an email in some order, so that many are
#: hits), with other options and odd words mixed in.
ARGV = st.tuples(
    st.sampled_from([[], ["--db", DB], [f"--db={DB}"], ["--db", DB, "--db", DB], ["-v"]]),
    st.sampled_from([["ref"], ["ref"], ["ref"], []]),
    st.tuples(FILE, EMAIL_OPTION.map(_option))
    .flatmap(lambda core: st.lists(ITEM, max_size=4).map(lambda more: [*core, *more]))
    .flatmap(st.permutations),
).map(lambda parts: [*parts[0], *parts[1], *(word for item in parts[2] for word in item)])


@pytest.fixture
def ledger(tmp_path: Path, luma: FakeLuma, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Two uploads whose stats the ledger trusts (the lean path answers them), a missing file
    and a folder; the ledger is also the default one, in the test's private HOME."""
    real = time.time_ns  # hashed "3 s after" the last change: past the racy window
    monkeypatch.setattr(stat_cache, "time", types.SimpleNamespace(time_ns=lambda: real() + 3 * 10**9))
    paths = {
        HIT: write(tmp_path / "hit.png", png("hit")),
        SECOND: write(tmp_path / "-second.png", png("second")),  # named like an option
        MISSING: tmp_path / "missing.png",
        FOLDER: tmp_path,
    }
    with AssetCache(token=TOKEN, transport=luma.transport) as cache:
        for path in (paths[HIT], paths[SECOND]):
            cache.resolve(path, email=EMAIL)
        db = cache.db_path
    return {**{k: str(v) for k, v in paths.items()}, DB: db}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(words=ARGV, email_env=st.sampled_from([None, "", EMAIL, "bad"]))
def test_fast_path_prints_what_click_prints_or_nothing(
    ledger: dict[str, str], words: list[str], email_env: str | None
) -> None:
    argv = [ledger.get(word, word.replace(DB, ledger[DB])) for word in words]
    saved = os.environ.pop(ENV_EMAIL, None)
    if email_env is not None:
        os.environ[ENV_EMAIL] = email_env
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            fast = fast_ref(argv)
    finally:
        os.environ.pop(ENV_EMAIL, None)
        if saved is not None:
            os.environ[ENV_EMAIL] = saved
    event(f"fast path: {'hit' if fast == 0 else fast}")  # --hypothesis-show-statistics
    if fast is None:
        assert out.getvalue() == "", argv
        return
    slow = CliRunner().invoke(
        cli,
        argv,
        env={"USEAPI_TOKEN": None, ENV_EMAIL: email_env},
        obj={"retry": RetryPolicy(attempts=1)},
        input="",
    )
    assert (fast, out.getvalue()) == (slow.exit_code, slow.stdout), (argv, email_env, slow.output)
