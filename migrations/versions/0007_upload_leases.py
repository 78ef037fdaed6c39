"""upload_leases: single flight across machines as rows, not as session state.

A resolver about to upload claims its (content, account) key by inserting a row here with an
expiry on the server's clock, renews it while the upload runs, and deletes it in the same
transaction that records the upload. A row whose expiry has passed may be taken over. Unlike a
session advisory lock, a lease is plain data: it works through a transaction-pooling PgBouncer,
costs no session while another machine waits for it, and says who holds it. Unused (but
present, so both engines stay at one head) in a SQLite ledger, whose single flight is local.

Revision ID: 0007_upload_leases
Revises: 0006_unique_upload
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_upload_leases"
down_revision = "0006_unique_upload"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_leases",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "email"),
    )


def downgrade() -> None:
    op.drop_table("upload_leases")
