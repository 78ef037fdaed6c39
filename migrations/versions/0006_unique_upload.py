"""uploads: one row per upload, (asset_ref, sha256, email) unique.

An import run twice at once on a shared ledger (or a recording retried after the server
committed it but the acknowledgement was lost) could insert the same upload twice. The unique
index makes "the same upload" a fact the database enforces; writers use ON CONFLICT. Copies
already present are folded into the oldest row first, keeping a revocation if any copy had one.
asset_ref leads the index, so ``forget REF`` seeks it too.

Revision ID: 0006_unique_upload
Revises: 0005_mirrored_at
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_unique_upload"
down_revision = "0005_mirrored_at"
branch_labels = None
depends_on = None

# Correlated on (sha256, email) first, so both engines seek ix_uploads_key instead of scanning.
_SAME_UPLOAD = (
    "d.sha256 = uploads.sha256 AND d.email = uploads.email AND d.asset_ref = uploads.asset_ref"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Writers of an older assetcache keep inserting while this runs: hold them until the
        # index exists, or a copy slipped in between the fold and the index fails the upgrade.
        # (SQLite's migration already runs inside BEGIN IMMEDIATE.)
        op.execute(sa.text("LOCK TABLE uploads IN SHARE ROW EXCLUSIVE MODE"))
    op.execute(
        sa.text(
            "UPDATE uploads SET revoked_at = "
            f"(SELECT MIN(d.revoked_at) FROM uploads d WHERE {_SAME_UPLOAD}) "
            "WHERE revoked_at IS NULL AND EXISTS "
            f"(SELECT 1 FROM uploads d WHERE {_SAME_UPLOAD} AND d.revoked_at IS NOT NULL)"
        )
    )
    op.execute(
        sa.text(
            "DELETE FROM uploads WHERE EXISTS "
            f"(SELECT 1 FROM uploads d WHERE {_SAME_UPLOAD} AND d.id < uploads.id)"
        )
    )
    op.create_index(
        "ux_uploads_upload", "uploads", ["asset_ref", "sha256", "email"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_uploads_upload", table_name="uploads")
