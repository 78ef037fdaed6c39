"""Every code block in README.md runs as written (issue #19): a reader who copies one gets what
it says, not a NameError.

- ```python blocks run in a fresh interpreter, in a folder holding the image files they name,
  with USEAPI_TOKEN, ASSETCACHE_BASE_URL and ASSETCACHE_DB pointing at a local emulator and a
  private ledger (the real user dir and the internet are never touched). A block that defines
  ``test_*`` functions is a pytest example: it runs under pytest.
- ```sh blocks run under ``bash -euo pipefail`` the same way, with the installed console script
  on PATH (and an old ledger at ``~/old.db``, which the export example moves).
- ```ini blocks are configuration files: they must parse.
- A block that cannot run here says why, in an HTML comment on the line before it
  (``<!-- not run: installs from the network -->``); a block with neither fails this test, so a
  new example is run from the day it is written.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from assetcache import AssetCache, Emulator
from assetcache._demo import sample_png

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"
EMAIL = "me@example.com"
#: The image files the README's examples name, as a reader would have them.
IMAGES = ("frame.png", "end.png", "start.png", "keyframe.png")
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<why>[^>]*?)\s*-->")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    info: str
    code: str
    not_run: str | None  # why, if the README says it cannot run here

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.info}"


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[number])
        if fence is None or not fence.group(1):
            number += 1
            continue
        end = next(i for i in range(number + 1, len(lines)) if lines[i].startswith("```"))
        before = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        reason = _NOT_RUN.search(before)
        code = "\n".join(lines[number + 1 : end]) + "\n"
        blocks.append(Block(number + 1, fence.group(1), code, reason and reason.group("why")))
        number = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_examples_and_every_one_is_run_or_says_why_not() -> None:
    assert len([b for b in BLOCKS if b.info == "python"]) >= 3
    for block in BLOCKS:
        assert block.info in {"python", "sh", "ini"}, f"{block.name}: unknown kind of block"
        assert block.not_run is None or block.not_run.strip(), f"{block.name}: say why not"


def _environment(home: Path, emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSETCACHE_", "USEAPI_"))}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "config"),
        USEAPI_TOKEN=emu.token,
        ASSETCACHE_BASE_URL=emu.base_url,
        ASSETCACHE_DB=str(home / "ledger.db"),
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
        NO_COLOR="1",
    )
    return env


def _run(block: Block, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if block.info == "python" and re.search(r"^def test_", block.code, re.MULTILINE):
        (folder / "test_readme_example.py").write_text(block.code, encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_readme_example.py",
        ]
    elif block.info == "python":
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    return subprocess.run(
        command,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _id(block: Block) -> str:
    return f"line{block.line}-{block.info}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.info in {"python", "sh"}], ids=_id)
def test_a_readme_example_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"the README says it cannot run here: {block.not_run}")
    home, folder = tmp_path / "home", tmp_path / "work"
    home.mkdir(mode=0o700)
    folder.mkdir()
    for number, name in enumerate(IMAGES):
        (folder / name).write_bytes(sample_png(16, 16, (number * 60, 90, 200)))
    with Emulator(accounts=[EMAIL]) as emu:
        # The reader's old ledger (the export example moves it).
        with AssetCache(db=home / "old.db", token=emu.token, base_url=emu.base_url) as old:
            old.resolve(folder / "keyframe.png", email=EMAIL)
        done = _run(block, folder, _environment(home, emu))
    assert done.returncode == 0, f"{block.name} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.info == "ini"], ids=_id)
def test_a_readme_configuration_file_parses(block: Block) -> None:
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(block.code)
    assert parsed.sections()
