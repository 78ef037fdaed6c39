"""uploads.host: the machine a row's source path belongs to. A path means nothing on another
host: with a shared ledger, refresh and audit judge only this host's paths. NULL for rows
recorded before (they were recorded on the machine that kept the ledger).

Revision ID: 0004_source_host
Revises: 0003_revoked_at
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_source_host"
down_revision = "0003_revoked_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("host", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("host")
