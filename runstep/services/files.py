"""Files: uploads streamed into blob storage, their OpenAIFile rows, downloads, deletion and
expiry.

A file's bytes live in a ``BlobStore`` under the file's id; its row holds the wire object. A
file whose ``expires_at`` has passed is gone at once for the API (404, left out of lists) and
is removed for good by ``delete_expired_files``, which the worker's sweeper calls."""

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep import ids
from runstep.errors import InvalidRequest, NotFound, PayloadTooLarge
from runstep.files.multipart import FORM_OVERHEAD_BYTES, BodyTooLarge, StreamingForm
from runstep.files.storage import BlobNotFound, BlobStore, BlobTooLarge
from runstep.protocol.common import deleted_object, list_object
from runstep.protocol.files import CreateFileRequest, FileListQuery, file_object
from runstep.services import vector_stores
from runstep.services.common import now
from runstep.store import tables
from runstep.store.collections import FILES
from runstep.store.db import Database
from runstep.store.objects import PageRequest

# "By default, files with purpose=batch expire after 30 days" (FileExpirationAfter).
BATCH_EXPIRY_SECONDS = 30 * 24 * 3600
SWEEP_BATCH = 500

FILE_COLUMNS = tables.files.c


def not_found(file_id: str) -> NotFound:
    """The hosted API's wording for files, which differs from the other objects'."""
    return NotFound(f"No such File object: {file_id}", param="id")


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"File too large: the maximum size of an uploaded file is {max_bytes} bytes.",
        param="file",
    )


def _expired(obj: dict[str, Any], at: int) -> bool:
    expires_at = obj.get("expires_at")
    return expires_at is not None and expires_at <= at


def _expires_at(request: CreateFileRequest, created_at: int) -> int | None:
    if request.expires_after is not None:
        return created_at + request.expires_after.seconds
    if request.purpose == "batch":
        return created_at + BATCH_EXPIRY_SECONDS
    return None


async def _discard(blobs: BlobStore, file_id: str) -> None:
    """Remove a blob, even while the request that wrote it is being cancelled."""
    with anyio.CancelScope(shield=True):
        await blobs.delete(file_id)


async def create(
    db: Database,
    blobs: BlobStore,
    project_id: str,
    headers: Mapping[str, str],
    body: AsyncIterator[bytes],
    max_bytes: int,
    parse: Callable[[dict[str, str]], CreateFileRequest],
) -> dict[str, Any]:
    """``POST /v1/files``: stream the multipart ``body``'s ``file`` part into ``blobs``
    (at most ``max_bytes``, else 413 with nothing stored), check the other fields with
    ``parse`` (which raises the 400), and store the file."""
    file_id = ids.new_id(ids.FILE)
    fields: dict[str, str] = {}
    upload: tuple[str, int] | None = None  # filename, bytes
    try:
        form = StreamingForm(headers, body, max_bytes + FORM_OVERHEAD_BYTES)
        async for part in form.parts():
            if part.name != "file":
                fields[part.name] = "" if part.filename is not None else await part.text()
                continue
            if upload is not None:
                raise InvalidRequest("Only one 'file' can be uploaded per request.", param="file")
            size = await blobs.write(file_id, part.chunks(), max_bytes)
            upload = (part.filename or "file", size)
        request = parse(fields)
        if upload is None:
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        filename, size = upload
        created_at = now()
        expires_at = _expires_at(request, created_at)
        obj = file_object(
            file_id=file_id,
            size=size,
            created_at=created_at,
            filename=filename,
            purpose=request.purpose,
            expires_at=expires_at,
        )
        await _insert(db, project_id, obj)
    except BaseException as exc:
        if upload is not None:
            await _discard(blobs, file_id)
        if isinstance(exc, (BodyTooLarge, BlobTooLarge)):
            raise _too_large(max_bytes) from None
        raise
    return obj


async def _insert(db: Database, project_id: str, obj: dict[str, Any]) -> None:
    async with db.write() as conn:
        await FILES.insert(
            conn,
            project_id,
            obj,
            purpose=obj["purpose"],
            bytes=obj["bytes"],
            filename=obj["filename"],
            status=obj["status"],
            expires_at=obj.get("expires_at"),
        )


async def create_from_bytes(
    db: Database, blobs: BlobStore, project_id: str, filename: str, data: bytes, purpose: str
) -> dict[str, Any]:
    """A file the server made (e.g. a code_interpreter output), stored as an upload is."""
    file_id = ids.new_id(ids.FILE)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    size = await blobs.write(file_id, chunks(), len(data))
    obj = file_object(
        file_id=file_id,
        size=size,
        created_at=now(),
        filename=filename,
        purpose=purpose,
        expires_at=None,
    )
    try:
        await _insert(db, project_id, obj)
    except BaseException:
        await _discard(blobs, file_id)
        raise
    return obj


async def read_all(
    db: Database, blobs: BlobStore, project_id: str, file_id: str
) -> tuple[dict[str, Any], bytes]:
    """The file's object and all its bytes (for files small enough to hold in memory)."""
    obj, chunks = await content(db, blobs, project_id, file_id)
    return obj, b"".join([chunk async for chunk in chunks])


async def retrieve(db: Database, project_id: str, file_id: str) -> dict[str, Any]:
    """The file's object; 404 when it does not exist in this project or has expired."""
    async with db.read() as conn:
        obj = await FILES.get(conn, project_id, file_id)
    if obj is None or _expired(obj, now()):
        raise not_found(file_id)
    return obj


async def list_files(db: Database, project_id: str, query: FileListQuery) -> dict[str, Any]:
    """A page of the project's unexpired files, optionally of one ``purpose``."""
    scope = {"purpose": query.purpose} if query.purpose is not None else {}
    request = PageRequest(limit=query.limit, order=query.order, after=query.after)
    live = sa.or_(FILE_COLUMNS.expires_at.is_(None), FILE_COLUMNS.expires_at > now())
    async with db.read() as conn:
        page = await FILES.list(conn, project_id, request, filters=(live,), **scope)
    return list_object(page.data, page.has_more)


async def content(
    db: Database, blobs: BlobStore, project_id: str, file_id: str
) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    """The file's object and its bytes, opened before the response starts (so a missing
    blob is still a 404)."""
    obj = await retrieve(db, project_id, file_id)
    try:
        return obj, await blobs.open(file_id)
    except BlobNotFound:
        raise not_found(file_id) from None


async def on_file_deleted(conn: AsyncConnection, project_id: str, file_id: str) -> None:
    """Runs inside the transaction that deletes a file's row, on every path that deletes one
    (``DELETE /v1/files/{id}`` and ``delete_expired_files``), before the blob is removed.

    Vector stores hook in here: remove ``file_id`` from every vector store of ``project_id``
    (its ``vector_store.file`` rows and indexed chunks) and update their ``file_counts`` and
    ``usage_bytes``, all on ``conn`` so the file and its index entries go together."""
    await vector_stores.remove_file_everywhere(conn, project_id, file_id)


async def _delete_row(conn: AsyncConnection, project_id: str, file_id: str) -> bool:
    """Delete the row and whatever refers to it; True if it existed."""
    if not await FILES.delete(conn, project_id, file_id):
        return False
    await on_file_deleted(conn, project_id, file_id)
    return True


async def delete(db: Database, blobs: BlobStore, project_id: str, file_id: str) -> dict[str, Any]:
    """``DELETE /v1/files/{id}``: the row (with ``on_file_deleted``), then the blob."""
    async with db.write() as conn:
        obj = await FILES.get(conn, project_id, file_id, for_update=True)
        if obj is None or _expired(obj, now()):
            raise not_found(file_id)
        await _delete_row(conn, project_id, file_id)
    await _discard(blobs, file_id)
    return deleted_object(file_id, "file")


async def delete_expired_files(db: Database, blobs: BlobStore, at: int) -> int:
    """Delete every file whose ``expires_at`` is at or before ``at``, like ``delete`` does;
    returns how many. Safe to run from several sweepers at once."""
    deleted = 0
    while True:
        async with db.read() as conn:
            result = await conn.execute(
                sa.select(FILE_COLUMNS.project_id, FILE_COLUMNS.id)
                .where(FILE_COLUMNS.expires_at <= at)
                .order_by(FILE_COLUMNS.expires_at)
                .limit(SWEEP_BATCH)
            )
            batch = [(row.project_id, row.id) for row in result]
        for project_id, file_id in batch:
            async with db.write() as conn:
                removed = await _delete_row(conn, project_id, file_id)
            if removed:
                await blobs.delete(file_id)
                deleted += 1
        if len(batch) < SWEEP_BATCH:
            return deleted
