"""Projects, API keys, assistants, threads and messages.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from runstep.store.migrations.shapes import object_columns

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table("assistants", *object_columns())
    op.create_index("ix_assistants_project", "assistants", ["project_id", "pk"])
    op.create_table("threads", *object_columns())
    op.create_index("ix_threads_project", "threads", ["project_id", "pk"])
    op.create_table(
        "messages",
        *object_columns(
            sa.Column("thread_id", sa.String(64), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=True),
        ),
    )
    op.create_index("ix_messages_thread", "messages", ["thread_id", "pk"])


def downgrade() -> None:
    for table in ("messages", "threads", "assistants", "api_keys", "projects"):
        op.drop_table(table)
