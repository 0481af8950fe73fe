"""Vector stores: stores, their files and file batches, search, expiry, and the bookkeeping
that keeps ``file_counts``, ``usage_bytes`` and ``status`` true.

Files are ingested asynchronously (``services.ingestion``): attaching a file stores a
``vector_store.file`` row ``in_progress`` and wakes the ingestion workers.

Counts are never incremented: every change to a store's (or batch's) file rows recomputes
them from the rows, inside the same transaction, after locking the store (then the batch)
row. Every transaction touches file rows first and the store row after, so two of them never
wait on each other in opposite orders.

Choices where the hosted API is not documented:

- ``usage_bytes`` of a file is the UTF-8 size of its extracted text (0 until completed, and
  for failed files); a store's is the sum over its files.
- A file id that does not exist in the project (another project's included) is a 404
  ``No such File object: file-…`` with ``param`` ``file_id`` (or ``file_ids``), like
  ``GET /v1/files/{id}``; nothing is attached then.
- Attaching a file that is already in the store re-ingests it with the new
  ``chunking_strategy``/``attributes`` (its chunks are replaced; it moves to the new batch).
- A batch is ``cancelled`` once cancelled (its waiting files become ``cancelled``),
  otherwise ``in_progress`` while any of its files is, then ``completed`` (even when some
  files failed). Cancelling a finished batch returns it unchanged.
- An expired store (``expires_after`` passed since ``last_active_at``) reads as ``expired``
  at once and is marked so by the sweeper; it keeps its files but cannot be searched (400).
- ``last_active_at`` moves on search and when a run uses the store (``touch``).
"""

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep import ids
from runstep.errors import InvalidRequest, NotFound
from runstep.files.storage import BlobStore
from runstep.protocol.common import ListQuery, deleted_object, list_object
from runstep.protocol.vector_stores import (
    CreateFileBatchRequest,
    CreateVectorStoreFileRequest,
    CreateVectorStoreRequest,
    SearchRequest,
    UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest,
    VectorStoreFileListQuery,
    file_batch_object,
    file_content_page,
    refresh_expires_at,
    search_results_page,
    set_expiry,
    vector_store_file_object,
    vector_store_object,
    zero_counts,
)
from runstep.runs.bus import LocalBus
from runstep.services.common import now
from runstep.store import tables
from runstep.store import vector_store_files as vsf_rows
from runstep.store.collections import (
    VECTOR_STORE_FILE_BATCHES,
    VECTOR_STORE_FILES,
    VECTOR_STORES,
)
from runstep.store.db import Database
from runstep.store.notify import EVENTS, notify
from runstep.store.objects import PageRequest
from runstep.tools.file_search import index, retrieval
from runstep.tools.file_search.chunking import chunk_text
from runstep.tools.file_search.embeddings import Embedder, create_embedder
from runstep.tools.file_search.extract import ExtractionError, extract_text
from runstep.tools.file_search.filters import matches

log = logging.getLogger("runstep.vector_stores")

KIND = "vector store"
BATCH_KIND = "file batch"
# A key on the bus: set in this process by ``wake_ingestion``, and in every process through
# a NOTIFY on the events channel (PostgreSQL), whose listener sets the key given as payload.
INGEST_SIGNAL = "ingest:vector_store_files"
SWEEP_BATCH = 500

VS = tables.vector_stores.c
VSF = tables.vector_store_files.c
FILES = tables.files.c


# --- the embedder, one per process ----------------------------------------------------------

_embedder: Embedder | None = None


def shared_embedder() -> Embedder:
    """This process's embedder (``RUNSTEP_EMBEDDINGS_*``), created on first use."""
    global _embedder
    if _embedder is None:
        _embedder = create_embedder()
    return _embedder


# --- errors and lookups ---------------------------------------------------------------------


def _store_not_found(store_id: str) -> NotFound:
    return NotFound.object(KIND, store_id)


def _file_not_found(store_id: str, file_id: str) -> NotFound:
    return NotFound(f"No file found with id '{file_id}' in vector store '{store_id}'.")


def _unknown_file(file_id: str, param: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param=param)


def _expired(obj: dict[str, Any], at: int) -> bool:
    expires_at = obj.get("expires_at")
    return obj["status"] == "expired" or (expires_at is not None and expires_at <= at)


def _view(obj: dict[str, Any]) -> dict[str, Any]:
    """A store as read: already ``expired`` once ``expires_at`` has passed (before the
    sweeper records it)."""
    if obj["status"] != "expired" and _expired(obj, now()):
        return {**obj, "status": "expired"}
    return obj


async def _store(
    conn: AsyncConnection, project_id: str, store_id: str, *, for_update: bool = False
) -> dict[str, Any]:
    obj = await VECTOR_STORES.get(conn, project_id, store_id, for_update=for_update)
    if obj is None:
        raise _store_not_found(store_id)
    return obj


async def check_files(
    conn: AsyncConnection, project_id: str, file_ids: Sequence[str], param: str
) -> dict[str, dict[str, Any]]:
    """The project's live File objects for ``file_ids``; 404 for the first one missing."""
    found: dict[str, dict[str, Any]] = {}
    at = now()
    for start in range(0, len(file_ids), SWEEP_BATCH):
        part = list(file_ids[start : start + SWEEP_BATCH])
        result = await conn.execute(
            sa.select(FILES.id, FILES.data).where(
                FILES.project_id == project_id,
                FILES.id.in_(part),
                sa.or_(FILES.expires_at.is_(None), FILES.expires_at > at),
            )
        )
        found.update({row.id: row.data for row in result})
    for file_id in file_ids:
        if file_id not in found:
            raise _unknown_file(file_id, param)
    return found


# --- counts ---------------------------------------------------------------------------------


async def _counts(
    conn: AsyncConnection, where: sa.ColumnElement[bool]
) -> tuple[dict[str, int], int]:
    result = await conn.execute(
        sa.select(VSF.status, sa.func.count(), sa.func.coalesce(sa.func.sum(VSF.usage_bytes), 0))
        .where(where)
        .group_by(VSF.status)
    )
    counts, usage = zero_counts(), 0
    for status, count, used in result.tuples():
        counts[status] = int(count)
        usage += int(used)
    counts["total"] = sum(count for name, count in counts.items() if name != "total")
    return counts, usage


async def refresh_store(
    conn: AsyncConnection, project_id: str, store_id: str
) -> dict[str, Any] | None:
    """Lock the store and recompute its ``file_counts``, ``usage_bytes`` and ``status``;
    None if it no longer exists."""
    obj = await VECTOR_STORES.get(conn, project_id, store_id, for_update=True)
    if obj is None:
        return None
    obj["file_counts"], obj["usage_bytes"] = await _counts(conn, VSF.vector_store_id == store_id)
    if obj["status"] != "expired":
        obj["status"] = "in_progress" if obj["file_counts"]["in_progress"] else "completed"
    await VECTOR_STORES.replace(conn, project_id, obj, status=obj["status"])
    return obj


async def refresh_batch(
    conn: AsyncConnection, project_id: str, batch_id: str
) -> dict[str, Any] | None:
    """Lock the batch and recompute its ``file_counts`` and ``status``."""
    obj = await VECTOR_STORE_FILE_BATCHES.get(conn, project_id, batch_id, for_update=True)
    if obj is None:
        return None
    obj["file_counts"], _ = await _counts(conn, VSF.batch_id == batch_id)
    if obj["status"] != "cancelled":
        obj["status"] = "in_progress" if obj["file_counts"]["in_progress"] else "completed"
    await VECTOR_STORE_FILE_BATCHES.replace(conn, project_id, obj)
    return obj


async def _refresh_stores(conn: AsyncConnection, project_id: str, store_ids: Iterable[str]) -> None:
    for store_id in sorted(set(store_ids)):  # one lock order for every transaction
        await refresh_store(conn, project_id, store_id)


# --- waking the ingestion workers -----------------------------------------------------------


async def _announce(conn: AsyncConnection) -> None:
    """Inside a write that queued files: wake other processes' workers once committed."""
    await notify(conn, EVENTS, INGEST_SIGNAL)


def wake_ingestion(bus: LocalBus) -> None:
    """Wake this process's ingestion loop."""
    bus.notify(INGEST_SIGNAL)


# --- attaching files ------------------------------------------------------------------------


async def _attach(
    conn: AsyncConnection,
    project_id: str,
    store_id: str,
    request: CreateVectorStoreFileRequest,
    created_at: int,
    batch_id: str | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Insert the file's row ``in_progress`` (or reset an existing one and drop its chunks);
    returns the object and the batch the file belonged to before, if any."""
    obj = vector_store_file_object(
        file_id=request.file_id, store_id=store_id, created_at=created_at, request=request
    )
    existing = await conn.execute(
        sa.select(VSF.pk, VSF.created_at, VSF.batch_id)
        .where(VSF.vector_store_id == store_id, VSF.id == request.file_id)
        .with_for_update()
    )
    row = existing.first()
    if row is None:
        await VECTOR_STORE_FILES.insert(
            conn,
            project_id,
            obj,
            vector_store_id=store_id,
            batch_id=batch_id,
            status="in_progress",
            usage_bytes=0,
        )
        return obj, None
    obj["created_at"] = row.created_at
    await vsf_rows.update(
        conn,
        row.pk,
        data=obj,
        batch_id=batch_id,
        status="in_progress",
        usage_bytes=0,
        lease_owner=None,
        lease_expires_at=None,
        attempts=0,
    )
    await index.delete_file_chunks(conn, project_id, store_id, request.file_id)
    return obj, row.batch_id


def _unique(requests: Iterable[CreateVectorStoreFileRequest]) -> list[CreateVectorStoreFileRequest]:
    """One request per file id (the last one wins, in order of first appearance)."""
    return list({request.file_id: request for request in requests}.values())


# --- vector stores --------------------------------------------------------------------------


async def insert_store(
    conn: AsyncConnection,
    project_id: str,
    request: CreateVectorStoreRequest,
    param: str = "file_ids",
) -> dict[str, Any]:
    """Inside a write: a new store with ``file_ids`` attached and queued (404 naming ``param``
    for an unknown file). When there were files, the caller wakes the ingestion workers once
    the transaction is committed."""
    created_at = now()
    obj = vector_store_object(
        store_id=ids.new_id(ids.VECTOR_STORE), created_at=created_at, request=request
    )
    entries = _unique(
        CreateVectorStoreFileRequest(file_id=file_id, chunking_strategy=request.chunking_strategy)
        for file_id in request.file_ids or []
    )
    await check_files(conn, project_id, [entry.file_id for entry in entries], param)
    await VECTOR_STORES.insert(
        conn, project_id, obj, status=obj["status"], expires_at=obj["expires_at"]
    )
    for entry in entries:
        await _attach(conn, project_id, obj["id"], entry, created_at)  # a new store: no batch
    if entries:
        obj = await refresh_store(conn, project_id, obj["id"]) or obj
        await _announce(conn)
    return obj


async def create(
    db: Database, bus: LocalBus, project_id: str, request: CreateVectorStoreRequest
) -> dict[str, Any]:
    """``POST /v1/vector_stores``: the store, with ``file_ids`` attached and queued."""
    async with db.write() as conn:
        obj = await insert_store(conn, project_id, request)
    if request.file_ids:
        wake_ingestion(bus)
    return obj


async def accepts_files(conn: AsyncConnection, project_id: str, store_id: str) -> bool:
    """Whether the store exists and has not expired."""
    obj = await VECTOR_STORES.get(conn, project_id, store_id)
    return obj is not None and not _expired(obj, now())


async def retrieve(db: Database, project_id: str, store_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        return _view(await _store(conn, project_id, store_id))


async def list_stores(db: Database, project_id: str, query: ListQuery) -> dict[str, Any]:
    request = PageRequest(
        limit=query.limit, order=query.order, after=query.after, before=query.before
    )
    async with db.read() as conn:
        page = await VECTOR_STORES.list(conn, project_id, request)
    return list_object([_view(obj) for obj in page.data], page.has_more)


async def modify(
    db: Database, project_id: str, store_id: str, request: UpdateVectorStoreRequest
) -> dict[str, Any]:
    """``POST /v1/vector_stores/{id}``: ``name``, ``expires_after`` (null removes the policy)
    and ``metadata``."""
    given = request.model_fields_set
    async with db.write() as conn:
        obj = await _store(conn, project_id, store_id, for_update=True)
        if "name" in given:
            obj["name"] = request.name or ""
        if "metadata" in given:
            obj["metadata"] = request.metadata or {}
        if "expires_after" in given and obj["status"] != "expired":
            set_expiry(obj, request.expires_after)
        await VECTOR_STORES.replace(conn, project_id, obj, expires_at=obj["expires_at"])
    return _view(obj)


async def delete(db: Database, project_id: str, store_id: str) -> dict[str, Any]:
    """``DELETE /v1/vector_stores/{id}``: its file rows, batches and chunks too (the Files
    stay)."""
    async with db.write() as conn:
        await conn.execute(
            tables.vector_store_files.delete().where(
                VSF.project_id == project_id, VSF.vector_store_id == store_id
            )
        )
        await index.delete_store_chunks(conn, project_id, store_id)
        await VECTOR_STORE_FILE_BATCHES.delete_where(conn, project_id, vector_store_id=store_id)
        if not await VECTOR_STORES.delete(conn, project_id, store_id):
            raise _store_not_found(store_id)
    return deleted_object(store_id, "vector_store.deleted")


async def touch(db: Database, project_id: str, store_ids: Sequence[str]) -> None:
    """Record that the stores were used now (``last_active_at``, and so ``expires_at``)."""
    at = now()
    async with db.write() as conn:
        for store_id in sorted(set(store_ids)):
            obj = await VECTOR_STORES.get(conn, project_id, store_id, for_update=True)
            if obj is None or _expired(obj, at) or obj.get("last_active_at") == at:
                continue
            obj["last_active_at"] = at
            refresh_expires_at(obj)
            await VECTOR_STORES.replace(conn, project_id, obj, expires_at=obj["expires_at"])


async def expire_stores(db: Database, at: int) -> int:
    """Mark every store whose ``expires_at`` is at or before ``at`` as ``expired``; returns how
    many. Safe to run from several sweepers at once."""
    expired = 0
    while True:
        async with db.read() as conn:
            result = await conn.execute(
                sa.select(VS.project_id, VS.id)
                .where(VS.expires_at <= at, VS.status != "expired")
                .order_by(VS.expires_at)
                .limit(SWEEP_BATCH)
            )
            batch = [(row.project_id, row.id) for row in result]
        for project_id, store_id in batch:
            async with db.write() as conn:
                obj = await VECTOR_STORES.get(conn, project_id, store_id, for_update=True)
                if obj is None or obj["status"] == "expired" or not _expired(obj, at):
                    continue
                obj["status"] = "expired"
                await VECTOR_STORES.replace(conn, project_id, obj, status="expired")
                expired += 1
        if len(batch) < SWEEP_BATCH:
            return expired


# --- vector store files ---------------------------------------------------------------------


async def _attached(
    conn: AsyncConnection, project_id: str, store_id: str, previous_batches: set[str | None]
) -> None:
    """After attaching files: recount the store and the batches the files moved out of,
    and wake the ingestion workers once this transaction commits."""
    if await refresh_store(conn, project_id, store_id) is None:
        raise _store_not_found(store_id)
    for previous in sorted(b for b in previous_batches if b is not None):
        await refresh_batch(conn, project_id, previous)
    await _announce(conn)


async def create_file(
    db: Database,
    bus: LocalBus,
    project_id: str,
    store_id: str,
    request: CreateVectorStoreFileRequest,
) -> dict[str, Any]:
    """``POST /v1/vector_stores/{id}/files``: attach and queue one file."""
    async with db.write() as conn:
        await _store(conn, project_id, store_id)
        await check_files(conn, project_id, [request.file_id], "file_id")
        obj, previous_batch = await _attach(conn, project_id, store_id, request, now())
        await _attached(conn, project_id, store_id, {previous_batch})
    wake_ingestion(bus)
    return obj


async def add_new_files(
    conn: AsyncConnection, project_id: str, store_id: str, file_ids: Sequence[str]
) -> int:
    """Inside a write: attach and queue those of the (already checked) ``file_ids`` the store
    does not hold yet; files already in it stay as they are. Returns how many were queued;
    the caller wakes the ingestion workers once committed."""
    result = await conn.execute(
        sa.select(VSF.id).where(VSF.vector_store_id == store_id, VSF.id.in_(file_ids))
    )
    held = set(result.scalars())
    new = [file_id for file_id in dict.fromkeys(file_ids) if file_id not in held]
    if new:
        created_at = now()
        for file_id in new:
            entry = CreateVectorStoreFileRequest(file_id=file_id)
            await _attach(conn, project_id, store_id, entry, created_at)
        await _attached(conn, project_id, store_id, set())
    return len(new)


async def retrieve_file(
    db: Database, project_id: str, store_id: str, file_id: str
) -> dict[str, Any]:
    async with db.read() as conn:
        await _store(conn, project_id, store_id)
        obj = await VECTOR_STORE_FILES.get(conn, project_id, file_id, vector_store_id=store_id)
    if obj is None:
        raise _file_not_found(store_id, file_id)
    return obj


async def list_files(
    db: Database,
    project_id: str,
    store_id: str,
    query: VectorStoreFileListQuery,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """A page of the store's files (or a batch's), optionally of one status (``filter``)."""
    request = PageRequest(
        limit=query.limit, order=query.order, after=query.after, before=query.before
    )
    filters = (VSF.status == query.filter,) if query.filter is not None else ()
    scope: dict[str, Any] = {"vector_store_id": store_id}
    async with db.read() as conn:
        await _store(conn, project_id, store_id)
        if batch_id is not None:
            await _batch(conn, project_id, store_id, batch_id)
            scope["batch_id"] = batch_id
        page = await VECTOR_STORE_FILES.list(conn, project_id, request, filters=filters, **scope)
    return list_object(page.data, page.has_more)


async def update_file(
    db: Database,
    project_id: str,
    store_id: str,
    file_id: str,
    request: UpdateVectorStoreFileRequest,
) -> dict[str, Any]:
    """``POST /v1/vector_stores/{id}/files/{file_id}``: replace the ``attributes``."""
    async with db.write() as conn:
        await _store(conn, project_id, store_id)
        result = await conn.execute(
            sa.select(VSF.pk, VSF.data)
            .where(VSF.project_id == project_id, VSF.vector_store_id == store_id, VSF.id == file_id)
            .with_for_update()
        )
        row = result.first()
        if row is None:
            raise _file_not_found(store_id, file_id)
        obj = dict(row.data)
        obj["attributes"] = request.attributes or {}
        await vsf_rows.update(conn, row.pk, data=obj)
    return obj


async def delete_file(db: Database, project_id: str, store_id: str, file_id: str) -> dict[str, Any]:
    """``DELETE /v1/vector_stores/{id}/files/{file_id}``: the row and its chunks; the File
    itself stays."""
    async with db.write() as conn:
        result = await conn.execute(
            tables.vector_store_files.delete()
            .where(VSF.project_id == project_id, VSF.vector_store_id == store_id, VSF.id == file_id)
            .returning(VSF.batch_id)
        )
        removed = result.first()
        if removed is None:
            await _store(conn, project_id, store_id)  # 404 for the store first
            raise _file_not_found(store_id, file_id)
        await index.delete_file_chunks(conn, project_id, store_id, file_id)
        await refresh_store(conn, project_id, store_id)
        if removed.batch_id is not None:
            await refresh_batch(conn, project_id, removed.batch_id)
    return deleted_object(file_id, "vector_store.file.deleted")


async def remove_file_everywhere(conn: AsyncConnection, project_id: str, file_id: str) -> None:
    """Remove a deleted File from every vector store of the project (rows and chunks) and
    recompute the counts; runs in the transaction that deletes the File."""
    result = await conn.execute(
        tables.vector_store_files.delete()
        .where(VSF.project_id == project_id, VSF.id == file_id)
        .returning(VSF.vector_store_id, VSF.batch_id)
    )
    removed = result.all()
    if not removed:
        return
    await index.delete_file_chunks(conn, project_id, None, file_id)
    await _refresh_stores(conn, project_id, (row.vector_store_id for row in removed))
    for batch_id in sorted({row.batch_id for row in removed if row.batch_id is not None}):
        await refresh_batch(conn, project_id, batch_id)


def _chunks_of(path: Any, filename: str, strategy: dict[str, Any]) -> list[str]:
    text = extract_text(path, filename)
    static = strategy["static"]
    chunks = chunk_text(text, static["max_chunk_size_tokens"], static["chunk_overlap_tokens"])
    return [chunk.text for chunk in chunks]


async def file_content(
    db: Database, blobs: BlobStore, project_id: str, store_id: str, file_id: str
) -> dict[str, Any]:
    """``GET …/files/{file_id}/content``: the indexed chunks' text (the file is extracted and
    chunked again with its strategy, which is deterministic); empty unless ``completed``."""
    obj = await retrieve_file(db, project_id, store_id, file_id)
    if obj["status"] != "completed":
        return file_content_page([])
    async with db.read() as conn:
        result = await conn.execute(
            sa.select(FILES.filename).where(FILES.project_id == project_id, FILES.id == file_id)
        )
        filename = result.scalar_one_or_none()
    if filename is None:
        raise _file_not_found(store_id, file_id)
    try:
        texts = await asyncio.to_thread(
            _chunks_of, blobs.path(file_id), filename, obj["chunking_strategy"]
        )
    except (ExtractionError, OSError):
        texts = []
    return file_content_page(texts)


# --- file batches ---------------------------------------------------------------------------


async def _batch(
    conn: AsyncConnection,
    project_id: str,
    store_id: str,
    batch_id: str,
    *,
    for_update: bool = False,
) -> dict[str, Any]:
    obj = await VECTOR_STORE_FILE_BATCHES.get(
        conn, project_id, batch_id, for_update=for_update, vector_store_id=store_id
    )
    if obj is None:
        raise NotFound.object(BATCH_KIND, batch_id)
    return obj


async def create_batch(
    db: Database, bus: LocalBus, project_id: str, store_id: str, request: CreateFileBatchRequest
) -> dict[str, Any]:
    """``POST /v1/vector_stores/{id}/file_batches``: attach and queue every file."""
    entries = _unique(request.entries())
    param = "files" if request.files is not None else "file_ids"
    created_at = now()
    obj = file_batch_object(
        batch_id=ids.new_id(ids.FILE_BATCH), store_id=store_id, created_at=created_at
    )
    async with db.write() as conn:
        await _store(conn, project_id, store_id)
        await check_files(conn, project_id, [entry.file_id for entry in entries], param)
        await VECTOR_STORE_FILE_BATCHES.insert(conn, project_id, obj, vector_store_id=store_id)
        previous_batches: set[str | None] = set()
        for entry in entries:
            _, previous = await _attach(conn, project_id, store_id, entry, created_at, obj["id"])
            previous_batches.add(previous)
        await _attached(conn, project_id, store_id, previous_batches)
        obj = await refresh_batch(conn, project_id, obj["id"]) or obj
    wake_ingestion(bus)
    return obj


async def retrieve_batch(
    db: Database, project_id: str, store_id: str, batch_id: str
) -> dict[str, Any]:
    async with db.read() as conn:
        await _store(conn, project_id, store_id)
        return await _batch(conn, project_id, store_id, batch_id)


async def cancel_batch(
    db: Database, project_id: str, store_id: str, batch_id: str
) -> dict[str, Any]:
    """Cancel the batch's files still waiting or being ingested (a worker that finishes one
    later finds its lease gone and stores nothing)."""
    async with db.write() as conn:
        await _store(conn, project_id, store_id)
        obj = await _batch(conn, project_id, store_id, batch_id)
        if obj["status"] != "in_progress":
            return obj
        result = await conn.execute(
            sa.select(VSF.pk, VSF.data)
            .where(VSF.batch_id == batch_id, VSF.status == "in_progress")
            .order_by(VSF.pk)
            .with_for_update()
        )
        for row in result.all():
            data = {**row.data, "status": "cancelled"}
            await vsf_rows.update(
                conn, row.pk, data=data, status="cancelled", lease_owner=None, lease_expires_at=None
            )
        await refresh_store(conn, project_id, store_id)
        obj = await _batch(conn, project_id, store_id, batch_id, for_update=True)
        obj["status"] = "cancelled"
        await VECTOR_STORE_FILE_BATCHES.replace(conn, project_id, obj)
        return await refresh_batch(conn, project_id, batch_id) or obj


# --- search ---------------------------------------------------------------------------------


async def _allowed_files(
    db: Database, project_id: str, store_id: str, filters: dict[str, Any]
) -> set[str]:
    """The store's completed files whose attributes pass ``filters``."""
    async with db.read() as conn:
        result = await conn.execute(
            sa.select(VSF.id, VSF.data).where(
                VSF.project_id == project_id,
                VSF.vector_store_id == store_id,
                VSF.status == "completed",
            )
        )
        rows = result.all()
    return {row.id for row in rows if matches(filters, row.data.get("attributes") or {})}


async def search(
    db: Database, project_id: str, store_id: str, request: SearchRequest
) -> dict[str, Any]:
    """``POST /v1/vector_stores/{id}/search``: the best chunks for the query (or each of the
    queries, merged by best score), one result per chunk. ``rewrite_query`` is accepted and
    the query is used as given (``search_query`` echoes it)."""
    queries = request.queries()
    async with db.read() as conn:
        store = _view(await _store(conn, project_id, store_id))
    if store["status"] == "expired":
        raise InvalidRequest(f"Vector store '{store_id}' is expired and cannot be searched.")
    filters = request.filters.model_dump(mode="json") if request.filters is not None else None
    allowed = await _allowed_files(db, project_id, store_id, filters) if filters else None
    ranking = request.ranking_options
    threshold = ranking.score_threshold if ranking is not None else 0.0
    # ``ranker: none`` skips the fusion with keyword ranks: plain cosine similarity.
    mode: index.Mode = "vector" if ranking is not None and ranking.ranker == "none" else "hybrid"
    hits = await retrieval.best_hits(
        db,
        shared_embedder(),
        project_id,
        [store_id],
        queries,
        max_results=request.max_num_results,
        score_threshold=threshold,
        allowed_file_ids=allowed,
        mode=mode,
    )
    items = await _result_items(db, project_id, store_id, hits)
    await touch(db, project_id, [store_id])
    return search_results_page(queries, items)


async def _result_items(
    db: Database, project_id: str, store_id: str, hits: list[index.Hit]
) -> list[dict[str, Any]]:
    """Search results with each file's name and attributes (files removed meanwhile are
    left out)."""
    file_ids = sorted({hit.file_id for hit in hits})
    if not file_ids:
        return []
    names = await retrieval.file_names(db, project_id, file_ids)
    async with db.read() as conn:
        attributes = {
            row.id: row.data.get("attributes") or {}
            for row in await conn.execute(
                sa.select(VSF.id, VSF.data).where(
                    VSF.vector_store_id == store_id, VSF.id.in_(file_ids)
                )
            )
        }
    return [
        {
            "file_id": hit.file_id,
            "filename": names[hit.file_id],
            "score": retrieval.clamp_score(hit.score),
            "attributes": attributes[hit.file_id],
            "content": [{"type": "text", "text": hit.text}],
        }
        for hit in hits
        if hit.file_id in names and hit.file_id in attributes
    ]
