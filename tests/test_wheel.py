"""Build the real wheel, install it into a fresh venv, and open a new ledger from outside the
source tree: proves the migrations ship inside the wheel. Offline: the wheel is built without
build isolation, and the venv borrows the test environment's dependencies through a .pth."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("assetcache-*.whl")
    return built


def test_wheel_contains_migrations(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "assetcache/_migrations/env.py" in names
    assert any(n.startswith("assetcache/_migrations/versions/0001_") for n in names)
    assert "assetcache/py.typed" in names
    assert {"assetcache/report/page.js", "assetcache/report/page.css"} <= set(names)
    assert not any(n.startswith("tests/") for n in names)


@pytest.mark.slow
def test_installed_wheel_opens_a_new_ledger(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Dependencies come from the test environment, *after* the venv's own site-packages.
    Path(site, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = textwrap.dedent(
        """
        import sqlite3, sys, assetcache
        from assetcache import AssetCache
        from assetcache.ledger.migrate import migrations_dir
        assert assetcache.__file__.startswith(sys.prefix), assetcache.__file__
        assert str(migrations_dir()).startswith(sys.prefix), migrations_dir()
        with AssetCache(db="ledger.db") as cache:
            assert cache.assets() == []
        print(sqlite3.connect("ledger.db").execute("select version_num from alembic_version").fetchone()[0])
        """
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [str(python), "-c", script], cwd=outside, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    from assetcache.ledger.schema import HEAD

    assert run.stdout.strip() == HEAD
    cli = subprocess.run(
        [str(env_dir / "bin" / "assetcache"), "--db", str(outside / "cli.db"), "path"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert str(outside / "cli.db") in cli.stdout
