"""Vector stores, their files (leased for ingestion) and file batches.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from runstep.store.migrations.shapes import PK, object_columns

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_stores",
        *object_columns(
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=True),
        ),
    )
    op.create_index("ix_vector_stores_project", "vector_stores", ["project_id", "pk"])
    op.create_index("ix_vector_stores_expires_at", "vector_stores", ["expires_at"])
    op.create_table(
        "vector_store_files",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("usage_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index(
        "ux_vector_store_files_store_file",
        "vector_store_files",
        ["vector_store_id", "id"],
        unique=True,
    )
    op.create_index("ix_vector_store_files_store", "vector_store_files", ["vector_store_id", "pk"])
    op.create_index("ix_vector_store_files_batch", "vector_store_files", ["batch_id", "pk"])
    op.create_index("ix_vector_store_files_file", "vector_store_files", ["project_id", "id"])
    op.create_index("ix_vector_store_files_status", "vector_store_files", ["status", "pk"])
    op.create_table(
        "vector_store_file_batches",
        *object_columns(sa.Column("vector_store_id", sa.String(64), nullable=False)),
    )
    op.create_index(
        "ix_vector_store_file_batches_store",
        "vector_store_file_batches",
        ["vector_store_id", "pk"],
    )


def downgrade() -> None:
    for table in ("vector_store_file_batches", "vector_store_files", "vector_stores"):
        op.drop_table(table)
