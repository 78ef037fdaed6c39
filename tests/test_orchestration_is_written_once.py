"""The batch methods are written once (assetcache._orchestration, _fill) and driven by each
cache: the two drivers must give the same answers, and the synchronous one must stay free of
asyncio (the sync cache's batches run on threads, and its hit imports nothing heavy)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from assetcache import AssetCache, _orchestration
from assetcache._errors import InvalidImageError
from assetcache._orchestration import Blocking, Resolve, ResolveEach, Step

from .conftest import EMAIL, TOKEN, FakeLuma, png, write

ROOT = str(Path(__file__).resolve().parent.parent)


def _answer(step: Step) -> Any:
    """A fake cache: a resolve of b"bad" fails, any other gives back its source."""
    if isinstance(step, Blocking):
        return step.work()
    if isinstance(step, Resolve):
        return InvalidImageError("bad") if step.source == b"bad" else step.source
    assert isinstance(step, ResolveEach)
    return [step.finished(i, _answer(order)) for i, order in enumerate(step.orders)]


async def _answer_later(step: Step) -> Any:
    await asyncio.sleep(0)
    return _answer(step)


def test_both_drivers_give_the_same_answers() -> None:
    def drive(run: Any) -> tuple[list[Any], list[int]]:
        finished: list[int] = []
        steps = _orchestration.resolve_many(
            [b"a", b"bad", b"c"], email=EMAIL, jobs=2, on_result=lambda i, _: finished.append(i)
        )
        return run(steps), finished

    sync = drive(lambda steps: _orchestration.run(steps, _answer))
    aio = drive(lambda steps: asyncio.run(_orchestration.run_async(steps, _answer_later)))
    assert [type(o) for o in sync[0]] == [type(o) for o in aio[0]]
    assert [type(o) for o in sync[0]] == [bytes, InvalidImageError, bytes]
    assert sync[1] == aio[1] == [0, 1, 2]


def test_bad_arguments_raise_before_any_step() -> None:
    with pytest.raises(ValueError, match="jobs"):
        _orchestration.run(_orchestration.resolve_many([b"a"], email=EMAIL, jobs=0), _answer)


@pytest.mark.slow
def test_sync_batches_import_no_asyncio(tmp_path: Path, luma: FakeLuma) -> None:
    """resolve_many, fill_many and refresh of AssetCache over a warm ledger: no asyncio."""
    db, frame = tmp_path / "ledger.db", write(tmp_path / "a.png", png("a"))
    with AssetCache(token=TOKEN, db=db, transport=luma.transport) as cache:
        cache.resolve(frame, email=EMAIL)
    script = f"""
import sys
from assetcache import AssetCache
with AssetCache(db={str(db)!r}) as cache:
    outcomes = cache.resolve_many([{str(frame)!r}] * 3, email={EMAIL!r}, jobs=2)
    assert all(o.reused for o in outcomes), outcomes
    (filled,) = cache.fill_many([{{"imageStart": {str(frame)!r}}}], email={EMAIL!r})
    assert isinstance(filled, dict), filled
    cache.refresh(dry_run=True)
print("asyncio" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
    env["PYTHONPATH"] = ROOT
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]
