"""Blob storage for uploaded file bytes: a small interface, and a local-directory store.

Blobs are written as streams (never held in memory whole), appear atomically, and are read
back in chunks. A key is the file's id."""

import os
import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Protocol

import anyio
import anyio.to_thread

from runstep import ids
from runstep.config import Settings

CHUNK_BYTES = 256 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_TEMP_SUFFIX = ".part"


class BlobTooLarge(Exception):
    """A blob went past the ``max_bytes`` it was written with; nothing was stored."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"blob larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


class BlobNotFound(Exception):
    """No blob is stored under the key."""


class BlobStore(Protocol):
    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        """Store ``chunks`` under ``key`` and return the size. Past ``max_bytes`` raise
        ``BlobTooLarge`` and leave nothing behind; the blob appears only once complete."""
        ...

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks; raises ``BlobNotFound`` here, before any chunk."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""
        ...

    def path(self, key: str) -> Path:
        """A local path to the blob, for readers that need a real file (e.g. parsers)."""
        ...


class LocalBlobStore:
    """One file per blob in ``root``; writes go to a temporary file in the same directory
    and are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        target = self.path(key)
        await anyio.to_thread.run_sync(lambda: self.root.mkdir(parents=True, exist_ok=True))
        temp = self.root / f".{key}.{ids.random_token(8)}{_TEMP_SUFFIX}"
        size = 0
        try:
            async with await anyio.open_file(temp, "xb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobTooLarge(max_bytes)
                    await out.write(chunk)
                await anyio.to_thread.run_sync(_flush_to_disk, out.wrapped)
            await anyio.to_thread.run_sync(os.replace, temp, target)
        except BaseException:
            # Synchronous on purpose: it must also run when the request is cancelled.
            with suppress(FileNotFoundError):
                temp.unlink()
            raise
        return size

    async def open(self, key: str) -> AsyncIterator[bytes]:
        try:
            handle = await anyio.open_file(self.path(key), "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return _chunks(handle)

    async def delete(self, key: str) -> None:
        path = self.path(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))


def _flush_to_disk(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())


async def _chunks(handle: anyio.AsyncFile[bytes]) -> AsyncIterator[bytes]:
    async with handle:
        while chunk := await handle.read(CHUNK_BYTES):
            yield chunk


def blob_store(settings: Settings) -> BlobStore:
    """The store for uploaded files: ``RUNSTEP_DATA_DIR/files/``."""
    return LocalBlobStore(settings.data_dir / "files")
