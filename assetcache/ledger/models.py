"""The ledger's tables as SQLModel classes: the schema Alembic revisions are checked against.

Nothing here is SQLite-specific, so the same models can back a PostgreSQL ledger later. The
running code does not import this module (see ``schema.py`` for why and for the queries).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, Dialect, Index
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from . import schema


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC; naive datetimes are refused, not guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: assetcache stores only timezone-aware times")
        utc = value.astimezone(UTC)
        # SQLite has no time zones: store the UTC wall time (see schema.to_db_time).
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else schema.from_db_time(value)


class UploadRow(SQLModel, table=True):
    """One successful upload (an upload is one row: the index ``ux_uploads_upload``). Rows are
    never updated except ``source`` and ``revoked_at``; history is kept."""

    __tablename__: ClassVar[str] = schema.UPLOADS
    __table_args__ = (
        Index("ix_uploads_key", "sha256", "email", "expires_at"),
        Index("ix_uploads_expires_at", "expires_at"),
        Index("ix_uploads_uploaded_at", "uploaded_at"),
        Index("ix_uploads_email_expires_at", "email", "expires_at"),
        Index("ux_uploads_upload", "asset_ref", "sha256", "email", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64)
    email: str = Field(max_length=254)
    asset_ref: str
    content_type: str = Field(max_length=32)
    size: int
    uploaded_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    upload_id: str
    media_url: str
    source: str | None = None
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    host: str | None = Field(default=None, max_length=255)
    #: Only in a machine's mirror of a shared ledger: when the row was last read from it.
    mirrored_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: Only in a machine's mirror: this machine's clock since boot (ns) at that read.
    mirrored_ns: int | None = Field(default=None, sa_type=BigInteger)


class FileStatRow(SQLModel, table=True):
    """What a file looked like when it was hashed, so an unchanged file is not hashed again."""

    __tablename__: ClassVar[str] = schema.FILE_STATS

    path: str = Field(primary_key=True)
    device: int = Field(sa_type=BigInteger)
    inode: int = Field(sa_type=BigInteger)
    size: int = Field(sa_type=BigInteger)
    mtime_ns: int = Field(sa_type=BigInteger)
    ctime_ns: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    recorded_ns: int = Field(sa_type=BigInteger)


class UploadLeaseRow(SQLModel, table=True):
    """A claim on one (content, account) key while its upload runs (a shared ledger's single
    flight): who holds it, and until when on the server's clock. See ``leases.py``."""

    __tablename__: ClassVar[str] = schema.UPLOAD_LEASES

    sha256: str = Field(max_length=64, primary_key=True)
    email: str = Field(max_length=254, primary_key=True)
    holder: str = Field(max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime)


metadata = SQLModel.metadata
