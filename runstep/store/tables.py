"""The schema. Each API object is stored as its wire JSON in ``data``, beside the columns
that queries filter and order on. ``pk`` is a monotonic insertion order, so lists stay stable
for objects created within the same second."""

import sqlalchemy as sa

metadata = sa.MetaData()

# An auto-incrementing surrogate key: BIGINT identity on PostgreSQL, rowid on SQLite.
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _object_table(name: str, *columns: sa.Column, indexes: tuple[sa.Index, ...] = ()) -> sa.Table:
    """A table for one kind of API object, scoped by project."""
    return sa.Table(
        name,
        metadata,
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        *columns,
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        *indexes,
    )


projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
)

assistants = _object_table(
    "assistants", indexes=(sa.Index("ix_assistants_project", "project_id", "pk"),)
)

threads = _object_table("threads", indexes=(sa.Index("ix_threads_project", "project_id", "pk"),))

messages = _object_table(
    "messages",
    sa.Column("thread_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    indexes=(sa.Index("ix_messages_thread", "thread_id", "pk"),),
)

runs = _object_table(
    "runs",
    sa.Column("thread_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    # Execution state that is not part of the wire object.
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    indexes=(
        sa.Index("ix_runs_thread", "thread_id", "pk"),
        sa.Index("ix_runs_status", "status", "pk"),
    ),
)

run_steps = _object_table(
    "run_steps",
    sa.Column("thread_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    indexes=(sa.Index("ix_run_steps_run", "run_id", "pk"),),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

files = _object_table(
    "files",
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    indexes=(
        sa.Index("ix_files_project", "project_id", "pk"),
        sa.Index("ix_files_purpose", "project_id", "purpose", "pk"),
        sa.Index("ix_files_expires_at", "expires_at"),
    ),
)
