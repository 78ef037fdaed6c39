"""``-v``: logging to stderr, with the API token and the ledger URL's password masked."""

from __future__ import annotations

import logging
import os
import sys

from .. import _config
from ..ledger import pgurl


class _Redact(logging.Filter):
    """Defence in depth: even if the token, or a piece of the ledger URL's password, reached a
    log record (psycopg's debug lines name the host it tries, which holds the rest of a
    password with a raw "@"), it would be printed masked."""

    def __init__(self, db: str | None) -> None:
        super().__init__()
        location = _config.resolve_db(db)
        self._secrets = pgurl.Secrets(location) if pgurl.is_postgres(location) else None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        token = os.environ.get(_config.ENV_TOKEN)
        if token:
            masked = masked.replace(token, "***")
        if self._secrets is not None:
            masked = self._secrets.mask(masked)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(verbose: int, db: str | None) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_Redact(db))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    logging.getLogger("assetcache").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
