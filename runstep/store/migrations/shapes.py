"""Column shapes the migrations share; frozen, like the migrations themselves."""

import sqlalchemy as sa

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def object_columns(*extra: sa.Column) -> list[sa.Column]:
    """The columns of an API object table, with ``extra`` before ``created_at`` and ``data``."""
    return [
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        *extra,
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    ]
