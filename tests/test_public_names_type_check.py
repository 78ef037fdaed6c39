"""Type checkers see the lazy package's public names with their types, and only those: a typo
is an error, not an attribute of type ``object`` (the PEP 562 ``__getattr__`` is hidden)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_knows_each_public_name_and_no_other(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(
        textwrap.dedent(
            """
            import assetcache
            from assetcache import AssetCache

            reveal_type(assetcache.AssetCache)
            reveal_type(assetcache.RETENTION)
            assetcache.AsetCache
            """
        )
    )
    out, _, _ = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(script)]
    )
    assert "assetcache._cache.AssetCache" in out and "datetime.timedelta" in out, out
    assert 'Module has no attribute "AsetCache"' in out, out
