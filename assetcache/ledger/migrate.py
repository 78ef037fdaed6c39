"""Alembic on open, for any engine: where the revisions are, and the upgrade to head.

The revisions live in ``migrations/`` at the top of the repository (where Alembic users look for
them) and ship inside the wheel as ``assetcache/_migrations`` (pyproject's force-include). Each
engine first reads its ledger's revision with its own driver, and imports this module only when
the ledger is behind the code: a current ledger never pays for Alembic and SQLAlchemy (about a
second of CPU). The engine words any failure: the upgrade's errors propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import LedgerError


def migrations_dir() -> Path:
    """The Alembic script folder: inside the installed package, else the checkout's."""
    package = Path(__file__).resolve().parent.parent  # assetcache/
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise LedgerError("assetcache is installed without its migrations; reinstall it")


def upgrade_to_head(
    url: str,
    connect: Callable[[], Any],
    *,
    begin: str | None = None,
    first: tuple[str, dict[str, Any]] | None = None,
) -> None:
    """Apply every revision the database lacks, all in one transaction, on connections made by
    ``connect`` (the engine's own, so that its checks and settings hold; ``url`` only names the
    dialect). ``begin`` replaces the driver's BEGIN (SQLite: ``BEGIN IMMEDIATE``, so that the
    write lock is taken up front); ``first`` is a statement run first inside the transaction
    (PostgreSQL: the advisory lock that queues concurrent migrators)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, creator=connect, poolclass=NullPool)
    if begin is not None:

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    try:
        with engine.connect() as conn, conn.begin():
            if first is not None:
                statement, params = first
                conn.execute(text(statement), params)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()
