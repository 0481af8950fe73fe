"""Vector stores through the official client, on both stores: stores, files and batches
ingested by the worker (text, PDF, DOCX; unsupported and corrupt files fail), search, file
deletion, expiry, validation and tenant isolation. Every response is checked against the spec
by the ``client`` fixture."""

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import docx
import httpx
import openai
import pytest
import sqlalchemy as sa
from fpdf import FPDF

from runstep.store import tables
from runstep.store.db import Database
from tests.conftest import RunningServer
from tests.support.asyncio_bridge import run_sync
from tests.support.validating_client import client as validating_client
from tests.support.validating_client import validate_body

POLL_SECONDS = 60

JUPITER = (
    "Jupiter's Great Red Spot is an enormous anticyclonic storm, wider than the whole Earth, "
    "that astronomers have watched raging in the planet's southern hemisphere for centuries."
)
SOURDOUGH = (
    "To bake sourdough bread, feed the starter the night before, mix flour, water and salt, "
    "let the dough ferment slowly overnight, then bake it in a very hot covered dutch oven."
)
TOMATOES = (
    "Tomato plants need full sun for most of the day, deep watering at the base of the plant, "
    "and support from stakes or cages as the fruit ripens in late summer."
)


def pdf_bytes(*paragraphs: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    for paragraph in paragraphs:
        pdf.multi_cell(0, 8, paragraph)
    return bytes(pdf.output())


def docx_bytes(*paragraphs: str) -> bytes:
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
CORRUPT_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nthis is not a pdf\n%%EOF"


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate_body(body)
    return body["error"]


@pytest.fixture
def http(server: RunningServer, api_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_key}", "OpenAI-Beta": "assistants=v2"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http_client:
        yield http_client


def upload(client: openai.OpenAI, name: str, content: bytes) -> str:
    return client.files.create(file=(name, content), purpose="assistants").id


def wait_until(check: Callable[[], Any], timeout: float = POLL_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def create_and_poll(client: openai.OpenAI, **params: Any) -> Any:
    """Create a store and wait until no file is in progress (the SDK has no such helper)."""
    store = client.vector_stores.create(**params)

    def ready() -> Any:
        current = client.vector_stores.retrieve(store.id)
        return current if current.status != "in_progress" else None

    return wait_until(ready)


def counts(obj: Any) -> dict[str, int]:
    return obj.file_counts.model_dump()


def search_texts(page: Any) -> list[str]:
    return [item.content[0].text for item in page.data]


# --- stores -----------------------------------------------------------------------------------


def test_store_lifecycle(client: openai.OpenAI, http: httpx.Client) -> None:
    before = int(time.time())
    store = client.vector_stores.create(name="docs", metadata={"team": "a"})
    assert store.id.startswith("vs_") and store.object == "vector_store"
    assert (store.name, store.status, store.usage_bytes, store.metadata) == (
        "docs",
        "completed",
        0,
        {"team": "a"},
    )
    assert counts(store) == {
        "in_progress": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "total": 0,
    }
    assert before <= store.created_at == store.last_active_at <= int(time.time())
    assert store.expires_after is None and store.expires_at is None
    assert client.vector_stores.retrieve(store.id).model_dump() == store.model_dump()

    unnamed = client.vector_stores.create()
    assert unnamed.name == ""

    updated = client.vector_stores.update(
        store.id,
        name="renamed",
        metadata={"team": "b"},
        expires_after={"anchor": "last_active_at", "days": 7},
    )
    assert (updated.name, updated.metadata) == ("renamed", {"team": "b"})
    assert updated.expires_after is not None and updated.expires_after.days == 7
    assert updated.expires_at == updated.last_active_at + 7 * 86400
    cleared = http.post(f"/vector_stores/{store.id}", json={"expires_after": None}).json()
    assert cleared["expires_at"] is None and "expires_after" not in cleared

    assert [s.id for s in client.vector_stores.list().data] == [unnamed.id, store.id]
    assert [s.id for s in client.vector_stores.list(order="asc", limit=1).data] == [store.id]

    deleted = client.vector_stores.delete(store.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (store.id, "vector_store.deleted", True)
    with pytest.raises(openai.NotFoundError) as raised:
        client.vector_stores.retrieve(store.id)
    assert raised.value.body["message"] == f"No vector store found with id '{store.id}'."
    assert [s.id for s in client.vector_stores.list().data] == [unnamed.id]


def test_create_with_text_pdf_and_docx(client: openai.OpenAI) -> None:
    ids = [
        upload(client, "jupiter.txt", JUPITER.encode()),
        upload(client, "bread.pdf", pdf_bytes(SOURDOUGH)),
        upload(client, "garden.docx", docx_bytes(TOMATOES)),
    ]
    store = create_and_poll(client, file_ids=ids, name="mixed")

    assert store.status == "completed"
    assert counts(store) == {
        "in_progress": 0,
        "completed": 3,
        "failed": 0,
        "cancelled": 0,
        "total": 3,
    }
    files = client.vector_stores.files.list(store.id).data
    assert sorted(f.id for f in files) == sorted(ids)
    for item in files:
        assert item.status == "completed" and item.last_error is None
        assert item.usage_bytes > 0 and item.vector_store_id == store.id
        assert item.chunking_strategy is not None
        assert item.chunking_strategy.model_dump() == {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
        }
    assert store.usage_bytes == sum(f.usage_bytes for f in files)

    for file_id, phrase in zip(ids, ["Great Red Spot", "sourdough", "Tomato plants"], strict=True):
        page = client.vector_stores.files.content(file_id, vector_store_id=store.id)
        assert any(phrase in part.text for part in page.data), page.data


def test_file_create_and_poll_attributes_and_delete(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    store = client.vector_stores.create(name="one")
    file_id = upload(client, "jupiter.md", JUPITER.encode())
    attached = client.vector_stores.files.create_and_poll(
        file_id,
        vector_store_id=store.id,
        attributes={"topic": "space", "year": 2024, "public": True},
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50},
        },
    )
    assert (attached.id, attached.object, attached.status) == (
        file_id,
        "vector_store.file",
        "completed",
    )
    assert attached.attributes == {"topic": "space", "year": 2024, "public": True}
    raw = http.get(f"/vector_stores/{store.id}/files/{file_id}").json()
    assert raw["attributes"] == {"topic": "space", "year": 2024, "public": True}
    assert raw["chunking_strategy"]["static"] == {
        "max_chunk_size_tokens": 100,
        "chunk_overlap_tokens": 50,
    }

    updated = client.vector_stores.files.update(
        file_id, vector_store_id=store.id, attributes={"topic": "astronomy"}
    )
    assert updated.attributes == {"topic": "astronomy"}
    assert client.vector_stores.files.retrieve(file_id, vector_store_id=store.id).attributes == {
        "topic": "astronomy"
    }
    assert [f.id for f in client.vector_stores.files.list(store.id, filter="completed")] == [
        file_id
    ]
    assert client.vector_stores.files.list(store.id, filter="failed").data == []
    current = client.vector_stores.retrieve(store.id)
    assert counts(current)["completed"] == 1 and current.usage_bytes == attached.usage_bytes

    deleted = client.vector_stores.files.delete(file_id, vector_store_id=store.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (
        file_id,
        "vector_store.file.deleted",
        True,
    )
    assert client.files.retrieve(file_id).id == file_id  # the File itself stays
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id, vector_store_id=store.id)
    emptied = client.vector_stores.retrieve(store.id)
    assert counts(emptied)["total"] == 0 and emptied.usage_bytes == 0
    assert client.vector_stores.search(store.id, query="storm on Jupiter").data == []


def test_batches_upload_and_poll_and_list(client: openai.OpenAI, http: httpx.Client) -> None:
    store = client.vector_stores.create(name="batched")
    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id,
        files=[("a.txt", JUPITER.encode()), ("b.txt", SOURDOUGH.encode())],
    )
    assert batch.id.startswith("vsfb_") and batch.object == "vector_store.files_batch"
    assert batch.status == "completed"
    assert counts(batch) == {
        "in_progress": 0,
        "completed": 2,
        "failed": 0,
        "cancelled": 0,
        "total": 2,
    }
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert len(listed.data) == 2 and all(f.status == "completed" for f in listed.data)
    assert (
        client.vector_stores.file_batches.list_files(
            batch.id, vector_store_id=store.id, filter="failed"
        ).data
        == []
    )
    assert (
        client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id).id
        == batch.id
    )

    extra = upload(client, "c.txt", TOMATOES.encode())
    per_file = client.vector_stores.file_batches.create_and_poll(
        store.id, files=[{"file_id": extra, "attributes": {"topic": "garden"}}]
    )
    assert counts(per_file)["completed"] == 1
    assert client.vector_stores.files.retrieve(extra, vector_store_id=store.id).attributes == {
        "topic": "garden"
    }
    assert counts(client.vector_stores.retrieve(store.id))["completed"] == 3

    both = {"file_ids": [extra], "files": [{"file_id": extra}]}
    assert _error(http.post(f"/vector_stores/{store.id}/file_batches", json=both), 400)
    assert _error(http.post(f"/vector_stores/{store.id}/file_batches", json={}), 400)
    too_many = {"file_ids": [extra] * 2001}
    error = _error(http.post(f"/vector_stores/{store.id}/file_batches", json=too_many), 400)
    assert error["param"] == "file_ids"
    empty = {"file_ids": []}
    assert _error(http.post(f"/vector_stores/{store.id}/file_batches", json=empty), 400)


def test_cancelled_batch_settles(client: openai.OpenAI) -> None:
    store = client.vector_stores.create()
    file_ids = [upload(client, f"{i}.txt", f"{SOURDOUGH} {i}".encode()) for i in range(6)]
    batch = client.vector_stores.file_batches.create(store.id, file_ids=file_ids)
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    file_counts = counts(cancelled)
    assert file_counts["in_progress"] == 0 and file_counts["total"] == 6
    assert file_counts["completed"] + file_counts["cancelled"] == 6
    time.sleep(0.5)  # a file that was being ingested does not come back
    settled = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert counts(settled) == file_counts
    assert counts(client.vector_stores.retrieve(store.id)) == file_counts
    statuses = {f.id: f.status for f in client.vector_stores.files.list(store.id, limit=100)}
    assert sorted(statuses.values()).count("cancelled") == file_counts["cancelled"]


def test_unsupported_and_corrupt_files_fail_and_the_worker_carries_on(
    client: openai.OpenAI,
) -> None:
    store = client.vector_stores.create()
    image = upload(client, "photo.png", PNG)
    corrupt = upload(client, "broken.pdf", CORRUPT_PDF)
    good = upload(client, "good.txt", TOMATOES.encode())
    batch = client.vector_stores.file_batches.create_and_poll(
        store.id, file_ids=[image, corrupt, good]
    )
    assert batch.status == "completed"
    assert counts(batch) == {
        "in_progress": 0,
        "completed": 1,
        "failed": 2,
        "cancelled": 0,
        "total": 3,
    }

    failed_image = client.vector_stores.files.retrieve(image, vector_store_id=store.id)
    assert failed_image.status == "failed" and failed_image.last_error is not None
    assert failed_image.last_error.code == "unsupported_file"
    failed_pdf = client.vector_stores.files.retrieve(corrupt, vector_store_id=store.id)
    assert failed_pdf.status == "failed" and failed_pdf.last_error is not None
    assert failed_pdf.last_error.code == "invalid_file" and failed_pdf.last_error.message
    assert client.vector_stores.files.retrieve(good, vector_store_id=store.id).status == "completed"
    failed = client.vector_stores.files.list(store.id, filter="failed").data
    assert sorted(f.id for f in failed) == sorted([image, corrupt])
    assert client.vector_stores.files.content(image, vector_store_id=store.id).data == []

    later = client.vector_stores.files.create_and_poll(
        upload(client, "later.txt", JUPITER.encode()), vector_store_id=store.id
    )
    assert later.status == "completed"


# --- search -----------------------------------------------------------------------------------


def test_search_finds_paraphrased_passages_and_honours_filters(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    store = client.vector_stores.create(name="topics")
    documents = {
        "space.txt": (JUPITER, "space"),
        "bread.pdf": (SOURDOUGH, "food"),
        "garden.docx": (TOMATOES, "garden"),
    }
    builders = {"txt": str.encode, "pdf": pdf_bytes, "docx": docx_bytes}
    files = []
    for name, (text, topic) in documents.items():
        content = builders[name.rsplit(".", 1)[1]](text)
        files.append({"file_id": upload(client, name, content), "attributes": {"topic": topic}})
    client.vector_stores.file_batches.create_and_poll(store.id, files=files)
    by_topic = {f["attributes"]["topic"]: f["file_id"] for f in files}
    before = client.vector_stores.retrieve(store.id).last_active_at

    page = client.vector_stores.search(
        store.id, query="Which planet has a gigantic hurricane that has lasted hundreds of years?"
    )
    assert page.data[0].file_id == by_topic["space"]
    assert page.data[0].filename == "space.txt"
    assert page.data[0].attributes == {"topic": "space"}
    assert "Great Red Spot" in page.data[0].content[0].text
    assert all(0 <= item.score <= 1 for item in page.data)
    assert [item.score for item in page.data] == sorted((i.score for i in page.data), reverse=True)
    raw = http.post(
        f"/vector_stores/{store.id}/search",
        json={"query": "how to make bread", "rewrite_query": True},
    ).json()
    assert raw["search_query"] == ["how to make bread"]
    assert raw["data"][0]["file_id"] == by_topic["food"]
    assert raw["has_more"] is False and raw["next_page"] is None

    one = client.vector_stores.search(store.id, query="growing vegetables", max_num_results=1)
    assert [item.file_id for item in one.data] == [by_topic["garden"]]

    filtered = client.vector_stores.search(
        store.id,
        query="Which planet has a gigantic hurricane?",
        filters={"type": "eq", "key": "topic", "value": "food"},
    )
    assert {item.file_id for item in filtered.data} == {by_topic["food"]}
    either = client.vector_stores.search(
        store.id,
        query="storm",
        filters={
            "type": "or",
            "filters": [
                {"type": "eq", "key": "topic", "value": "garden"},
                {"type": "eq", "key": "topic", "value": "space"},
            ],
        },
    )
    assert {item.file_id for item in either.data} <= {by_topic["garden"], by_topic["space"]}
    none = client.vector_stores.search(
        store.id, query="bread", filters={"type": "eq", "key": "topic", "value": "nothing"}
    )
    assert none.data == []

    several = client.vector_stores.search(store.id, query=["sourdough starter", "tomato stakes"])
    assert {by_topic["food"], by_topic["garden"]} <= {item.file_id for item in several.data}
    strict = client.vector_stores.search(
        store.id, query="bread", ranking_options={"score_threshold": 1.0}
    )
    assert all(item.score >= 1.0 for item in strict.data)
    assert client.vector_stores.retrieve(store.id).last_active_at >= before

    for body, param in [
        ({"query": "x", "max_num_results": 0}, "max_num_results"),
        ({"query": "x", "max_num_results": 51}, "max_num_results"),
        (
            {"query": "x", "ranking_options": {"score_threshold": 2}},
            "ranking_options.score_threshold",
        ),
        ({}, "query"),
    ]:
        assert (
            _error(http.post(f"/vector_stores/{store.id}/search", json=body), 400)["param"] == param
        )


# --- file deletion, expiry, validation, isolation ---------------------------------------------


def test_deleting_a_file_removes_it_from_every_store(client: openai.OpenAI) -> None:
    shared = upload(client, "jupiter.txt", JUPITER.encode())
    other = upload(client, "bread.txt", SOURDOUGH.encode())
    first = create_and_poll(client, file_ids=[shared, other])
    second = create_and_poll(client, file_ids=[shared])
    assert counts(first)["completed"] == 2 and counts(second)["completed"] == 1

    client.files.delete(shared)

    for store, remaining in ((first, 1), (second, 0)):
        current = client.vector_stores.retrieve(store.id)
        assert counts(current)["total"] == remaining == counts(current)["completed"]
        with pytest.raises(openai.NotFoundError):
            client.vector_stores.files.retrieve(shared, vector_store_id=store.id)
        hits = client.vector_stores.search(store.id, query="storm on Jupiter").data
        assert shared not in {item.file_id for item in hits}
    assert client.vector_stores.retrieve(first.id).usage_bytes == len(SOURDOUGH.encode())


def _chunk_count(database_url: str, **where: str) -> int:
    async def count() -> int:
        database = Database(database_url)
        table = tables.chunks
        try:
            async with database.read() as conn:
                clauses = [table.c[name] == value for name, value in where.items()]
                query = sa.select(sa.func.count()).select_from(table).where(*clauses)
                return int((await conn.execute(query)).scalar_one())
        finally:
            await database.close()

    return run_sync(count())


def test_no_chunks_outlive_their_files_or_stores(
    client: openai.OpenAI, server: RunningServer
) -> None:
    """Files deleted while (or before) they are ingested, and deleted stores, leave no chunks."""
    store = client.vector_stores.create()
    file_ids = [upload(client, f"{i}.txt", f"{JUPITER} {i}".encode()) for i in range(5)]
    batch = client.vector_stores.file_batches.create(store.id, file_ids=file_ids)
    doomed, detached = file_ids[-1], file_ids[-2]
    client.files.delete(doomed)  # most likely still waiting or being ingested
    client.vector_stores.files.delete(detached, vector_store_id=store.id)
    settled = client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id)
    assert counts(settled)["completed"] == counts(settled)["total"] == 3
    time.sleep(0.5)  # an ingestion that lost its file commits nothing, even late
    assert _chunk_count(server.database_url, file_id=doomed) == 0
    assert _chunk_count(server.database_url, file_id=detached) == 0
    assert _chunk_count(server.database_url, vector_store_id=store.id) >= 3
    assert counts(client.vector_stores.retrieve(store.id))["total"] == 3

    client.vector_stores.delete(store.id)
    assert _chunk_count(server.database_url, vector_store_id=store.id) == 0
    assert client.files.retrieve(file_ids[0]).id == file_ids[0]  # the Files stay


def _expire_now(database_url: str, store_id: str) -> None:
    """As if the store's ``expires_after`` had passed."""

    async def expire() -> None:
        database = Database(database_url)
        table = tables.vector_stores
        try:
            async with database.write() as conn:
                data = (
                    await conn.execute(sa.select(table.c.data).where(table.c.id == store_id))
                ).scalar_one()
                data = {**data, "expires_at": 1, "last_active_at": 1}
                await conn.execute(
                    table.update().where(table.c.id == store_id).values(data=data, expires_at=1)
                )
        finally:
            await database.close()

    run_sync(expire())


def _status_column(database_url: str, store_id: str) -> str:
    async def read() -> str:
        database = Database(database_url)
        table = tables.vector_stores
        try:
            async with database.read() as conn:
                query = sa.select(table.c.status).where(table.c.id == store_id)
                status: str = (await conn.execute(query)).scalar_one()
                return status
        finally:
            await database.close()

    return run_sync(read())


def test_expiry(client: openai.OpenAI, http: httpx.Client, server: RunningServer) -> None:
    store = client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 1})
    assert store.expires_after is not None and store.expires_after.anchor == "last_active_at"
    assert store.expires_at == store.last_active_at + 86400

    _expire_now(server.database_url, store.id)
    assert client.vector_stores.retrieve(store.id).status == "expired"
    assert client.vector_stores.list().data[0].status == "expired"
    error = _error(http.post(f"/vector_stores/{store.id}/search", json={"query": "x"}), 400)
    assert "expired" in error["message"]
    wait_until(lambda: _status_column(server.database_url, store.id) == "expired", timeout=20)
    assert client.vector_stores.retrieve(store.id).status == "expired"
    assert client.vector_stores.delete(store.id).deleted


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"file_ids": ["file-x"] * 501}, "file_ids"),
        ({"expires_after": {"anchor": "last_active_at", "days": 0}}, "expires_after.days"),
        ({"expires_after": {"anchor": "last_active_at", "days": 366}}, "expires_after.days"),
        ({"expires_after": {"anchor": "created_at", "days": 1}}, "expires_after.anchor"),
        (
            {
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0},
                }
            },
            "chunking_strategy.static.max_chunk_size_tokens",
        ),
        (
            {
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101},
                }
            },
            "chunking_strategy.static",
        ),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_create_refuses_invalid_bodies(
    http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    assert _error(http.post("/vector_stores", json=body), 400)["param"].startswith(param)


def test_unknown_ids_are_404s(client: openai.OpenAI, http: httpx.Client) -> None:
    error = _error(http.post("/vector_stores", json={"file_ids": ["file-missing"]}), 404)
    assert (error["message"], error["param"]) == ("No such File object: file-missing", "file_ids")
    assert client.vector_stores.list().data == []  # nothing was created
    store = client.vector_stores.create()
    error = _error(http.post(f"/vector_stores/{store.id}/files", json={"file_id": "file-x"}), 404)
    assert error["param"] == "file_id"
    file_id = upload(client, "a.txt", b"hello")
    too_many = {"file_id": file_id, "attributes": {str(i): i for i in range(17)}}
    assert _error(http.post(f"/vector_stores/{store.id}/files", json=too_many), 400)["param"] == (
        "attributes"
    )
    long_value = {"file_id": file_id, "attributes": {"k": "v" * 513}}
    assert _error(http.post(f"/vector_stores/{store.id}/files", json=long_value), 400)
    for path in (
        "/vector_stores/vs_missing",
        "/vector_stores/vs_missing/files",
        f"/vector_stores/{store.id}/files/{file_id}",
        f"/vector_stores/{store.id}/files/{file_id}/content",
        f"/vector_stores/{store.id}/file_batches/vsfb_missing",
        f"/vector_stores/{store.id}/file_batches/vsfb_missing/files",
    ):
        _error(http.get(path), 404)
    _error(http.delete(f"/vector_stores/{store.id}/files/{file_id}"), 404)
    _error(http.post("/vector_stores/vs_missing/search", json={"query": "x"}), 404)


def test_other_projects_cannot_see_or_use_stores(
    client: openai.OpenAI, server: RunningServer
) -> None:
    secret = upload(client, "secret.txt", JUPITER.encode())
    store = create_and_poll(client, file_ids=[secret])
    with validating_client(server.base_url, server.new_key()) as intruder:
        attempts: list[Callable[[], Any]] = [
            lambda: intruder.vector_stores.retrieve(store.id),
            lambda: intruder.vector_stores.update(store.id, name="mine"),
            lambda: intruder.vector_stores.delete(store.id),
            lambda: intruder.vector_stores.files.list(store.id),
            lambda: intruder.vector_stores.files.retrieve(secret, vector_store_id=store.id),
            lambda: intruder.vector_stores.search(store.id, query="storm"),
            lambda: intruder.vector_stores.files.create(vector_store_id=store.id, file_id=secret),
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError):
                attempt()
        own = intruder.vector_stores.create()
        with pytest.raises(openai.NotFoundError):  # another project's file cannot be added
            intruder.vector_stores.files.create(vector_store_id=own.id, file_id=secret)
        with pytest.raises(openai.NotFoundError):
            intruder.files.delete(secret)
        assert [s.id for s in intruder.vector_stores.list().data] == [own.id]
    assert client.vector_stores.retrieve(store.id).name == ""
    assert counts(client.vector_stores.retrieve(store.id))["completed"] == 1
