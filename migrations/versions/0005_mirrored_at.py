"""uploads.mirrored_at: in a machine's local mirror of a shared ledger, when the row was last
read from the shared ledger (the mirror trusts it only for a bounded time). Always NULL in a
ledger proper.

Revision ID: 0005_mirrored_at
Revises: 0004_source_host
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_mirrored_at"
down_revision = "0004_source_host"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("mirrored_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("mirrored_at")
