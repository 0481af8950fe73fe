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

# A project's own key for one upstream provider, sealed (AES-GCM, bound to the project and
# the provider) with RUNSTEP_SECRET_KEY: runstep/services/upstream_keys.py.
upstream_keys = sa.Table(
    "upstream_keys",
    metadata,
    sa.Column("project_id", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# What each process (``owner``: its instance id) saw of each provider, written when that changes
# (a failure, or the first success after failures): runstep/services/provider_health.py.
provider_health = sa.Table(
    "provider_health",
    metadata,
    sa.Column("owner", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("failures_in_a_row", sa.Integer, nullable=False),
    sa.Column("last_error", sa.String(16), nullable=True),
    sa.Column("last_failure_at", sa.BigInteger, nullable=True),
    sa.Column("last_success_at", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_provider_health_updated", "updated_at"),
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
    # Claims by workers since the lease was last given up cleanly (runstep/runs/executor.py).
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
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

vector_stores = _object_table(
    "vector_stores",
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    indexes=(
        sa.Index("ix_vector_stores_project", "project_id", "pk"),
        sa.Index("ix_vector_stores_expires_at", "expires_at"),
    ),
)

# One row per (vector store, file): ``id`` is the file's id, unique within its store only.
# Ingestion is leased like runs: a worker claims an ``in_progress`` row whose lease is free.
vector_store_files = sa.Table(
    "vector_store_files",
    metadata,
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
    sa.Index("ux_vector_store_files_store_file", "vector_store_id", "id", unique=True),
    sa.Index("ix_vector_store_files_store", "vector_store_id", "pk"),
    sa.Index("ix_vector_store_files_batch", "batch_id", "pk"),
    sa.Index("ix_vector_store_files_file", "project_id", "id"),
    sa.Index("ix_vector_store_files_status", "status", "pk"),
)

vector_store_file_batches = _object_table(
    "vector_store_file_batches",
    sa.Column("vector_store_id", sa.String(64), nullable=False),
    indexes=(sa.Index("ix_vector_store_file_batches_store", "vector_store_id", "pk"),),
)

# --- file_search chunks ------------------------------------------------------------------

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("pk", PK, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("vector_store_id", sa.String(64), nullable=False),
    sa.Column("file_id", sa.String(64), nullable=False),
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    # float32 little-endian bytes of the L2-normalized embedding.
    sa.Column("embedding", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # Unique: a (store, file) is re-ingested by deleting its chunks first. Serves (vector_store_id).
    sa.Index("ux_chunks_store_file", "vector_store_id", "file_id", "chunk_index", unique=True),
    sa.Index("ix_chunks_file", "file_id"),
)

chunk_store_versions = sa.Table(
    "chunk_store_versions",
    metadata,
    # A random token replaced by every change to a store's chunks (no row: no chunks). Search
    # caches a store's vectors in process memory under this token, so a change made by any
    # process invalidates every process's cache.
    sa.Column("vector_store_id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# Keyword-search objects that exist on one dialect only, so they cannot be part of the
# dialect-neutral ``metadata``: created by migration 0004 with raw SQL.
SQLITE_FTS_TABLE = "chunks_fts"
"""SQLite: FTS5 external-content table over ``chunks.text`` (rowid = ``chunks.pk``), kept in
sync by triggers (``SQLITE_FTS_TRIGGERS``). FTS5 adds the shadow tables
``chunks_fts_{data,idx,docsize,config}``."""
SQLITE_FTS_SHADOW_TABLES = frozenset(
    f"{SQLITE_FTS_TABLE}{suffix}" for suffix in ("", "_data", "_idx", "_docsize", "_config")
)
SQLITE_FTS_TRIGGERS = frozenset({"chunks_fts_after_insert", "chunks_fts_after_delete"})
POSTGRES_FTS_COLUMN = "text_search"
"""PostgreSQL: ``chunks.text_search tsvector GENERATED ALWAYS AS (to_tsvector('english', text))
STORED``, so that ranking reads stored vectors instead of re-parsing every matching text."""
POSTGRES_FTS_INDEX = "ix_chunks_fts"
"""PostgreSQL: GIN index on ``chunks.text_search``."""
POSTGRES_FTS_CONFIG = "english"


def _register_autogenerate_hook() -> None:
    """Teach Alembic's autogenerate about the dialect-specific keyword-search objects.

    Alembic reports objects that are in the database but not in ``metadata`` as to be dropped
    (the FTS5 tables on SQLite, the ``text_search`` column and its GIN index on PostgreSQL).
    This comparator (the documented ``alembic.autogenerate.comparators`` extension point; it
    runs after the built-in table comparison) removes exactly those named objects from the
    diff and, the other way round, reports them as missing when the ``chunks`` table exists
    without them.
    So ``alembic revision --autogenerate`` never proposes dropping them, and the schema check
    still fails if a migration forgets them.
    """
    try:
        from alembic.autogenerate import comparators
        from alembic.operations import ops
        from alembic.util import DispatchPriority, PriorityDispatchResult
    except ImportError:  # pragma: no cover - alembic is a dependency, but keep tables importable
        return

    def compare_search_objects(autogen_context, upgrade_ops, schemas):  # type: ignore[no-untyped-def]
        dialect = autogen_context.dialect.name
        if None not in schemas or dialect not in ("sqlite", "postgresql"):
            return PriorityDispatchResult.CONTINUE
        inspector = autogen_context.inspector
        if "chunks" not in inspector.get_table_names():
            return PriorityDispatchResult.CONTINUE
        kept = []
        for op in upgrade_ops.ops:
            if (
                dialect == "sqlite"
                and isinstance(op, ops.DropTableOp)
                and op.schema is None
                and op.table_name in SQLITE_FTS_SHADOW_TABLES
            ):
                continue
            if (
                dialect == "postgresql"
                and isinstance(op, ops.ModifyTableOps)
                and op.table_name == "chunks"
                and op.schema is None
            ):
                op.ops = [
                    sub
                    for sub in op.ops
                    if not (
                        (isinstance(sub, ops.DropIndexOp) and sub.index_name == POSTGRES_FTS_INDEX)
                        or (
                            isinstance(sub, ops.DropColumnOp)
                            and sub.column_name == POSTGRES_FTS_COLUMN
                        )
                    )
                ]
                if not op.ops:
                    continue
            kept.append(op)
        upgrade_ops.ops[:] = kept

        bind = autogen_context.connection
        if dialect == "sqlite":
            names = set(
                bind.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')"
                ).scalars()
            )
            if not {SQLITE_FTS_TABLE, *SQLITE_FTS_TRIGGERS} <= names:
                fts = sa.Table(SQLITE_FTS_TABLE, sa.MetaData(), sa.Column("text", sa.Text))
                upgrade_ops.ops.append(ops.CreateTableOp.from_table(fts))
        else:
            from sqlalchemy.dialects.postgresql import TSVECTOR

            columns = {column["name"] for column in inspector.get_columns("chunks")}
            indexes = {index["name"] for index in inspector.get_indexes("chunks")}
            missing = []
            column = sa.Column(
                POSTGRES_FTS_COLUMN,
                TSVECTOR,
                sa.Computed(f"to_tsvector('{POSTGRES_FTS_CONFIG}', text)", persisted=True),
            )
            table = sa.Table("chunks", sa.MetaData(), sa.Column("text", sa.Text), column)
            if POSTGRES_FTS_COLUMN not in columns:
                missing.append(ops.AddColumnOp.from_column_and_tablename(None, "chunks", column))
            if POSTGRES_FTS_INDEX not in indexes:
                index = sa.Index(POSTGRES_FTS_INDEX, column, postgresql_using="gin", _table=table)
                missing.append(ops.CreateIndexOp.from_index(index))
            if missing:
                upgrade_ops.ops.append(ops.ModifyTableOps("chunks", missing))
        return PriorityDispatchResult.CONTINUE

    comparators.dispatch_for("schema", priority=DispatchPriority.LAST)(compare_search_objects)


_register_autogenerate_hook()
