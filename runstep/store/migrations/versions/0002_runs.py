"""Runs, run steps and the per-run event log.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from runstep.store.migrations.shapes import object_columns

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        *object_columns(
            sa.Column("thread_id", sa.String(64), nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("options", sa.JSON, nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=True),
            sa.Column("lease_owner", sa.String(64), nullable=True),
            sa.Column("lease_expires_at", sa.Float, nullable=True),
            sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
        ),
    )
    op.create_index("ix_runs_thread", "runs", ["thread_id", "pk"])
    op.create_index("ix_runs_status", "runs", ["status", "pk"])
    op.create_table(
        "run_steps",
        *object_columns(
            sa.Column("thread_id", sa.String(64), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
        ),
    )
    op.create_index("ix_run_steps_run", "run_steps", ["run_id", "pk"])
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("run_events", "run_steps", "runs"):
        op.drop_table(table)
