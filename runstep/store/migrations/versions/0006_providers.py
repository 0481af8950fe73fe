"""Projects' own upstream keys (sealed at rest), and providers' health as each process saw it.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_keys",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "provider_health",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("failures_in_a_row", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(16), nullable=True),
        sa.Column("last_failure_at", sa.BigInteger, nullable=True),
        sa.Column("last_success_at", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_provider_health_updated", "provider_health", ["updated_at"])


def downgrade() -> None:
    op.drop_table("provider_health")
    op.drop_table("upstream_keys")
