"""file_search chunks: text, embedding and a keyword index per dialect.

SQLite: an FTS5 external-content table ``chunks_fts`` (rowid = ``chunks.pk``) kept in sync by
triggers. PostgreSQL: a stored generated column ``text_search`` =
``to_tsvector('english', text)`` with a GIN index (stored, so ranking does not re-parse texts).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from runstep.store.migrations.shapes import PK

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SQLITE_FTS = (
    "CREATE VIRTUAL TABLE chunks_fts USING fts5("
    "text, content='chunks', content_rowid='pk', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER chunks_fts_after_insert AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.pk, new.text); END",
    "CREATE TRIGGER chunks_fts_after_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.pk, old.text); END",
)
_POSTGRES_FTS = (
    "ALTER TABLE chunks ADD COLUMN text_search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_chunks_fts ON chunks USING gin (text_search)",
)


def upgrade() -> None:
    op.create_table(
        "chunks",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("chunk_index", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_chunks_store_file",
        "chunks",
        ["vector_store_id", "file_id", "chunk_index"],
        unique=True,
    )
    op.create_index("ix_chunks_file", "chunks", ["file_id"])
    op.create_table(
        "chunk_store_versions",
        sa.Column("vector_store_id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    statements = {"sqlite": _SQLITE_FTS, "postgresql": _POSTGRES_FTS}.get(dialect, ())
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS chunks_fts_after_delete")
        op.execute("DROP TRIGGER IF EXISTS chunks_fts_after_insert")
        op.execute("DROP TABLE IF EXISTS chunks_fts")
    op.drop_table("chunk_store_versions")
    op.drop_table("chunks")  # with text_search and ix_chunks_fts on PostgreSQL
