"""uploads.revoked_at: when a ref was found dead before its time (``forget``); NULL while it is
trusted. Revoked rows are kept as history, never answers; prune removes them.

Revision ID: 0003_revoked_at
Revises: 0002_email_index
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_revoked_at"
down_revision = "0002_email_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column with no default: SQLite and PostgreSQL both add it in place, without
    # rewriting the table (batch mode is not needed).
    op.add_column("uploads", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("revoked_at")
