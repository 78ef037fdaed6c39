"""uploads.mirrored_ns: in a machine's local mirror of a shared ledger, this machine's clock
since boot (``_rules.machine_ns``) when the row was read from the shared ledger. Nobody sets
that clock, so it bounds how long the mirror trusts a row, and orders two reads of one key,
however the wall clock jumped meanwhile (``mirrored_at`` alone was the wall clock's word).
Always NULL in a ledger proper; rows mirrored before it are NULL too, so never answers again:
they are read from the shared ledger once more.

Revision ID: 0008_mirror_machine_clock
Revises: 0007_upload_leases
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_mirror_machine_clock"
down_revision = "0007_upload_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("mirrored_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("mirrored_ns")
