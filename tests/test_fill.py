"""fill: a request payload with local paths in, the same payload with live refs out (both
caches, both engines, and the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, FillError, InvalidImageError

from .conftest import EMAIL, FakeLuma, png, write

pytestmark = pytest.mark.both_engines

OTHER_REF = "u2-email:eve@example.com-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11"
MY_REF = f"u1-email:{EMAIL}-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11"


def test_a_videos_payload_gets_live_refs_and_keeps_everything_else(
    cache: AssetCache, luma: FakeLuma, tmp_path: Path
) -> None:
    write(tmp_path / "shots" / "start.png", png("start"))
    end = write(tmp_path / "end.png", png("end"))
    payload = {
        "prompt": "a slow dolly in",
        "imageStart": "shots/start.png",
        "model": "ray-v3",
        "imageEnd": end.as_uri(),
        "imageCharacter": "https://example.com/hero.png",
        "duration": "5s",
    }
    filled = cache.fill(payload, email=EMAIL, base_dir=str(tmp_path))
    assert list(filled) == list(payload)  # same keys, same order
    assert {k: v for k, v in filled.items() if k not in ("imageStart", "imageEnd")} == {
        k: v for k, v in payload.items() if k not in ("imageStart", "imageEnd")
    }
    start_ref = cache.require(tmp_path / "shots" / "start.png", email=EMAIL).asset_ref
    assert filled["imageStart"] == start_ref
    assert filled["imageEnd"] == cache.require(end, email=EMAIL).asset_ref
    assert payload["imageStart"] == "shots/start.png"  # the input is not changed
    assert cache.fill(payload, email=EMAIL, base_dir=str(tmp_path)) == filled
    assert luma.uploads == 2


def test_the_payloads_email_wins_and_a_contradiction_is_refused(
    cache: AssetCache, tmp_path: Path
) -> None:
    write(tmp_path / "a.png", png("a"))
    payload = {"email": "b@example.com", "imageRef1": "a.png", "prompt": "x"}
    filled = cache.fill(payload, base_dir=str(tmp_path))
    assert "-email:b@example.com-" in filled["imageRef1"]
    with pytest.raises(ValueError, match="contradicts"):
        cache.fill(payload, email=EMAIL, base_dir=str(tmp_path))


def test_all_or_nothing_every_failing_field_named(cache: AssetCache, tmp_path: Path) -> None:
    write(tmp_path / "a.png", png("a"))
    payload = {
        "prompt": "x",
        "imageRef1": "a.png",
        "imageRef2": MY_REF,  # a ref of this account: kept
        "imageRef3": OTHER_REF,  # another account: images need one account for all refs
        "imageRef4": "missing.png",
    }
    with pytest.raises(FillError) as info:
        cache.fill(payload, email=EMAIL, base_dir=str(tmp_path))
    assert list(info.value.failures) == ["imageRef3", "imageRef4"]
    assert all(isinstance(e, InvalidImageError) for e in info.value.failures.values())
    assert "eve@example.com" in str(info.value.failures["imageRef3"])
    payload.pop("imageRef3")
    payload["imageRef4"] = "~/nowhere.png"
    with pytest.raises(FillError, match="imageRef4"):
        cache.fill(payload, email=EMAIL, base_dir=str(tmp_path))
    del payload["imageRef4"]
    assert cache.fill(payload, email=EMAIL, base_dir=str(tmp_path))["imageRef2"] == MY_REF


def test_a_batch_resolves_each_image_once_and_fails_payload_by_payload(
    cache: AssetCache, luma: FakeLuma, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        write(tmp_path / f"{name}.png", png(name))
    payloads: list[Any] = [
        {"imageStart": "a.png", "imageEnd": "b.png"},
        {"imageStart": "missing.png"},
        {"imageStart": "b.png", "imageEnd": "c.png"},
        ["not", "an", "object"],
    ]
    out = cache.fill_many(payloads, email=EMAIL, base_dir=str(tmp_path), jobs=3)
    assert isinstance(out[0], dict) and isinstance(out[2], dict)
    assert isinstance(out[1], FillError) and isinstance(out[3], ValueError)
    assert out[0]["imageEnd"] == out[2]["imageStart"]  # b.png: one ref for both
    assert luma.uploads == 3


def test_cli_fill(run: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = tmp_path / "jobs"
    write(jobs / "start.png", png("start"))
    write(jobs / "end.png", png("end"))
    payload = {"prompt": "p", "imageStart": "start.png", "imageEnd": "end.png", "duration": "5s"}
    (jobs / "video.json").write_text(json.dumps(payload, indent=2))
    one = run("fill", str(jobs / "video.json"), "-e", EMAIL)  # paths relative to the file
    assert one.exit_code == 0, one.output
    filled = json.loads(one.stdout)
    assert list(filled) == list(payload) and filled["imageStart"].startswith("u")
    monkeypatch.chdir(jobs)  # stdin: relative to the current folder
    lines = "\n".join(
        json.dumps(p)
        for p in (
            {"imageStart": "start.png"},
            {"imageStart": "gone.png", "imageEnd": "nonsense value"},
            {"imageEnd": "end.png", "email": EMAIL},
        )
    )
    batch = run("fill", "-", input=lines + "\n", ASSETCACHE_EMAIL=EMAIL)
    assert batch.exit_code == 4
    printed = [json.loads(line) if line else None for line in batch.stdout.splitlines()]
    assert [p and list(p) for p in printed] == [["imageStart"], None, ["imageEnd", "email"]]
    assert batch.stderr.count("line 2:") == 2 and "imageEnd" in batch.stderr
    out = tmp_path / "filled.json"
    assert run("fill", str(jobs / "video.json"), "-e", EMAIL, "-o", str(out)).stdout == ""
    assert json.loads(out.read_text()) == filled
    other = json.dumps({"email": "b@example.com", "imageStart": "start.png"})
    assert run("fill", "-", "-e", EMAIL, input=other).exit_code == 2  # contradicts --email
    assert run("fill", "-", input=other, ASSETCACHE_EMAIL=EMAIL).exit_code == 0  # a default
    assert run("fill", "-", input="{oops").exit_code == 2


def test_a_fill_error_maps_to_its_worst_fields_exit_code() -> None:
    """A FillError reaching the CLI's top level exits as its worst field would, not as 1."""
    from assetcache import FillError, InvalidImageError, NotCachedError
    from assetcache.cli.exits import EXIT_INVALID_INPUT, exit_code

    error = FillError(
        {"imageStart": NotCachedError("not cached"), "imageEnd": InvalidImageError("not a PNG")}
    )
    assert exit_code(error) == EXIT_INVALID_INPUT
