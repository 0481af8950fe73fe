"""Vector-store file ingestion: the worker loop that turns attached files into indexed chunks.

``Ingester.run`` claims one waiting ``vector_store.file`` at a time under a lease (SKIP
LOCKED on PostgreSQL, so many workers share the queue), then: extracts the blob's text,
chunks it with the file's strategy, embeds the chunks with this process's embedder and, in
one transaction fenced on the lease, stores the chunks (``index.add_chunks``), marks the file
``completed`` (or ``failed`` with ``last_error``) and recomputes the store's and batch's
counts. A file deleted, cancelled or re-attached meanwhile has lost its lease (its row is
gone or changed, under the same row lock), so nothing is stored for it: no orphan chunks.

The lease is renewed while the file is processed; a worker that dies leaves a lease that
lapses, and another worker takes the file over. A file whose ingestion was interrupted
``MAX_ATTEMPTS`` times fails with ``server_error``. Retryable embedding failures (an
embeddings API that is down) are retried with a growing delay, up to the same limit.

The loop sleeps until the bus key ``INGEST_SIGNAL`` is set (a file was attached, in this
process or, on PostgreSQL, in any process) or ``worker_poll_seconds`` pass."""

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from runstep import ids
from runstep.config import Settings
from runstep.files.storage import BlobStore
from runstep.runs.bus import LocalBus, wait
from runstep.services.vector_stores import (
    INGEST_SIGNAL,
    refresh_batch,
    refresh_store,
    shared_embedder,
)
from runstep.store import tables
from runstep.store import vector_store_files as vsf_rows
from runstep.store.db import Database
from runstep.tools.file_search import index
from runstep.tools.file_search.chunking import chunk_text
from runstep.tools.file_search.embeddings import EmbeddingError
from runstep.tools.file_search.extract import ExtractionError, extract_text

log = logging.getLogger("runstep.ingestion")

MAX_ATTEMPTS = 5
EMBED_BATCH = 32
RETRY_BASE_SECONDS = 5.0


class _Failed(Exception):
    """Ingestion ends with ``failed`` and this ``last_error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _LeaseLost(Exception):
    """The file was deleted, cancelled or re-attached while it was being processed."""


class Ingester:
    """Claims and ingests waiting vector-store files, one at a time."""

    def __init__(
        self, db: Database, bus: LocalBus, blobs: BlobStore, settings: Settings, owner: str
    ) -> None:
        self.db, self.bus, self.blobs, self.settings = db, bus, blobs, settings
        self.owner = owner

    def _lease_token(self) -> str:
        return f"{ids.random_token(12)}:{self.owner}"[:64]

    async def run(self) -> None:
        """Ingest until cancelled; sleep when there is nothing to do."""
        while True:
            signal = self.bus.signal(INGEST_SIGNAL)  # taken before looking, so no wake is lost
            row = await self._claim()
            if row is not None:
                await self.ingest(row)
                continue
            await wait(signal, self.settings.worker_poll_seconds)

    async def _claim(self) -> vsf_rows.FileRow | None:
        try:
            async with self.db.read() as conn:
                if not await vsf_rows.any_waiting(conn, time.time()):
                    return None
            async with self.db.write() as conn:
                rows = await vsf_rows.claim(
                    conn, self._lease_token(), time.time(), self.settings.lease_seconds, 1
                )
        except Exception:
            log.exception("claiming vector store files failed; retrying")
            return None
        return rows[0] if rows else None

    async def ingest(self, row: vsf_rows.FileRow) -> None:
        """Process one claimed file to its end (or until its lease is lost)."""
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(row, lost))
        records: list[index.ChunkRecord] = []
        usage, failure, retry = 0, None, False
        try:
            if row.attempts > MAX_ATTEMPTS:
                raise _Failed("server_error", "Processing the file was interrupted too many times.")
            records, usage = await self._process(row, lost)
        except _Failed as exc:
            failure = exc
        except _LeaseLost:
            log.info("vector store file %s in %s: lease lost", row.id, row.vector_store_id)
            return
        except EmbeddingError as exc:
            retry = exc.retryable and row.attempts < MAX_ATTEMPTS
            failure = _Failed("server_error", exc.message)
        except Exception as exc:
            log.exception("ingesting %s into %s failed", row.id, row.vector_store_id)
            failure = _Failed(
                "server_error", f"The file could not be processed: {type(exc).__name__}."
            )
        finally:
            keeper.cancel()
        try:
            if retry:
                await self._retry_later(row)
            elif failure is not None:
                await self._finish(row, "failed", failure.code, failure.message)
            else:
                await self._finish(row, "completed", records=records, usage=usage)
        except Exception:  # e.g. the database is down: the lease lapses and it is retried
            log.exception("recording the ingestion of %s failed", row.id)

    async def _keep_lease(self, row: vsf_rows.FileRow, lost: asyncio.Event) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.db.write() as conn:
                    held = await vsf_rows.renew(
                        conn, row, time.time() + self.settings.lease_seconds
                    )
            except Exception:
                log.warning("renewing the ingestion lease of %s failed", row.id, exc_info=True)
                continue
            if not held:
                lost.set()
                return

    async def _filename(self, row: vsf_rows.FileRow) -> str:
        async with self.db.read() as conn:
            result = await conn.execute(
                tables.files.select()
                .with_only_columns(tables.files.c.filename)
                .where(tables.files.c.project_id == row.project_id, tables.files.c.id == row.id)
            )
            filename: str | None = result.scalar_one_or_none()
        if filename is None:
            raise _LeaseLost()  # the File was deleted: so was this row
        return filename

    async def _process(
        self, row: vsf_rows.FileRow, lost: asyncio.Event
    ) -> tuple[list[index.ChunkRecord], int]:
        filename = await self._filename(row)
        path: Path = self.blobs.path(row.id)
        try:
            text = await asyncio.to_thread(extract_text, path, filename)
        except ExtractionError as exc:
            raise _Failed(exc.code, exc.message) from None
        except FileNotFoundError:
            raise _LeaseLost() from None  # the blob goes only after the File's row
        if not text.strip():
            raise _Failed("invalid_file", f"The file '{filename}' contains no text to index.")
        static: dict[str, Any] = row.data["chunking_strategy"]["static"]
        chunks = await asyncio.to_thread(
            chunk_text, text, static["max_chunk_size_tokens"], static["chunk_overlap_tokens"]
        )
        embedder = shared_embedder()
        records: list[index.ChunkRecord] = []
        for start in range(0, len(chunks), EMBED_BATCH):
            if lost.is_set():
                raise _LeaseLost()
            batch = chunks[start : start + EMBED_BATCH]
            vectors = await embedder.embed([chunk.text for chunk in batch])
            records.extend(
                index.ChunkRecord(
                    vector_store_id=row.vector_store_id,
                    file_id=row.id,
                    index=chunk.index,
                    text=chunk.text,
                    vector=vector,
                )
                for chunk, vector in zip(batch, vectors, strict=True)
            )
        return records, len(text.encode("utf-8"))

    async def _finish(
        self,
        row: vsf_rows.FileRow,
        status: str,
        code: str | None = None,
        message: str | None = None,
        *,
        records: list[index.ChunkRecord] | None = None,
        usage: int = 0,
    ) -> None:
        """Store the outcome in one transaction fenced on the lease (the row stays locked
        while the chunks are added, so a concurrent deletion waits and then removes them)."""
        async with self.db.write() as conn:
            obj = await vsf_rows.lock_leased(conn, row)
            if obj is None:
                return
            if records:
                await index.add_chunks(conn, row.project_id, records)
            obj = {
                **obj,
                "status": status,
                "usage_bytes": usage,
                "last_error": None if code is None else {"code": code, "message": message},
            }
            await vsf_rows.update(
                conn,
                row.pk,
                data=obj,
                status=status,
                usage_bytes=usage,
                lease_owner=None,
                lease_expires_at=None,
            )
            await refresh_store(conn, row.project_id, row.vector_store_id)
            if row.batch_id is not None:
                await refresh_batch(conn, row.project_id, row.batch_id)

    async def _retry_later(self, row: vsf_rows.FileRow) -> None:
        """Keep the lease, expiring after a delay: then any worker may claim the file again."""
        delay = RETRY_BASE_SECONDS * 2 ** (row.attempts - 1)
        async with self.db.write() as conn:
            if await vsf_rows.lock_leased(conn, row) is not None:
                await vsf_rows.update(conn, row.pk, lease_expires_at=time.time() + delay)
