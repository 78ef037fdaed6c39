"""The ledger's schema as names and SQL, importable without the ORM.

``models.py`` declares the same tables as SQLModel classes for Alembic; this module holds the
statements the running code executes. They live side by side, and ``tests/test_schema.py``
checks that every column named here exists in the models and that these queries return what
the ORM returns, so the two cannot drift.

Why plain SQL at run time: importing sqlmodel costs ~0.8 s, forty times a whole cache hit.

Times are stored in UTC as ``YYYY-MM-DD HH:MM:SS.ffffff`` (the format SQLAlchemy uses for a
SQLite DATETIME), so fixed-width strings sort and compare chronologically in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

# The stat cache's table and statements are its own (content/stat_cache.py, below the ledger);
# named here too, beside the ledger's other tables, for the models and the schema's tests.
from ..content.stat_cache import FILE_STAT_COLUMNS as FILE_STAT_COLUMNS
from ..content.stat_cache import FILE_STATS as FILE_STATS
from ..content.stat_cache import SELECT_STAT as SELECT_STAT
from ..content.stat_cache import UPSERT_STAT as UPSERT_STAT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

#: Alembic revisions in order; the last one is what this version of assetcache expects.
#: tests/test_migrations.py checks this against migrations/versions.
REVISIONS: Final = (
    "0001_initial",
    "0002_email_index",
    "0003_revoked_at",
    "0004_source_host",
    "0005_mirrored_at",
    "0006_unique_upload",
    "0007_upload_leases",
    "0008_mirror_machine_clock",
)
HEAD: Final = REVISIONS[-1]

UPLOADS: Final = "uploads"
UPLOAD_COLUMNS: Final = (
    "id",
    "sha256",
    "email",
    "asset_ref",
    "content_type",
    "size",
    "uploaded_at",
    "expires_at",
    "upload_id",
    "media_url",
    "source",
    "revoked_at",
    "host",
)
#: Columns only a machine's mirror of a shared ledger fills (never read, exported or imported).
MIRROR_ONLY_COLUMNS: Final = ("mirrored_at", "mirrored_ns")
#: A shared ledger's single-flight claims (see leases.py; PostgreSQL only at run time).
UPLOAD_LEASES: Final = "upload_leases"

_UPLOAD_SELECT: Final = f"SELECT {', '.join(UPLOAD_COLUMNS)} FROM {UPLOADS}"

# The newest-expiring credible row for a key, served by ix_uploads_key (sha256, email,
# expires_at): one index seek, whatever the size of the ledger. A row recorded while the clock
# ran ahead (uploaded after :now, or expiring after :latest = now + retention) would otherwise
# outrank every correct row by its later expiry; the bounds skip it (see Asset.state).
SELECT_NEWEST: Final = (
    f"{_UPLOAD_SELECT} WHERE sha256 = :sha256 AND email = :email "
    "AND expires_at <= :latest AND uploaded_at <= :now AND revoked_at IS NULL "
    "ORDER BY expires_at DESC, id DESC LIMIT 1"
)

INSERT_UPLOAD: Final = (
    f"INSERT INTO {UPLOADS} ({', '.join(UPLOAD_COLUMNS[1:])}) "
    f"VALUES ({', '.join(':' + c for c in UPLOAD_COLUMNS[1:])})"
)

# One row per upload (ux_uploads_upload). A ref the server hands out again for the same bytes
# takes the later upload's times; a recording retried after a commit whose acknowledgement was
# lost finds itself: no copy. A revocation stays: a forget made meanwhile (here or on another
# machine) is never undone by a write that only repeats what the server said.
RECORD_UPLOAD: Final = (
    f"{INSERT_UPLOAD} ON CONFLICT (asset_ref, sha256, email) DO UPDATE SET "
    "uploaded_at = excluded.uploaded_at, expires_at = excluded.expires_at, "
    "upload_id = excluded.upload_id, media_url = excluded.media_url "
    "RETURNING id, revoked_at"
)
# An import adds what is not held; concurrent imports of the same rows add each once.
MERGE_UPLOAD: Final = f"{INSERT_UPLOAD} ON CONFLICT (asset_ref, sha256, email) DO NOTHING"

UPDATE_SOURCE: Final = f"UPDATE {UPLOADS} SET source = :source, host = :host WHERE id = :id"

#: What makes a row of a shared ledger's machine file a spooled upload (see the spool below).
_SPOOLED: Final = " AND mirrored_at IS NULL"

# forget: the live rows of one content (sha256 and maybe email), or of one ref.
# The content case seeks ix_uploads_key, the ref case ux_uploads_upload (asset_ref leads it).
_NOT_REVOKED: Final = (
    f"{_UPLOAD_SELECT} WHERE revoked_at IS NULL AND expires_at > :now "
    "AND (:email IS NULL OR email = :email)"
)
SELECT_BY_CONTENT: Final = f"{_NOT_REVOKED} AND sha256 = :sha256 ORDER BY id"
SELECT_BY_REF: Final = f"{_NOT_REVOKED} AND asset_ref = :asset_ref ORDER BY id"
# The same, among the uploads a shared ledger's machine file holds in its spool (below).
SELECT_SPOOLED_BY_CONTENT: Final = SELECT_BY_CONTENT.replace(" ORDER BY", _SPOOLED + " ORDER BY")
SELECT_SPOOLED_BY_REF: Final = SELECT_BY_REF.replace(" ORDER BY", _SPOOLED + " ORDER BY")
REVOKE_UPLOAD: Final = f"UPDATE {UPLOADS} SET revoked_at = :revoked_at WHERE id = :id"

_ASSET_FILTERS: Final = {
    "email": "email = :email",
    "live_after": "expires_at > :live_after",
    "expires_until": "expires_at <= :expires_until",
    "spooled": _SPOOLED[len(" AND ") :],  # a shared ledger's machine file: its spool alone
}


def select_assets(*filters: str) -> str:
    """Listing with only the given filters (``email``, ``live_after``, ``expires_until``).

    Built per call rather than with ``(:x IS NULL OR ...)`` switches: those make SQLite scan
    the whole expiry index, while plain bounds let it seek to the range (3.7 s -> well under
    a second for ``ls --expiring-within 3d`` at a million rows). Ordered by expiry, which
    ix_uploads_expires_at serves without a sort.
    """
    where = " AND ".join(_ASSET_FILTERS[name] for name in filters)
    return f"{_UPLOAD_SELECT}{' WHERE ' + where if where else ''} ORDER BY expires_at, id"


# Pruning deletes in bounded batches of ids so that memory and lock time stay small however
# many rows match; each batch is its own short write transaction.
# Rows recorded while the clock ran ahead (Asset.state "future") go with every prune: they are
# no evidence of anything.
SELECT_PRUNE_BATCH: Final = (
    f"{_UPLOAD_SELECT} WHERE id > :after AND (:email IS NULL OR email = :email) "
    "AND ((:expired_before IS NOT NULL AND expires_at <= :expired_before) "
    "OR (:uploaded_before IS NOT NULL AND uploaded_at < :uploaded_before) "
    "OR uploaded_at > :now OR expires_at > :latest OR revoked_at IS NOT NULL) "
    "ORDER BY id LIMIT :limit"
)
DELETE_UPLOAD: Final = f"DELETE FROM {UPLOADS} WHERE id = :id"

# A shared ledger's machine file (see postgres.py) holds two kinds of rows beside its stat cache.
#
# The MIRROR: what the shared ledger answered for a key, each row stamped when its read began by
# two clocks: the wall clock (mirrored_at, the cache's clock) and this machine's clock since
# boot (mirrored_ns, _rules.machine_ns), which nobody sets. A mirrored row answers only while
# it was read within MIRROR_TTL by both (sqlite_file.mirror_window): neither a wall clock that
# ran ahead while it read (a stamp "in the future") nor one set back since can stretch that
# bound.
# The SPOOL: uploads paid for while the shared ledger could not record them
# (``mirrored_at IS NULL``: never read from the shared ledger), kept until a session can
# merge them in. They are this machine's knowledge, answers whether or not merged yet.
#
# What this machine knows of a key: the newest credible row, mirrored within the window or
# spooled.
SELECT_MIRRORED: Final = SELECT_NEWEST.replace(
    "AND revoked_at IS NULL",
    "AND revoked_at IS NULL AND (mirrored_at IS NULL OR (mirrored_at >= :seen_after "
    "AND mirrored_at <= :now AND mirrored_ns >= :seen_after_ns AND mirrored_ns <= :now_ns))",
)
# The spool's own candidate for a key, to weigh against the shared ledger's answer.
SELECT_SPOOLED_NEWEST: Final = SELECT_NEWEST.replace(
    "AND revoked_at IS NULL", "AND revoked_at IS NULL" + _SPOOLED
)
# A read replaces the key's mirrored rows unless the mirror holds a later read of it: one
# that began later by the machine clock (:seen_ns is when this read began; a stamp beyond the
# clock now was made before a reboot, and orders nothing). The wall clock orders nothing: a
# stamp it put "in the future" is no news, and gives way to the next answer read.
SELECT_MIRROR_NEWS: Final = (
    f"SELECT 1 FROM {UPLOADS} WHERE sha256 = :sha256 AND email = :email "
    "AND mirrored_ns > :seen_ns AND mirrored_ns <= :now_ns LIMIT 1"
)
# A read that found nothing keeps the key's mirrored rows as tombstones stamped with that read:
# never answers, they mark it as news for a slower read that began before it.
MARK_MIRRORED: Final = (
    f"UPDATE {UPLOADS} SET revoked_at = COALESCE(revoked_at, :mirrored_at), "
    "mirrored_at = :mirrored_at, mirrored_ns = :mirrored_ns "
    "WHERE sha256 = :sha256 AND email = :email AND mirrored_at IS NOT NULL"
)
DELETE_MIRRORED: Final = (
    f"DELETE FROM {UPLOADS} WHERE sha256 = :sha256 AND email = :email AND mirrored_at IS NOT NULL"
)
# A spooled row that the shared ledger now answers with is in it: it becomes mirrored. Unless
# it holds a revocation made here (a forget while it was spooled): that must reach the shared
# ledger, so it stays spooled for the merge to carry (the mirror skips it meanwhile).
INSERT_MIRRORED: Final = (
    f"INSERT INTO {UPLOADS} ({', '.join(UPLOAD_COLUMNS[1:] + MIRROR_ONLY_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in UPLOAD_COLUMNS[1:] + MIRROR_ONLY_COLUMNS)}) "
    "ON CONFLICT (asset_ref, sha256, email) DO UPDATE SET mirrored_at = excluded.mirrored_at, "
    "mirrored_ns = excluded.mirrored_ns, revoked_at = excluded.revoked_at "
    "WHERE uploads.revoked_at IS NULL"
)
SELECT_SPOOLED: Final = (
    f"{_UPLOAD_SELECT} WHERE mirrored_at IS NULL AND id > :after ORDER BY id LIMIT :limit"
)
# A merged upload leaves the spool only if its row is still that spooled upload, as merged:
# another process of the machine may have merged and deleted it since it was read, and SQLite
# gives a freed id to the next row (a newer spooled upload, merged nowhere yet); the mirror may
# have taken it over; a forget may have revoked it since (the next merge carries that).
UNSPOOL: Final = (
    f"DELETE FROM {UPLOADS} WHERE id = :id AND mirrored_at IS NULL AND asset_ref = :asset_ref "
    "AND sha256 = :sha256 AND email = :email AND uploaded_at = :uploaded_at "
    "AND revoked_at IS :revoked_at"
)

# Export streams the ledger in id order, a batch per read, so a huge ledger never sits in memory.
SELECT_EXPORT_BATCH: Final = (
    f"{_UPLOAD_SELECT} WHERE id > :after AND (:email IS NULL OR email = :email) "
    "AND (:live_after IS NULL OR expires_at > :live_after) ORDER BY id LIMIT :limit"
)
# Import is idempotent: an upload is the same one when its content, account and ref are; the
# (sha256, email) prefix of ix_uploads_key finds it in one seek. Its revoked_at tells whether an
# imported revocation is news.
SELECT_SAME_UPLOAD: Final = (
    f"SELECT id, revoked_at FROM {UPLOADS} WHERE sha256 = :sha256 AND email = :email "
    "AND asset_ref = :asset_ref LIMIT 1"
)


_STORED_LENGTH: Final = len("2026-01-01 00:00:00.000000")


def to_db_time(moment: datetime) -> str:
    """UTC storage string for an aware datetime (naive ones are refused: they are bugs)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: assetcache stores only timezone-aware times")
    # isoformat, not strftime: the same text for every year this library can meet (and always
    # four digits for the year, so text order is time order), at a fifth of the cost: every
    # hit formats two bounds.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def from_db_time(value: str | datetime) -> datetime:
    """The aware UTC datetime for a stored value."""
    if isinstance(value, str) and len(value) == _STORED_LENGTH:
        # Our own format, always UTC: parsing with the offset is 5x faster than
        # parsing and then replace(tzinfo=UTC), which matters when listing 50,000 rows.
        return datetime.fromisoformat(value + "+00:00")
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
