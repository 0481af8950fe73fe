"""The file_search index: storing chunks, and hybrid (vector + keyword) search over them.

Storage (SQL in ``runstep.store.chunks``): one ``chunks`` row per chunk with its text and its
embedding as float32 bytes, on SQLite and PostgreSQL alike, without extensions.

Search, for a query over some vector stores of a project:

1. **Vector**: cosine similarity (the dot product of normalized vectors) of the query with
   every chunk of the stores, computed with numpy. Each store's matrix is cached in process
   memory under the store's version token (``chunk_store_versions``, renewed in the same
   transaction as every add/delete, by any process), so a repeated query costs one small
   version lookup and a matrix product, and a change anywhere is seen by the next query.
2. **Keyword**: the query's words (``keyword_terms``: letters/digits runs, lower-cased, common
   English stop words dropped, at most 32), ranked by FTS5 ``bm25`` on SQLite or
   ``ts_rank_cd`` on PostgreSQL. User text is never parsed as query syntax. Ranking costs
   per matching chunk, and OR-ing every word matches nearly every chunk of a large store on
   one subject, so the rows ranked are bounded (``KEYWORD_ROW_BUDGETS``): each word's
   document count is estimated (``runstep.store.chunks.term_document_counts``: capped FTS5
   counts on SQLite, the planner's statistics on PostgreSQL), and only the rarest words whose
   counts add up to the budget (always the rarest one: ``selective_terms``) choose the
   candidates, the chunks holding any of them. PostgreSQL ranks those by every word of the
   query; SQLite by the rarest words only (``bm25()`` covers the terms of its MATCH). Small
   stores, where every count fits the budget, are searched by every word as before.
3. **Fusion**: weighted reciprocal rank fusion,
   ``fused = 1 / (60 + vector rank) + KEYWORD_WEIGHT / (60 + keyword rank)`` (ranks from 1,
   ``KEYWORD_WEIGHT`` = 0.5), over the top ``candidate_depth(max_results)`` of each list. The
   weight favours the vector list, which ranks paraphrased questions better (the benchmark's
   nDCG@10 on SQLite: hybrid 0.78 with equal weights, 0.82 with 0.5, vector alone 0.86),
   while the keyword list still lifts the chunks it agrees on and adds exact words (names,
   codes) that embeddings miss.
4. **Scores** (0..1, higher is better):
   - ``hybrid``: ``fused / (1.5 / 61)``, the fused score over the best possible one (first in
     both lists = 1.0; first in the vector list only = 2/3, in the keyword list only = 1/3).
   - ``keyword``: the same over one list: ``61 / (60 + rank)``.
   - ``vector``: the cosine similarity itself, clipped to 0..1 (more meaningful for a
     threshold than a rank).
   ``score_threshold`` is applied to these scores (``score >= threshold`` is kept).

``allowed_file_ids`` restricts both lists before ranking. Order is by fused score; ties are
broken deterministically by the vector rank (semantics first), then the keyword rank, then the
order of ``vector_store_ids``, then file id, then chunk index. Within the vector list, equal
similarities are ordered the same way (store order, file id, chunk index); the keyword list
orders equal ranks by ``chunks.pk``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.store import chunks as chunk_sql
from runstep.store.db import Database

__all__ = [
    "RRF_K",
    "ChunkRecord",
    "Hit",
    "add_chunks",
    "cache_info",
    "candidate_depth",
    "clear_cache",
    "delete_file_chunks",
    "delete_store_chunks",
    "keyword_terms",
    "search",
    "selective_terms",
]

log = logging.getLogger(__name__)

RRF_K = 60
"""The reciprocal rank fusion constant."""
KEYWORD_WEIGHT = 0.5
"""The keyword list's weight in the fusion (the vector list's is 1)."""
MAX_QUERY_TERMS = 32
KEYWORD_ROW_BUDGETS = {"sqlite": 10_000, "postgresql": 2_500}
"""About how many chunks keyword search ranks at most, whatever the store's size (see
``selective_terms``), by dialect: ranking costs about 1 µs a chunk with FTS5's bm25 and 6 µs
with PostgreSQL's ts_rank_cd."""
CACHE_MAX_BYTES = 512 * 2**20
"""Cached store matrices are evicted, least recently used first, beyond this many bytes."""
_THREAD_THRESHOLD = 4_000_000
"""Matrix products with more elements than this run in a worker thread."""

Mode = Literal["hybrid", "vector", "keyword"]


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk to store: ``vector`` is its float32, L2-normalized embedding."""

    vector_store_id: str
    file_id: str
    index: int
    text: str
    vector: np.ndarray


@dataclass(frozen=True)
class Hit:
    """A search result; ``score`` is in 0..1, higher is better (see the module docstring)."""

    file_id: str
    vector_store_id: str
    chunk_index: int
    text: str
    score: float


# --- writes -----------------------------------------------------------------------------


def _embedding_bytes(vector: np.ndarray) -> bytes:
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"A chunk vector must be a non-empty 1-D array, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError("A chunk vector contains NaN or infinite values.")
    norm = float(np.linalg.norm(array))
    if norm > 0 and abs(norm - 1.0) > 1e-3:
        array = array / norm
    return array.astype("<f4", copy=False).tobytes()


async def add_chunks(conn: AsyncConnection, project_id: str, chunks: Sequence[ChunkRecord]) -> None:
    """Store chunks (in the caller's write transaction).

    ``(vector_store_id, file_id, index)`` is unique: re-ingesting a file means
    `delete_file_chunks` first (a duplicate raises ``sqlalchemy.exc.IntegrityError``). Vectors
    are stored as float32 (re-normalized if their length is not 1); NUL characters, which
    PostgreSQL text cannot hold, are removed from the text.
    """
    rows = []
    for chunk in chunks:
        if chunk.index < 0:
            raise ValueError(f"A chunk index must be >= 0, got {chunk.index}.")
        rows.append(
            chunk_sql.ChunkRow(
                vector_store_id=chunk.vector_store_id,
                file_id=chunk.file_id,
                chunk_index=chunk.index,
                text=chunk.text.replace("\x00", ""),
                embedding=_embedding_bytes(chunk.vector),
            )
        )
    await chunk_sql.insert_chunks(conn, project_id, rows)
    for store_id in {row.vector_store_id for row in rows}:
        _CACHE.discard((project_id, store_id))


async def delete_file_chunks(
    conn: AsyncConnection, project_id: str, vector_store_id: str | None, file_id: str
) -> int:
    """Delete a file's chunks from one store, or from every store (``None``); the count."""
    count, stores = await chunk_sql.delete_file_chunks(conn, project_id, vector_store_id, file_id)
    for store_id in stores:
        _CACHE.discard((project_id, store_id))
    return count


async def delete_store_chunks(conn: AsyncConnection, project_id: str, vector_store_id: str) -> int:
    """Delete every chunk of a store; the count."""
    count = await chunk_sql.delete_store_chunks(conn, project_id, vector_store_id)
    _CACHE.discard((project_id, vector_store_id))
    return count


# --- the vector cache -----------------------------------------------------------------------


@dataclass(frozen=True)
class _StoreVectors:
    version: int
    pks: np.ndarray  # int64, (n,)
    file_codes: np.ndarray  # int32, (n,): positions in file_ids
    file_ids: tuple[str, ...]
    chunk_indexes: np.ndarray  # int64, (n,)
    matrix: np.ndarray  # float32, (n, dimensions)

    @property
    def nbytes(self) -> int:
        return int(
            self.matrix.nbytes
            + self.pks.nbytes
            + self.file_codes.nbytes
            + self.chunk_indexes.nbytes
            + sum(len(file_id) + 50 for file_id in self.file_ids)
        )

    @classmethod
    def build(cls, version: int, rows: list[tuple[int, str, int, bytes]]) -> _StoreVectors:
        if rows:
            sizes = Counter(len(row[3]) for row in rows)
            size = sizes.most_common(1)[0][0]
            if len(sizes) > 1:
                log.warning(
                    "vector store chunks have embeddings of %d sizes; using the %d-byte ones",
                    len(sizes),
                    size,
                )
                rows = [row for row in rows if len(row[3]) == size]
        file_ids = tuple(sorted({row[1] for row in rows}))
        code_of = {file_id: code for code, file_id in enumerate(file_ids)}
        dimensions = len(rows[0][3]) // 4 if rows else 0
        matrix = np.frombuffer(b"".join(row[3] for row in rows), dtype="<f4")
        return cls(
            version=version,
            pks=np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
            file_codes=np.fromiter(
                (code_of[row[1]] for row in rows), dtype=np.int32, count=len(rows)
            ),
            file_ids=file_ids,
            chunk_indexes=np.fromiter((row[2] for row in rows), dtype=np.int64, count=len(rows)),
            matrix=matrix.reshape(len(rows), dimensions).astype(np.float32, copy=False),
        )


class _VectorCache:
    """Store matrices by ``(project_id, vector_store_id)``, LRU-evicted beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], _StoreVectors] = OrderedDict()
        self._bytes = 0
        self.loads = 0
        self.hits = 0

    def get(self, key: tuple[str, str], version: int) -> _StoreVectors | None:
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: tuple[str, str], entry: _StoreVectors) -> None:
        self.discard(key)
        if entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes

    def discard(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self.loads = self.hits = 0

    def info(self) -> dict[str, object]:
        return {
            "stores": len(self._entries),
            "bytes": self._bytes,
            "loads": self.loads,
            "hits": self.hits,
            "keys": list(self._entries),
        }


_CACHE = _VectorCache(CACHE_MAX_BYTES)


def cache_info() -> dict[str, object]:
    """Cached stores, bytes, and counts of loads from the database and cache hits."""
    return _CACHE.info()


def clear_cache() -> None:
    _CACHE.clear()


async def _store_vectors(
    conn: AsyncConnection, project_id: str, store_ids: Sequence[str]
) -> list[tuple[str, _StoreVectors]]:
    """Each store's vectors, from the cache when its version is unchanged (stores without
    chunks are left out). The version is read before the rows, so a concurrent change can
    only make a cached entry look older than it is, never newer."""
    versions = await chunk_sql.store_versions(conn, project_id, store_ids)
    found = []
    for store_id in store_ids:
        version = versions.get(store_id)
        if version is None:
            continue
        key = (project_id, store_id)
        entry = _CACHE.get(key, version)
        if entry is None:
            rows = await chunk_sql.load_store_vectors(conn, project_id, store_id)
            entry = _StoreVectors.build(version, rows)
            _CACHE.loads += 1
            _CACHE.put(key, entry)
        found.append((store_id, entry))
    return found


# --- search ----------------------------------------------------------------------------------

_WORDS = re.compile(r"[^\W_]+", re.UNICODE)
_STOP_WORD_TEXT = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves"""
_STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


def keyword_terms(query: str) -> list[str]:
    """The words of ``query`` for keyword search: lower-cased, unique, in order, without
    common English stop words (unless nothing else is left), at most 32."""
    words = list(dict.fromkeys(word.lower() for word in _WORDS.findall(query)))
    content = [word for word in words if word not in _STOP_WORDS]
    return (content or words)[:MAX_QUERY_TERMS]


def selective_terms(terms: Sequence[str], counts: Sequence[float], budget: int) -> list[str]:
    """The terms worth ranking by: rarest first (``counts``: chunks holding each) while their
    counts add up to at most ``budget``, and always the rarest; in query order.

    Common terms match most chunks but weigh little in the ranking (bm25's IDF; ties broken by
    the order of ``terms``), and scoring every chunk they match is what keyword search costs."""
    order = sorted(range(len(terms)), key=lambda number: (counts[number], number))
    kept: list[int] = []
    total = 0.0
    for number in order:
        if kept and total + counts[number] > budget:
            break
        kept.append(number)
        total += counts[number]
    return [terms[number] for number in sorted(kept)]


def candidate_depth(max_results: int) -> int:
    """How many of the best results of each list take part in the fusion."""
    return min(200, max(50, 4 * max_results))


@dataclass
class _Candidate:
    pk: int
    vector_store_id: str
    file_id: str
    chunk_index: int
    store_position: int
    cosine: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None

    def fused(self) -> float:
        weighted = ((1.0, self.vector_rank), (KEYWORD_WEIGHT, self.keyword_rank))
        return sum(weight / (RRF_K + rank) for weight, rank in weighted if rank)


def _top_vectors(
    stores: list[tuple[int, str, _StoreVectors]],
    query_vector: np.ndarray,
    depth: int,
    allowed_file_ids: frozenset[str] | None,
) -> list[_Candidate]:
    """The ``depth`` chunks most similar to the query over all ``stores``, best first."""
    found: list[_Candidate] = []
    for position, store_id, entry in stores:
        if entry.matrix.shape[0] == 0:
            continue
        if entry.matrix.shape[1] != query_vector.shape[0]:
            raise ValueError(
                f"The query vector has {query_vector.shape[0]} dimensions but vector store "
                f"{store_id!r} holds {entry.matrix.shape[1]}-dimensional embeddings."
            )
        scores = entry.matrix @ query_vector
        if allowed_file_ids is not None:
            codes = [
                code for code, file_id in enumerate(entry.file_ids) if file_id in allowed_file_ids
            ]
            if not codes:
                continue
            scores = np.where(np.isin(entry.file_codes, codes), scores, -np.inf)
        take = min(depth, scores.shape[0])
        rows = (
            np.argpartition(-scores, take - 1)[:take] if take < scores.shape[0] else np.arange(take)
        )
        for row in rows:
            score = float(scores[row])
            if score == -np.inf:
                continue
            found.append(
                _Candidate(
                    pk=int(entry.pks[row]),
                    vector_store_id=store_id,
                    file_id=entry.file_ids[entry.file_codes[row]],
                    chunk_index=int(entry.chunk_indexes[row]),
                    store_position=position,
                    cosine=score,
                )
            )
    found.sort(key=lambda c: (-(c.cosine or 0.0), c.store_position, c.file_id, c.chunk_index))
    return found[:depth]


def _query_vector(query_vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(vector)):
        raise ValueError("The query vector contains NaN or infinite values.")
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 and abs(norm - 1.0) > 1e-3 else vector


async def search(
    db: Database,
    project_id: str,
    vector_store_ids: Sequence[str],
    query: str,
    query_vector: np.ndarray,
    *,
    max_results: int = 10,
    score_threshold: float = 0.0,
    allowed_file_ids: Collection[str] | None = None,
    mode: Mode = "hybrid",
) -> list[Hit]:
    """The best chunks of ``vector_store_ids`` for ``query`` (text, for keywords) and
    ``query_vector`` (its normalized embedding), best first; see the module docstring."""
    if mode not in ("hybrid", "vector", "keyword"):
        raise ValueError(f"mode must be 'hybrid', 'vector' or 'keyword', got {mode!r}.")
    if max_results < 1:
        raise ValueError(f"max_results must be at least 1, got {max_results}.")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be between 0 and 1, got {score_threshold}.")
    store_ids = list(dict.fromkeys(vector_store_ids))
    allowed = None if allowed_file_ids is None else frozenset(allowed_file_ids)
    if not store_ids or (allowed is not None and not allowed):
        return []
    position = {store_id: number for number, store_id in enumerate(store_ids)}
    depth = candidate_depth(max_results)
    terms = keyword_terms(query) if mode != "vector" else []

    async with db.read() as conn:
        vector_list: list[_Candidate] = []
        if mode != "keyword":
            vector = _query_vector(query_vector)
            entries = await _store_vectors(conn, project_id, store_ids)
            stores = [(position[store_id], store_id, entry) for store_id, entry in entries]
            work = sum(entry.matrix.size for _, _, entry in stores)
            if work > _THREAD_THRESHOLD:
                vector_list = await asyncio.to_thread(_top_vectors, stores, vector, depth, allowed)
            else:
                vector_list = _top_vectors(stores, vector, depth, allowed)
        candidates_from = None
        if len(terms) > 1:
            budget = KEYWORD_ROW_BUDGETS[conn.dialect.name]
            counts = await chunk_sql.term_document_counts(conn, terms, cap=budget)
            candidates_from = selective_terms(terms, counts, budget)
        keyword_list = await chunk_sql.keyword_search(
            conn,
            project_id,
            store_ids,
            terms,
            limit=depth,
            allowed_file_ids=allowed,
            candidates_from=candidates_from,
        )

        candidates: dict[int, _Candidate] = {}
        for rank, candidate in enumerate(vector_list, start=1):
            candidate.vector_rank = rank
            candidates[candidate.pk] = candidate
        for rank, match in enumerate(keyword_list, start=1):
            candidate = candidates.get(match.pk)
            if candidate is None:
                candidate = candidates[match.pk] = _Candidate(
                    pk=match.pk,
                    vector_store_id=match.vector_store_id,
                    file_id=match.file_id,
                    chunk_index=match.chunk_index,
                    store_position=position[match.vector_store_id],
                )
            candidate.keyword_rank = rank

        weights = {"hybrid": 1.0 + KEYWORD_WEIGHT, "vector": 1.0, "keyword": KEYWORD_WEIGHT}
        best_fused = weights[mode] / (RRF_K + 1)

        def score(candidate: _Candidate) -> float:
            value = (
                (candidate.cosine or 0.0) if mode == "vector" else candidate.fused() / best_fused
            )
            return min(1.0, max(0.0, value))

        def order(candidate: _Candidate) -> tuple[float, float, float, int, str, int]:
            return (
                -candidate.fused(),
                candidate.vector_rank or math.inf,
                candidate.keyword_rank or math.inf,
                candidate.store_position,
                candidate.file_id,
                candidate.chunk_index,
            )

        ranked = sorted(candidates.values(), key=order)
        scored = [(candidate, score(candidate)) for candidate in ranked]
        kept = [(c, s) for c, s in scored if s >= score_threshold][:max_results]
        texts = await chunk_sql.chunk_texts(conn, [candidate.pk for candidate, _ in kept])

    return [
        Hit(
            file_id=candidate.file_id,
            vector_store_id=candidate.vector_store_id,
            chunk_index=candidate.chunk_index,
            text=texts[candidate.pk],
            score=value,
        )
        for candidate, value in kept
        if candidate.pk in texts  # deleted since the vectors were cached
    ]
