"""Search over one or more vector stores for one or more queries: the part shared by
``POST /v1/vector_stores/{id}/search`` and the ``file_search`` tool of runs."""

import asyncio
import time
from collections.abc import Collection, Sequence

import sqlalchemy as sa

from runstep.store import tables
from runstep.store.db import Database
from runstep.tools.file_search import index
from runstep.tools.file_search.embeddings import Embedder

FILES = tables.files.c
STORES = tables.vector_stores.c
STORE_FILES = tables.vector_store_files.c
READY_POLL_SECONDS = 0.2


async def ready_stores(
    db: Database, project_id: str, store_ids: Sequence[str], wait_seconds: float
) -> list[str]:
    """The stores of ``store_ids`` that can be searched (they exist and have not expired),
    once none of their files is still being ingested, or ``wait_seconds`` have passed."""
    deadline = time.monotonic() + wait_seconds
    while True:
        async with db.read() as conn:
            rows = await conn.execute(
                sa.select(STORES.id, STORES.status, STORES.expires_at).where(
                    STORES.project_id == project_id, STORES.id.in_(list(store_ids))
                )
            )
            at = int(time.time())
            usable = {
                row.id
                for row in rows
                if row.status != "expired" and (row.expires_at is None or row.expires_at > at)
            }
            pending = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(tables.vector_store_files)
                .where(
                    STORE_FILES.vector_store_id.in_(sorted(usable)),
                    STORE_FILES.status == "in_progress",
                )
            )
        if not pending or time.monotonic() >= deadline:
            return [store_id for store_id in store_ids if store_id in usable]
        await asyncio.sleep(READY_POLL_SECONDS)


async def best_hits(
    db: Database,
    embedder: Embedder,
    project_id: str,
    store_ids: Sequence[str],
    queries: Sequence[str],
    *,
    max_results: int,
    score_threshold: float = 0.0,
    allowed_file_ids: Collection[str] | None = None,
    mode: index.Mode = "hybrid",
) -> list[index.Hit]:
    """The best chunks for any of ``queries`` (a chunk found by several keeps its best
    score), best first, at most ``max_results``."""
    if not store_ids or not queries or (allowed_file_ids is not None and not allowed_file_ids):
        return []
    best: dict[tuple[str, str, int], index.Hit] = {}
    vectors = await embedder.embed(list(queries))
    for text, vector in zip(queries, vectors, strict=True):
        hits = await index.search(
            db,
            project_id,
            store_ids,
            text,
            vector,
            max_results=max_results,
            score_threshold=score_threshold,
            allowed_file_ids=allowed_file_ids,
            mode=mode,
        )
        for hit in hits:
            key = (hit.vector_store_id, hit.file_id, hit.chunk_index)
            if key not in best or hit.score > best[key].score:
                best[key] = hit
    ranked = sorted(best.values(), key=lambda hit: hit.score, reverse=True)
    return ranked[:max_results]


async def file_names(db: Database, project_id: str, file_ids: Collection[str]) -> dict[str, str]:
    """File id → file name, for the files that still exist."""
    if not file_ids:
        return {}
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(FILES.id, FILES.filename).where(
                FILES.project_id == project_id, FILES.id.in_(sorted(file_ids))
            )
        )
        return {row.id: row.filename for row in rows}


def clamp_score(score: float) -> float:
    return min(1.0, max(0.0, float(score)))
