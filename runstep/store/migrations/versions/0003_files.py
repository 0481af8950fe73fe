"""Uploaded files (their bytes live in blob storage, keyed by file id).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from runstep.store.migrations.shapes import object_columns

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        *object_columns(
            sa.Column("purpose", sa.String(32), nullable=False),
            sa.Column("bytes", sa.BigInteger, nullable=False),
            sa.Column("filename", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=True),
        ),
    )
    op.create_index("ix_files_project", "files", ["project_id", "pk"])
    op.create_index("ix_files_purpose", "files", ["project_id", "purpose", "pk"])
    op.create_index("ix_files_expires_at", "files", ["expires_at"])


def downgrade() -> None:
    op.drop_table("files")
