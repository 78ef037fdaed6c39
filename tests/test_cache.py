"""resolve / lookup / assets / prune over httpx.MockTransport, against both caches.

The ``cache`` and ``make_cache`` fixtures run each test against AssetCache and against
AsyncAssetCache (see conftest.BlockingAsyncCache): one behavioural suite, so the two cannot drift.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from assetcache import (
    RETENTION,
    Asset,
    AssetCache,
    InvalidEmailError,
    InvalidImageError,
    NotCachedError,
    UnauthorizedError,
)

from .conftest import EMAIL, TOKEN, Clock, FakeLuma, jpeg, png, webp, write

pytestmark = pytest.mark.both_engines


def test_first_resolve_uploads_then_answers_from_ledger(
    cache: AssetCache, luma: FakeLuma, tmp_path: Path, clock: Clock
) -> None:
    path = write(tmp_path / "frame.png", png("a"))
    first = cache.resolve(path, email=EMAIL)
    assert first.reused is False
    assert luma.uploads == 1
    second = cache.resolve(path, email=EMAIL)
    assert second.reused is True
    assert luma.uploads == 1
    assert second.asset_ref == first.asset_ref
    assert second.source == str(path)
    assert first.content_type == "image/png"
    assert first.size == len(png("a"))
    assert first.uploaded_at == clock.now
    assert first.uploaded_at.tzinfo is not None


def test_request_matches_the_contract(cache: AssetCache, luma: FakeLuma) -> None:
    cache.resolve(webp("w"), email="Some.One+tag@Example.COM")
    (request,) = luma.requests
    assert request.method == "POST"
    assert request.url.raw_path == b"/v1/luma/assets/Some.One%2Btag%40example.com"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "image/webp"
    assert request.content == webp("w")


def test_content_type_comes_from_bytes_not_name(
    cache: AssetCache, luma: FakeLuma, tmp_path: Path
) -> None:
    path = write(tmp_path / "actually-a-png.jpg", png("p"))
    asset = cache.resolve(path, email=EMAIL)
    assert asset.content_type == "image/png"
    assert luma.requests[0].headers["content-type"] == "image/png"


def test_expiry_is_thirty_days_after_the_moment_before_the_request(
    cache: AssetCache, clock: Clock
) -> None:
    asset = cache.resolve(png(), email=EMAIL)
    assert asset.expires_at - asset.uploaded_at == RETENTION == timedelta(days=30)
    assert asset.remaining_at(clock.now) == timedelta(days=30)


def test_min_remaining_triggers_reupload(cache: AssetCache, luma: FakeLuma, clock: Clock) -> None:
    first = cache.resolve(png(), email=EMAIL)
    clock.advance(timedelta(days=29, hours=23))  # 1 h left: under the default 1 day
    again = cache.resolve(png(), email=EMAIL)
    assert again.reused is False
    assert again.asset_ref != first.asset_ref
    assert luma.uploads == 2
    # With the fresh row present the newest live one answers.
    assert cache.resolve(png(), email=EMAIL).asset_ref == again.asset_ref


def test_min_remaining_per_call(cache: AssetCache, luma: FakeLuma, clock: Clock) -> None:
    cache.resolve(png(), email=EMAIL)
    clock.advance(timedelta(days=25))  # 5 days left
    assert cache.resolve(png(), email=EMAIL, min_remaining=timedelta(days=4)).reused
    assert not cache.resolve(png(), email=EMAIL, min_remaining=timedelta(days=6)).reused
    assert luma.uploads == 2


def test_expired_ref_is_never_returned(cache: AssetCache, clock: Clock) -> None:
    cache.resolve(png(), email=EMAIL)
    clock.advance(timedelta(days=30))
    assert cache.lookup(png(), email=EMAIL) is None
    assert not cache.resolve(png(), email=EMAIL, min_remaining=timedelta(0)).reused


def test_force_always_uploads(cache: AssetCache, luma: FakeLuma) -> None:
    a = cache.resolve(png(), email=EMAIL)
    b = cache.resolve(png(), email=EMAIL, force=True)
    assert luma.uploads == 2
    assert a.asset_ref != b.asset_ref
    assert cache.lookup(png(), email=EMAIL).asset_ref == b.asset_ref  # type: ignore[union-attr]


def test_key_is_content_and_email(cache: AssetCache, luma: FakeLuma) -> None:
    cache.resolve(png("1"), email=EMAIL)
    cache.resolve(png("2"), email=EMAIL)
    cache.resolve(png("1"), email="other@example.com")
    cache.resolve(png("1"), email="  me@EXAMPLE.com ")  # same account, normalised
    assert luma.uploads == 3


def test_lookup_never_uploads_and_needs_no_token(
    make_cache: Callable[..., AssetCache], luma: FakeLuma, tmp_path: Path
) -> None:
    make_cache().resolve(png(), email=EMAIL)
    tokenless = make_cache(token=None)
    assert tokenless.lookup(png(), email=EMAIL) is not None
    assert tokenless.lookup(png("other"), email=EMAIL) is None
    with pytest.raises(NotCachedError, match="no live assetRef"):
        tokenless.require(png("other"), email=EMAIL)
    assert luma.uploads == 1


def test_missing_token_is_an_error_only_when_uploading(
    make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    cache = make_cache(token=None)
    with pytest.raises(UnauthorizedError, match="USEAPI_TOKEN"):
        cache.resolve(png(), email=EMAIL)
    assert luma.requests == []


def test_token_from_environment(
    make_cache: Callable[..., AssetCache], luma: FakeLuma, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEAPI_TOKEN", TOKEN)
    assert make_cache(token=None).resolve(png(), email=EMAIL).reused is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"GIF89a....", "GIF"),
        (b"BM\x00\x00", "BMP"),
        (b"\x00\x00\x00\x18ftypheic", "HEIC"),
        (b"\x00\x00\x00\x1cftypavif", "AVIF"),
        (b"hello world", "unrecognised"),
    ],
)
def test_invalid_bytes_refused_before_any_request(
    cache: AssetCache, luma: FakeLuma, data: bytes, message: str
) -> None:
    with pytest.raises(InvalidImageError, match=message):
        cache.resolve(data, email=EMAIL)
    assert luma.requests == []


def test_too_large_refused_before_any_request(cache: AssetCache, luma: FakeLuma) -> None:
    from assetcache import MAX_UPLOAD_BYTES

    with pytest.raises(InvalidImageError, match="limit"):
        cache.resolve(png(b"\0" * MAX_UPLOAD_BYTES), email=EMAIL)
    assert luma.requests == []


def test_bad_email_refused(cache: AssetCache, luma: FakeLuma) -> None:
    for bad in ["", "   ", "no-at-sign", "@example.com", "me@", "me\n@example.com"]:
        with pytest.raises(InvalidEmailError):
            cache.resolve(png(), email=bad)
    assert luma.requests == []


def test_assets_sorted_by_expiry_and_filtered(cache: AssetCache, clock: Clock) -> None:
    cache.resolve(png("old"), email=EMAIL)
    clock.advance(timedelta(days=10))
    cache.resolve(jpeg("new"), email=EMAIL)
    cache.resolve(png("other"), email="b@example.com")
    listed = cache.assets()
    assert [a.expires_at for a in listed] == sorted(a.expires_at for a in listed)
    assert {a.email for a in cache.assets(email="b@example.com")} == {"b@example.com"}
    assert len(cache.assets(expiring_within=timedelta(days=21))) == 1
    clock.advance(timedelta(days=21))  # the first one is now dead
    assert [a.content_type for a in cache.assets(expired=True)] == ["image/png"]
    assert len(cache.assets(expired=False)) == 2
    with pytest.raises(ValueError, match="disjoint"):
        cache.assets(expired=True, expiring_within=timedelta(days=1))


def test_prune_expired_and_older_than(cache: AssetCache, clock: Clock) -> None:
    cache.resolve(png("a"), email=EMAIL)
    clock.advance(timedelta(days=20))
    cache.resolve(png("b"), email=EMAIL)
    clock.advance(timedelta(days=15))
    dry = cache.prune(dry_run=True)
    assert len(dry) == 1
    assert len(cache.assets()) == 2
    removed = cache.prune()
    assert [a.sha256 for a in removed] == [dry[0].sha256]
    assert len(cache.assets()) == 1
    assert cache.prune(older_than=timedelta(days=16)) == []
    assert len(cache.prune(older_than=timedelta(days=14))) == 1
    assert cache.assets() == []


def test_history_is_kept_and_newest_answers(cache: AssetCache, clock: Clock) -> None:
    cache.resolve(png(), email=EMAIL)
    clock.advance(timedelta(days=29, hours=12))
    newest = cache.resolve(png(), email=EMAIL)
    rows = cache.assets()
    assert len(rows) == 2
    assert cache.lookup(png(), email=EMAIL).asset_ref == newest.asset_ref  # type: ignore[union-attr]


def test_asset_is_immutable_and_has_remaining(cache: AssetCache) -> None:
    asset = cache.resolve(png(), email=EMAIL)
    with pytest.raises(AttributeError):
        asset.asset_ref = "x"  # type: ignore[misc]
    assert isinstance(asset.remaining, timedelta)
    assert isinstance(asset, Asset)


def test_source_follows_the_last_path(cache: AssetCache, tmp_path: Path, engine: str) -> None:
    a = write(tmp_path / "a.png", png("same"))
    b = write(tmp_path / "b.png", png("same"))
    cache.resolve(a, email=EMAIL)
    assert cache.resolve(b, email=EMAIL).source == str(b)
    if engine != "sqlite":  # a hit never writes to a shared ledger: the upload's path stays
        assert cache.assets()[0].source == str(a)
        return
    assert cache.assets()[0].source == str(b)
    assert cache.resolve(png("same"), email=EMAIL).source == str(b)  # bytes keep the path


def test_threads_share_one_cache_and_upload_once(
    make_sync_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    cache = make_sync_cache()
    results: list[str] = []
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        results.append(cache.resolve(png("shared"), email=EMAIL).asset_ref)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert luma.uploads == 1
    assert len(set(results)) == 1 and len(results) == 16


def test_resolve_many_keeps_order_and_errors(cache: AssetCache, luma: FakeLuma) -> None:
    outcomes = cache.resolve_many([png("1"), b"nope", png("2"), png("1")], email=EMAIL, jobs=3)
    assert isinstance(outcomes[0], Asset) and isinstance(outcomes[2], Asset)
    assert isinstance(outcomes[1], InvalidImageError)
    assert outcomes[3].asset_ref == outcomes[0].asset_ref  # type: ignore[union-attr]
    assert luma.uploads == 2


def test_token_never_in_ledger_files_or_reprs(
    cache: AssetCache, db: Path, tmp_path: Path, luma: FakeLuma
) -> None:
    for i in range(5):
        cache.resolve(write(tmp_path / f"{i}.png", png(str(i))), email=EMAIL)
    assert TOKEN not in repr(cache)
    cache.close()
    for root, _dirs, files in os.walk(db.parent):
        for name in files:
            assert TOKEN.encode() not in (Path(root) / name).read_bytes(), name


def test_ledger_file_is_private(make_sync_cache: Callable[..., AssetCache], db: Path) -> None:
    make_sync_cache().resolve(png(), email=EMAIL)  # a SQLite file: one engine
    assert os.stat(db).st_mode & 0o777 == 0o600
    assert os.stat(db.parent).st_mode & 0o777 == 0o700


def test_min_remaining_must_fit_in_retention(make_cache: Callable[..., AssetCache]) -> None:
    with pytest.raises(ValueError, match="min_remaining"):
        make_cache(min_remaining=timedelta(days=30))
    with pytest.raises(ValueError, match="min_remaining"):
        make_cache(min_remaining=timedelta(seconds=-1))


def test_default_ledger_lives_in_user_data_dir(luma: FakeLuma, tmp_path: Path) -> None:
    with AssetCache(token=TOKEN, transport=luma.transport) as cache:
        cache.resolve(png(), email=EMAIL)
        assert cache.db_path.startswith(os.environ["XDG_DATA_HOME"])
        assert cache.db_path.endswith(os.path.join("assetcache", "ledger.db"))


def test_db_from_environment(
    luma: FakeLuma, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETCACHE_DB", str(tmp_path / "env.db"))
    with AssetCache(token=TOKEN, transport=luma.transport) as cache:
        assert cache.db_path == str(tmp_path / "env.db")
    with AssetCache(db=f"sqlite:///{tmp_path}/url.db") as cache:
        assert cache.db_path == str(tmp_path / "url.db")
        assert cache.assets() == []


def test_base_url_from_environment(luma: FakeLuma, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETCACHE_BASE_URL", "http://localhost:9/")
    assert AssetCache().base_url == "http://localhost:9"
    assert AssetCache(base_url=None).base_url != "https://api.useapi.net"
    monkeypatch.delenv("ASSETCACHE_BASE_URL")
    assert AssetCache().base_url == "https://api.useapi.net"



def test_forced_bytes_upload_on_a_new_ledger(
    make_cache: Callable[..., AssetCache], luma: FakeLuma
) -> None:
    assert make_cache().resolve(png("forced"), email=EMAIL, force=True).reused is False


def test_resolve_many_reports_each_outcome_and_checks_arguments_first(
    cache: AssetCache, luma: FakeLuma
) -> None:
    seen: dict[int, object] = {}
    out = cache.resolve_many(
        [png("1"), b"nope", png("1")], email=EMAIL, jobs=2, on_result=seen.__setitem__
    )
    assert seen == dict(enumerate(out))
    with pytest.raises(InvalidEmailError):
        cache.resolve_many([png("1")], email="not an email")
    with pytest.raises(ValueError, match="jobs"):
        cache.resolve_many([png("1")], email=EMAIL, jobs=0)
    assert luma.uploads == 1


def test_require_raises_what_lookup_would_answer_none(cache: AssetCache) -> None:
    with pytest.raises(NotCachedError, match="no live assetRef"):
        cache.require(png("never"), email=EMAIL)
    uploaded = cache.resolve(png("once"), email=EMAIL)
    assert cache.require(png("once"), email=EMAIL).asset_ref == uploaded.asset_ref


def test_iter_prune_streams_what_prune_removes(cache: AssetCache, clock: Clock) -> None:
    for i in range(3):
        cache.resolve(png(str(i)), email=EMAIL)
    clock.advance(timedelta(days=31))
    cache.resolve(png("live"), email=EMAIL)
    dry = list(cache.iter_prune(dry_run=True))
    assert len(dry) == 3 and len(cache.assets()) == 4
    removed = list(cache.iter_prune())
    assert [a.sha256 for a in removed] == [a.sha256 for a in dry]
    assert [a.state(clock.now) for a in cache.assets()] == ["live"]
    with pytest.raises(ValueError, match="nothing would match"):
        cache.iter_prune(expired=False)
