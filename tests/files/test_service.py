"""``services.files`` on both stores: streamed multipart uploads cut at any byte, expiry (lazy,
then swept), and the ``on_file_deleted`` hook on every deletion path."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runstep.errors import NotFound, PayloadTooLarge
from runstep.files.storage import LocalBlobStore
from runstep.protocol.files import CreateFileRequest, FileListQuery, form_body
from runstep.services import files
from runstep.store.db import Database

PROJECT = "proj_a"
CONTENT = bytes(range(256)) * 40 + b"--not-a-boundary\r\n"


def parse(fields: dict[str, str]) -> CreateFileRequest:
    return CreateFileRequest.model_validate(form_body(fields))


def multipart(fields: dict[str, str], content: bytes = CONTENT) -> tuple[dict[str, str], bytes]:
    request = httpx.Request("POST", "http://x/", data=fields, files={"file": ("f.bin", content)})
    return {"content-type": request.headers["content-type"]}, request.read()


async def cut(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "files")


async def upload(
    db: Database, blobs: LocalBlobStore, fields: dict[str, str], size: int = 4096
) -> dict[str, Any]:
    headers, body = multipart(fields)
    return await files.create(db, blobs, PROJECT, headers, cut(body, size), 1 << 20, parse)


@pytest.fixture
def deleted_hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []

    async def record(conn: Any, project_id: str, file_id: str) -> None:
        calls.append((project_id, file_id))

    monkeypatch.setattr(files, "on_file_deleted", record)
    yield calls


@pytest.mark.parametrize("size", [1, 7, 1000, 1 << 20])
async def test_upload_survives_any_chunking(db: Database, blobs: LocalBlobStore, size: int) -> None:
    obj = await upload(db, blobs, {"purpose": "assistants"}, size)
    assert (obj["bytes"], obj["filename"]) == (len(CONTENT), "f.bin")
    assert blobs.path(obj["id"]).read_bytes() == CONTENT
    assert await files.retrieve(db, PROJECT, obj["id"]) == obj


async def test_too_large_upload_stores_nothing(db: Database, blobs: LocalBlobStore) -> None:
    headers, body = multipart({"purpose": "assistants"})
    with pytest.raises(PayloadTooLarge):
        await files.create(db, blobs, PROJECT, headers, cut(body, 100), len(CONTENT) - 1, parse)
    assert not blobs.root.exists() or list(blobs.root.iterdir()) == []
    page = await files.list_files(db, PROJECT, FileListQuery())
    assert page["data"] == []


async def test_expired_files_are_hidden_then_swept(
    db: Database,
    blobs: LocalBlobStore,
    monkeypatch: pytest.MonkeyPatch,
    deleted_hook: list[tuple[str, str]],
) -> None:
    expiry = {"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"}
    expiring = await upload(db, blobs, {"purpose": "assistants", **expiry})
    kept = await upload(db, blobs, {"purpose": "assistants"})
    later = expiring["expires_at"]

    assert await files.delete_expired_files(db, blobs, later - 1) == 0
    monkeypatch.setattr(files, "now", lambda: later)
    with pytest.raises(NotFound):
        await files.retrieve(db, PROJECT, expiring["id"])
    with pytest.raises(NotFound):
        await files.content(db, blobs, PROJECT, expiring["id"])
    with pytest.raises(NotFound):
        await files.delete(db, blobs, PROJECT, expiring["id"])
    page = await files.list_files(db, PROJECT, FileListQuery())
    assert [obj["id"] for obj in page["data"]] == [kept["id"]]
    assert blobs.path(expiring["id"]).exists()  # hidden, not yet removed
    assert deleted_hook == []

    assert await files.delete_expired_files(db, blobs, later) == 1
    assert not blobs.path(expiring["id"]).exists()
    assert blobs.path(kept["id"]).exists()
    assert deleted_hook == [(PROJECT, expiring["id"])]
    assert await files.delete_expired_files(db, blobs, later) == 0


async def test_delete_calls_the_hook_then_removes_the_blob(
    db: Database, blobs: LocalBlobStore, deleted_hook: list[tuple[str, str]]
) -> None:
    obj = await upload(db, blobs, {"purpose": "user_data"})
    with pytest.raises(NotFound):
        await files.delete(db, blobs, "proj_other", obj["id"])
    assert deleted_hook == [] and blobs.path(obj["id"]).exists()

    assert await files.delete(db, blobs, PROJECT, obj["id"]) == {
        "id": obj["id"],
        "object": "file",
        "deleted": True,
    }
    assert deleted_hook == [(PROJECT, obj["id"])]
    assert not blobs.path(obj["id"]).exists()
