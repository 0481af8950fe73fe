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
text is ever parsed as query syntax. ``term_document_counts`` estimates how many chunks hold
each term, so that search can draw its candidates from the rarer terms only
(``keyword_search(candidates_from=...)``); on PostgreSQL the tsvectors are stored in the row
(migration 0008), so that ranking does not fetch each from TOAST.
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
    SQLITE_FTS_TABLE,
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


async def term_document_counts(
    conn: AsyncConnection, terms: Sequence[str], *, cap: int
) -> list[float]:
    """How many chunks (of every project: the keyword index is one for all) hold each term,
    estimated, and at most ``cap``: what ranking a keyword query costs per term.

    SQLite: exact counts, each query stopping at ``cap`` rows of the term's FTS5 doclist.
    PostgreSQL: the planner's statistics of ``text_search`` (``pg_stats``, refreshed by
    ``ANALYZE``): the lexeme's frequency among the most common elements times the table's
    estimated rows; a lexeme not listed gets half the least frequency listed (the planner's own
    guess), a table never analyzed 0 for every term.
    """
    if not terms:
        return []
    if conn.dialect.name == "postgresql":
        counts = await _postgres_term_counts(conn, terms)
    else:
        counts = await _sqlite_term_counts(conn, terms, cap)
    return [min(float(count), cap) for count in counts]


async def _sqlite_term_counts(conn: AsyncConnection, terms: Sequence[str], cap: int) -> list[int]:
    params: dict[str, Any] = {"cap": cap}
    columns = []
    for number, term in enumerate(terms):
        params[f"t{number}"] = _fts5_string(term)
        columns.append(
            f"(SELECT count(*) FROM (SELECT 1 FROM {SQLITE_FTS_TABLE} "
            f"WHERE {SQLITE_FTS_TABLE} MATCH :t{number} LIMIT :cap))"
        )
    row = (await conn.execute(sa.text("SELECT " + ", ".join(columns)), params)).one()
    return list(row)


async def _postgres_term_counts(conn: AsyncConnection, terms: Sequence[str]) -> list[float]:
    # most_common_elem_freqs: one frequency per element, then their minimum and maximum.
    sql = f"""
        WITH stats AS (
            SELECT s.most_common_elems::text::text[] AS elems,
                   s.most_common_elem_freqs AS freqs, greatest(c.reltuples, 0) AS rows
            FROM pg_class AS c
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            JOIN pg_stats AS s ON s.schemaname = n.nspname AND s.tablename = c.relname
                AND s.attname = '{POSTGRES_FTS_COLUMN}'
            WHERE c.oid = 'chunks'::regclass
        )
        SELECT t.number, min(coalesce(
            stats.freqs[array_position(stats.elems, lexeme)],
            stats.freqs[cardinality(stats.elems) + 1] / 2
        ) * stats.rows)
        FROM unnest(CAST(:terms AS text[])) WITH ORDINALITY AS t(term, number)
        CROSS JOIN stats
        CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('{POSTGRES_FTS_CONFIG}', t.term)))
            AS lexeme
        GROUP BY t.number
    """
    result = await conn.execute(sa.text(sql), {"terms": list(terms)})
    found = {int(number): count or 0.0 for number, count in result.all()}
    return [found.get(number, 0.0) for number in range(1, len(terms) + 1)]


def _fts5_string(term: str) -> str:
    """``term`` as an FTS5 string: never parsed as query syntax."""
    return '"' + term.replace('"', '""') + '"'


async def keyword_search(
    conn: AsyncConnection,
    project_id: str,
    store_ids: Sequence[str],
    terms: Sequence[str],
    *,
    limit: int,
    allowed_file_ids: Collection[str] | None = None,
    candidates_from: Sequence[str] | None = None,
) -> list[KeywordMatch]:
    """Chunks matching any of ``candidates_from`` (default: ``terms``), ranked by all of
    ``terms``, best first (ties by pk), at most ``limit``."""
    if not terms or not store_ids or limit < 1:
        return []
    required = list(terms if candidates_from is None else candidates_from)
    params: dict[str, Any] = {"project": project_id, "stores": list(store_ids), "limit": limit}
    binds = [sa.bindparam("stores", expanding=True)]
    if conn.dialect.name == "postgresql":

        def tsquery(words: Sequence[str], prefix: str) -> str:
            parts = []
            for number, word in enumerate(words):
                params[f"{prefix}{number}"] = word
                parts.append(f"plainto_tsquery('{POSTGRES_FTS_CONFIG}', :{prefix}{number})")
            return "(" + " || ".join(parts) + ")"

        document = f"c.{POSTGRES_FTS_COLUMN}"  # to_tsvector('english', text), stored
        files = ""
        if allowed_file_ids is not None:
            files = " AND c.file_id = ANY(:files)"
            params["files"] = list(allowed_file_ids)
            binds.append(sa.bindparam("files", type_=postgresql.ARRAY(sa.String)))
        sql = (
            f"SELECT c.pk, c.vector_store_id, c.file_id, c.chunk_index, "
            f"ts_rank_cd({document}, {tsquery(terms, 't')}) AS rank "
            f"FROM chunks AS c "
            f"WHERE c.project_id = :project AND c.vector_store_id IN :stores "
            f"AND {document} @@ {tsquery(required, 'r')}{files} "
            f"ORDER BY rank DESC, c.pk LIMIT :limit"
        )
    else:
        # FTS5 computes bm25() over the terms of the MATCH only, and ranking a subset of the
        # rows matching more terms costs about as much as ranking them all: rank by the
        # candidate terms alone.
        params["match"] = " OR ".join(_fts5_string(term) for term in required)
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
