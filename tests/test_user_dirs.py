"""The user data and cache dirs: assetcache spells out the plain XDG cases (so that a cache hit
never imports platformdirs) and must agree with platformdirs on every case."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    {},  # neither variable: under HOME
    {"XDG_DATA_HOME": "/srv/data", "XDG_CACHE_HOME": "/srv/cache"},
    {"XDG_DATA_HOME": "/srv/data/", "XDG_CACHE_HOME": "  /srv/cache"},  # not absolute as given
    {"XDG_DATA_HOME": "/srv/data  ", "XDG_CACHE_HOME": "/srv//cache"},
    {"XDG_DATA_HOME": "", "XDG_CACHE_HOME": "   "},  # blank: as if unset
    {"XDG_DATA_HOME": "relative/data", "XDG_CACHE_HOME": "relative"},  # invalid: ignored
    {"HOME": "/"},
    {"HOME": "/home/ann/"},
    {"HOME": "relative-home"},
]

PROBE = """
import json, platformdirs
from assetcache import _config
print(json.dumps([
    [_config.user_dir(), platformdirs.user_data_dir("assetcache", appauthor=False)],
    [_config.cache_dir(), platformdirs.user_cache_dir("assetcache", appauthor=False)],
]))
"""


@pytest.mark.parametrize("env", CASES, ids=lambda env: repr(env) or "defaults")
def test_assetcache_and_platformdirs_agree(env: dict[str, str], tmp_path: object) -> None:
    import json
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    base.update(env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=base, cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    for ours, theirs in json.loads(result.stdout):
        assert ours == theirs


def test_the_plain_cases_never_import_platformdirs() -> None:
    code = "import sys; from assetcache import _config; _config.user_dir(); _config.cache_dir(); "
    code += "print('platformdirs' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
