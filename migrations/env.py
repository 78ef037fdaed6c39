"""Alembic environment for the assetcache ledger.

assetcache runs migrations itself when a ledger is opened (see assetcache/ledger/migrate.py)
and hands over its connection in ``config.attributes["connection"]``.
Running ``alembic`` by hand against a ledger also works: set ``sqlalchemy.url`` on the command
line with ``-x url=sqlite:///path`` (or ``-x url=postgresql+psycopg://...``).
"""

from alembic import context
from sqlalchemy import create_engine

from assetcache.ledger.models import metadata

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
