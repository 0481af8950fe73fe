"""``LocalBlobStore``: streamed, atomic, bounded writes; chunked reads; deletes."""

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runstep.config import Settings
from runstep.files.storage import (
    CHUNK_BYTES,
    BlobNotFound,
    BlobTooLarge,
    LocalBlobStore,
    blob_store,
)

MIB = 1024 * 1024


async def pieces(total: int, size: int = 64 * 1024, fill: int = 7) -> AsyncIterator[bytes]:
    """``total`` bytes in ``size`` chunks, made as they are asked for."""
    sent = 0
    while sent < total:
        chunk = bytes([(fill + sent // size) % 256]) * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def read_all(store: LocalBlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in await store.open(key)])


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "files")


def names(store: LocalBlobStore) -> list[str]:
    return sorted(path.name for path in store.root.iterdir()) if store.root.exists() else []


async def test_write_streams_to_one_file_and_reads_back_in_chunks(store: LocalBlobStore) -> None:
    expected = b"".join([chunk async for chunk in pieces(MIB + 5)])
    assert await store.write("file-a", pieces(MIB + 5), max_bytes=2 * MIB) == MIB + 5
    assert names(store) == ["file-a"]  # no temporary file left
    assert store.path("file-a").read_bytes() == expected

    sizes = [len(chunk) async for chunk in await store.open("file-a")]
    assert sum(sizes) == MIB + 5 and max(sizes) == CHUNK_BYTES
    assert await read_all(store, "file-a") == expected


async def test_a_blob_exactly_at_the_limit_is_stored(store: LocalBlobStore) -> None:
    assert await store.write("file-a", pieces(1000, size=300), max_bytes=1000) == 1000


async def test_going_past_the_limit_leaves_nothing(store: LocalBlobStore) -> None:
    with pytest.raises(BlobTooLarge) as raised:
        await store.write("file-a", pieces(1001, size=300), max_bytes=1000)
    assert raised.value.max_bytes == 1000
    assert names(store) == []


async def test_a_failing_source_leaves_nothing_and_keeps_the_old_blob(
    store: LocalBlobStore,
) -> None:
    await store.write("file-a", pieces(10), max_bytes=100)

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await store.write("file-a", broken(), max_bytes=100)
    assert names(store) == ["file-a"]
    assert await read_all(store, "file-a") == b"\x07" * 10


async def test_delete_removes_and_tolerates_missing_blobs(store: LocalBlobStore) -> None:
    await store.write("file-a", pieces(10), max_bytes=100)
    await store.write("file-b", pieces(10), max_bytes=100)
    await store.delete("file-a")
    await store.delete("file-a")
    await store.delete("file-never")
    assert names(store) == ["file-b"]
    with pytest.raises(BlobNotFound):
        await store.open("file-a")


@pytest.mark.parametrize("key", ["", "../escape", "a/b", ".hidden", "x" * 200])
def test_keys_cannot_leave_the_directory(store: LocalBlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.path(key)


async def test_large_blobs_never_sit_in_memory(store: LocalBlobStore) -> None:
    """Writing and reading 32 MiB allocates about one chunk at a time, not the blob."""
    tracemalloc.start()
    try:
        await store.write("file-big", pieces(32 * MIB), max_bytes=64 * MIB)
        total = 0
        async for chunk in await store.open("file-big"):
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 32 * MIB
    assert peak < 4 * MIB, peak


def test_the_store_lives_under_the_data_directory(tmp_path: Path) -> None:
    store = blob_store(Settings(data_dir=tmp_path))
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "files"
