"""fill's command line: JSON Lines out in step with the input (a failed payload's line is empty,
never the payload), and where a relative image path is looked for (the current folder and the
payload file's folder, never guessing between two different files; or --base DIR), with
errors naming the folders looked in."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, FillError

from .conftest import EMAIL, FakeLuma, png, write

MY_REF = f"u1-email:{EMAIL}-image:0d9f6a1e-95f4-4d52-9e42-6c2b3f1f0a11"


def _lines(stdout: str) -> list[dict[str, Any] | None]:
    return [json.loads(line) if line else None for line in stdout.split("\n")[:-1]]


# -- lines in step --------------------------------------------------------------------------


@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "-o"])
def test_every_input_line_has_its_output_line(
    run: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, to_file: bool
) -> None:
    write(tmp_path / "a.png", png("a"))
    monkeypatch.chdir(tmp_path)
    lines = [
        '{"n": 1, "imageStart": "a.png"}',
        '{"n": 2, "imageStart": "gone.png"}',  # a missing file: exit 4
        "",  # a blank line is kept as one
        "[1, 2]",  # JSON, but no payload: exit 2
        '{"n": 5, "imageEnd": "a.png"}',
    ]
    out = tmp_path / "out.jsonl"
    args = ["-o", str(out)] if to_file else []
    result = run("fill", "-", "-e", EMAIL, *args, input="\n".join(lines) + "\n")
    assert result.exit_code == 4
    written = out.read_text() if to_file else result.stdout
    printed = _lines(written)
    assert len(printed) == len(lines)
    assert [p and p["n"] for p in printed] == [1, None, None, None, 5]
    assert "gone.png" not in written  # a failed payload never looks filled
    assert result.stderr.count("\n") == 2
    assert "line 2: imageStart:" in result.stderr and "line 4:" in result.stderr


def test_without_a_final_newline_the_count_is_the_same(run: Callable[..., Any]) -> None:
    text = '{"imageStart": "https://example.com/a.png"}\n{"imageStart": 1}'
    result = run("fill", "-", "-e", EMAIL, input=text)
    assert result.exit_code == 4
    assert result.stdout.split("\n") == ['{"imageStart": "https://example.com/a.png"}', "", ""]


def test_one_payload_that_fails_prints_nothing(run: Callable[..., Any]) -> None:
    """As ``ref FILE``: one answer, and none on failure (``OUT=$(assetcache fill x.json)``)."""
    result = run("fill", "-", "-e", EMAIL, input='{\n "imageStart": "gone.png"\n}\n')
    assert result.exit_code == 4 and result.stdout == ""


# -- where relative paths are found -----------------------------------------------------------


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The README's example: frames/ beside shots/, run from the folder above both."""
    write(tmp_path / "frames" / "start.png", png("start"))
    write(tmp_path / "frames" / "end.png", png("end"))
    (tmp_path / "shots").mkdir()
    payload = {
        "prompt": "slow dolly in on the lighthouse at dusk",
        "imageStart": "frames/start.png",
        "imageEnd": "frames/end.png",
        "imageCharacter": "https://example.com/keeper.png",
        "email": EMAIL,
    }
    (tmp_path / "shots" / "scene1.json").write_text(json.dumps(payload))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readmes_example_works_as_written(run: Callable[..., Any], scene: Path) -> None:
    result = run("fill", "shots/scene1.json")
    assert result.exit_code == 0, result.stderr
    filled = json.loads(result.stdout)
    assert filled["imageStart"].startswith(f"u1-email:{EMAIL}-image:")
    assert filled["imageEnd"].startswith(f"u1-email:{EMAIL}-image:")
    assert filled["imageCharacter"] == "https://example.com/keeper.png"


def test_a_path_beside_the_payload_file_works_from_anywhere(
    run: Callable[..., Any], scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = scene / "jobs"
    write(jobs / "start.png", png("beside"))
    (jobs / "video.json").write_text(json.dumps({"imageStart": "start.png"}))
    monkeypatch.chdir(scene / "shots")
    result = run("fill", str(jobs / "video.json"), "-e", EMAIL)
    assert result.exit_code == 0, result.stderr


def test_two_different_files_by_one_name_fail_naming_both(
    run: Callable[..., Any], scene: Path, luma: FakeLuma
) -> None:
    write(scene / "shots" / "frames" / "start.png", png("another start"))
    result = run("fill", "shots/scene1.json")
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == (
        f"assetcache: error: the payload: imageStart: 'frames/start.png' names two different "
        f"files, {scene}/frames/start.png and {scene}/shots/frames/start.png: write the path "
        "from one of those folders, or choose it with --base DIR\n"
    )
    chosen = run("fill", "shots/scene1.json", "--base", "shots")  # shots/frames/end.png: none
    assert chosen.exit_code == 4
    assert chosen.stderr == (
        "assetcache: error: the payload: imageEnd: 'frames/end.png' is neither an existing file "
        f"(no such file in {scene}/shots), an http(s) URL nor an assetRef\n"
    )
    write(scene / "shots" / "frames" / "end.png", png("another end"))
    assert run("fill", "shots/scene1.json", "--base", "shots").exit_code == 0
    assert run("fill", "shots/scene1.json", "--base", ".").exit_code == 0


def test_one_file_reached_through_both_folders_is_no_ambiguity(
    run: Callable[..., Any], scene: Path
) -> None:
    os.symlink(scene / "frames", scene / "shots" / "frames")
    assert run("fill", "shots/scene1.json").exit_code == 0
    (scene / "shots" / "scene1.json").rename(scene / "scene1.json")  # one folder: cwd
    assert run("fill", "scene1.json").exit_code == 0


def test_a_file_found_nowhere_names_both_folders(run: Callable[..., Any], scene: Path) -> None:
    (scene / "frames" / "start.png").unlink()
    result = run("fill", "shots/scene1.json")
    assert result.exit_code == 4
    assert result.stderr == (
        "assetcache: error: the payload: imageStart: 'frames/start.png' is neither an existing "
        f"file (no such file in {scene} or {scene}/shots), an http(s) URL nor an assetRef\n"
    )


def test_stdin_looks_in_the_current_folder_only(run: Callable[..., Any], scene: Path) -> None:
    text = (scene / "shots" / "scene1.json").read_text()
    assert run("fill", "-", input=text).exit_code == 0
    gone = run("fill", "-", input='{"imageStart": "start.png"}', ASSETCACHE_EMAIL=EMAIL)
    assert gone.stderr == (
        "assetcache: error: the payload: imageStart: 'start.png' is neither an existing file "
        f"(no such file in {scene}), an http(s) URL nor an assetRef\n"
    )


def test_a_ref_is_left_alone_and_other_failures_are_named_with_the_folders_ones(
    run: Callable[..., Any], scene: Path
) -> None:
    payload = {"imageStart": MY_REF, "imageEnd": "gone.png", "imageRef1": 7}
    (scene / "shots" / "mixed.json").write_text(json.dumps(payload))
    result = run("fill", "shots/mixed.json", "-e", EMAIL)
    assert result.exit_code == 4
    errors = result.stderr.splitlines()
    assert [e.split(": ")[3] for e in errors] == ["imageEnd", "imageRef1"]
    assert f"no such file in {scene} or {scene}/shots" in errors[0]


def test_the_python_error_names_the_folder(cache: AssetCache, tmp_path: Path) -> None:
    with pytest.raises(FillError) as info:
        cache.fill({"imageStart": "gone.png"}, email=EMAIL, base_dir=str(tmp_path))
    assert f"(no such file in {tmp_path})" in str(info.value.failures["imageStart"])
    with pytest.raises(FillError) as absolute:
        cache.fill({"imageStart": str(tmp_path / "gone.png")}, email=EMAIL)
    assert "(no such file)" in str(absolute.value.failures["imageStart"])
