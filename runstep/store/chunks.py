"""SQL for file_search chunks: insert/delete, per-store versions, vector loads and keyword search.

The search logic (ranking, fusion, caching) lives in ``runstep.tools.file_search.index``.

Keyword search is dialect-specific (see migration 0004):

- SQLite: the FTS5 table ``chunks_fts`` (porter stemming), kept in sync with ``chunks`` by
  triggers, ranked by ``bm25()``.
- PostgreSQL: ``text_search @@ query``, where ``text_search`` is a stored generated column
  ``to_tsvector('english', text)`` with the GIN index ``ix_chunks_fts``, ranked by
  ``ts_rank_cd``.

Queries arrive here as a list of plain terms (see ``index.keyword_terms``); each is bound as a
parameter (PostgreSQL) or quoted as an FTS5 string (SQLite), and the terms are OR-ed, so no user
text is ever parsed as query syntax.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.store.tables import (
    POSTGRES_FTS_COLUMN,
    POSTGRES_FTS_CONFIG,
    chunk_store_versions,
    chunks,
)

_INSERT_BATCH = 500


@dataclass(frozen=True)
class ChunkRow:
    """One chunk as stored (``embedding``: float32 little-endian bytes)."""

    vector_store_id: str
    file_id: str
    chunk_index: int
    text: str
    embedding: bytes


@dataclass(frozen=True)
class KeywordMatch:
    pk: int
    vector_store_id: str
    file_id: str
    chunk_index: int


async def insert_chunks(conn: AsyncConnection, project_id: str, rows: Sequence[ChunkRow]) -> None:
    """Insert chunks and renew the version of every store they belong to."""
    if not rows:
        return
    created_at = int(time.time())
    values = [
        {
            "project_id": project_id,
            "vector_store_id": row.vector_store_id,
            "file_id": row.file_id,
            "chunk_index": row.chunk_index,
            "text": row.text,
            "embedding": row.embedding,
            "created_at": created_at,
        }
        for row in rows
    ]
    for begin in range(0, len(values), _INSERT_BATCH):
        await conn.execute(chunks.insert(), values[begin : begin + _INSERT_BATCH])
    await renew_versions(conn, project_id, {row.vector_store_id for row in rows})


async def renew_versions(conn: AsyncConnection, project_id: str, store_ids: Iterable[str]) -> None:
    """Give each store a new random version token (in sorted order: no lock-order deadlocks)."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for store_id in sorted(set(store_ids)):
        statement = dialect_insert(chunk_store_versions).values(
            vector_store_id=store_id, project_id=project_id, version=secrets.randbits(62)
        )
        statement = statement.on_conflict_do_update(
            index_elements=[chunk_store_versions.c.vector_store_id],
            set_={"version": statement.excluded.version},
        )
        await conn.execute(statement)


async def delete_file_chunks(
    conn: AsyncConnection, project_id: str, vector_store_id: str | None, file_id: str
) -> tuple[int, set[str]]:
    """Delete a file's chunks from one store (or every store): the count and the stores hit."""
    where = [chunks.c.project_id == project_id, chunks.c.file_id == file_id]
    if vector_store_id is not None:
        where.append(chunks.c.vector_store_id == vector_store_id)
    stores = set(
        (await conn.execute(sa.select(chunks.c.vector_store_id).where(*where).distinct()))
        .scalars()
        .all()
    )
    if not stores:
        return 0, set()
    result = await conn.execute(chunks.delete().where(*where))
    await renew_versions(conn, project_id, stores)
    return result.rowcount, stores


async def delete_store_chunks(conn: AsyncConnection, project_id: str, vector_store_id: str) -> int:
    """Delete every chunk of a store, and its version row."""
    result = await conn.execute(
        chunks.delete().where(
            chunks.c.project_id == project_id, chunks.c.vector_store_id == vector_store_id
        )
    )
    await conn.execute(
        chunk_store_versions.delete().where(
            chunk_store_versions.c.project_id == project_id,
            chunk_store_versions.c.vector_store_id == vector_store_id,
        )
    )
    return result.rowcount


async def store_versions(
    conn: AsyncConnection, project_id: str, store_ids: Collection[str]
) -> dict[str, int]:
    """The current version token of each store that has chunks (others are absent)."""
    if not store_ids:
        return {}
    result = await conn.execute(
        sa.select(chunk_store_versions.c.vector_store_id, chunk_store_versions.c.version).where(
            chunk_store_versions.c.project_id == project_id,
            chunk_store_versions.c.vector_store_id.in_(list(store_ids)),
        )
    )
    return {store_id: version for store_id, version in result.all()}


async def load_store_vectors(
    conn: AsyncConnection, project_id: str, vector_store_id: str
) -> list[tuple[int, str, int, bytes]]:
    """``(pk, file_id, chunk_index, embedding)`` of every chunk of a store, by pk."""
    result = await conn.execute(
        sa.select(chunks.c.pk, chunks.c.file_id, chunks.c.chunk_index, chunks.c.embedding)
        .where(chunks.c.project_id == project_id, chunks.c.vector_store_id == vector_store_id)
        .order_by(chunks.c.pk)
    )
    return [(pk, file_id, index, bytes(blob)) for pk, file_id, index, blob in result.all()]


async def chunk_texts(conn: AsyncConnection, pks: Collection[int]) -> dict[int, str]:
    """The text of each chunk still present among ``pks``."""
    if not pks:
        return {}
    result = await conn.execute(
        sa.select(chunks.c.pk, chunks.c.text).where(chunks.c.pk.in_(list(pks)))
    )
    return dict(result.tuples().all())


async def keyword_search(
    conn: AsyncConnection,
    project_id: str,
    store_ids: Sequence[str],
    terms: Sequence[str],
    *,
    limit: int,
    allowed_file_ids: Collection[str] | None = None,
) -> list[KeywordMatch]:
    """Chunks matching any of ``terms``, best first (ties by pk), at most ``limit``."""
    if not terms or not store_ids or limit < 1:
        return []
    params: dict[str, Any] = {"project": project_id, "stores": list(store_ids), "limit": limit}
    binds = [sa.bindparam("stores", expanding=True)]
    if conn.dialect.name == "postgresql":
        query_parts = []
        for number, term in enumerate(terms):
            params[f"t{number}"] = term
            query_parts.append(f"plainto_tsquery('{POSTGRES_FTS_CONFIG}', :t{number})")
        tsquery = "(" + " || ".join(query_parts) + ")"
        document = f"c.{POSTGRES_FTS_COLUMN}"  # to_tsvector('english', text), stored
        files = ""
        if allowed_file_ids is not None:
            files = " AND c.file_id = ANY(:files)"
            params["files"] = list(allowed_file_ids)
            binds.append(sa.bindparam("files", type_=postgresql.ARRAY(sa.String)))
        sql = (
            f"SELECT c.pk, c.vector_store_id, c.file_id, c.chunk_index, "
            f"ts_rank_cd({document}, {tsquery}) AS rank "
            f"FROM chunks AS c "
            f"WHERE c.project_id = :project AND c.vector_store_id IN :stores "
            f"AND {document} @@ {tsquery}{files} "
            f"ORDER BY rank DESC, c.pk LIMIT :limit"
        )
    else:
        params["match"] = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        files = ""
        if allowed_file_ids is not None:
            files = " AND c.file_id IN (SELECT value FROM json_each(:files))"
            params["files"] = json.dumps(list(allowed_file_ids))
        # CROSS JOIN keeps the FTS table as the outer loop, where bm25() is defined.
        sql = (
            "SELECT c.pk, c.vector_store_id, c.file_id, c.chunk_index, "
            "bm25(chunks_fts) AS rank "
            "FROM chunks_fts CROSS JOIN chunks AS c ON c.pk = chunks_fts.rowid "
            "WHERE chunks_fts MATCH :match AND c.project_id = :project "
            f"AND c.vector_store_id IN :stores{files} "
            "ORDER BY rank, c.pk LIMIT :limit"
        )
    result = await conn.execute(sa.text(sql).bindparams(*binds), params)
    return [
        KeywordMatch(pk, store, file_id, index) for pk, store, file_id, index, _ in result.all()
    ]
