"""Files through the official client, on both stores: upload, list, retrieve, download,
delete, expiry, bad uploads, size limits and tenant isolation."""

import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import STATIC_KEY, RunningServer, sqlite_server
from tests.support.server import ServerProcess
from tests.support.validating_client import client as validating_client
from tests.support.validating_client import validate_body

THIRTY_DAYS = 2_592_000


def blob_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "files"


def blobs_of(server: RunningServer) -> set[str]:
    """Every name in the server's blob directory (temporary files included)."""
    directory = blob_dir(server.process.env["RUNSTEP_DATA_DIR"])
    return {path.name for path in directory.iterdir()} if directory.exists() else set()


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate_body(body)
    return body["error"]


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes]]
) -> tuple[dict[str, str], bytes]:
    """A multipart body exactly as httpx encodes it: its content type and bytes."""
    request = httpx.Request("POST", "http://x/", data=fields, files=files)
    return {"content-type": request.headers["content-type"]}, request.read()


@pytest.fixture
def http(server: RunningServer, api_key: str) -> Iterator[httpx.Client]:
    """Raw HTTP as the same tenant as ``client`` (for what the SDK cannot send)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=server.base_url, headers=headers) as http_client:
        yield http_client


# --- upload, retrieve, download ---------------------------------------------------------------


def test_upload_round_trips_bytes_and_filename(
    client: openai.OpenAI, server: RunningServer, tmp_path: Path
) -> None:
    content = bytes(range(256)) * 1200 + b"tail"  # binary, 307 204 bytes: several chunks
    path = tmp_path / "report.pdf"
    path.write_bytes(content)

    before = int(time.time())
    created = client.files.create(file=path, purpose="assistants")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose) == (
        len(content),
        "report.pdf",
        "assistants",
    )
    assert created.status == "processed"
    assert before <= created.created_at <= int(time.time())
    raw = client.files.with_raw_response.retrieve(created.id).http_response.json()
    assert "expires_at" not in raw and "status_details" not in raw
    assert client.files.retrieve(created.id).model_dump() == created.model_dump()

    assert client.files.content(created.id).read() == content
    assert (blob_dir(server.process.env["RUNSTEP_DATA_DIR"]) / created.id).read_bytes() == content


def test_download_headers(client: openai.OpenAI) -> None:
    plain = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    response = client.files.with_raw_response.content(plain.id).http_response
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == "5"
    assert response.headers["content-disposition"] == 'attachment; filename="notes.txt"'

    accented = client.files.create(file=("résumé v2.txt", b"x"), purpose="user_data")
    assert accented.filename == "résumé v2.txt"
    response = client.files.with_raw_response.content(accented.id).http_response
    assert response.headers["content-disposition"] == (
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20v2.txt"
    )


def test_empty_file_is_stored(client: openai.OpenAI) -> None:
    empty = client.files.create(file=("empty.jsonl", b""), purpose="batch")
    assert empty.bytes == 0
    assert client.files.content(empty.id).read() == b""


def test_evals_purpose_is_accepted_and_echoed(http: httpx.Client) -> None:
    """``evals`` is an upload purpose that OpenAIFile's enum lacks: echoed as given."""
    response = http.post("/files", data={"purpose": "evals"}, files={"file": ("e.jsonl", b"{}")})
    assert response.status_code == 200, response.text
    assert response.json()["purpose"] == "evals"


# --- list -------------------------------------------------------------------------------------


def test_list_filters_orders_and_paginates(client: openai.OpenAI, http: httpx.Client) -> None:
    assert http.get("/files").json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    purposes = ["assistants", "user_data", "assistants", "vision", "assistants"]
    ids = [
        client.files.create(file=(f"{i}.txt", b"x"), purpose=purpose).id  # type: ignore[arg-type]
        for i, purpose in enumerate(purposes)
    ]

    assert [f.id for f in client.files.list().data] == ids[::-1]
    assert [f.id for f in client.files.list(order="asc").data] == ids
    mine = [ids[i] for i, purpose in enumerate(purposes) if purpose == "assistants"]
    assert [f.id for f in client.files.list(purpose="assistants").data] == mine[::-1]
    assert client.files.list(purpose="fine-tune").data == []

    first = client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2] and first.has_more
    assert (first.first_id, first.last_id) == (ids[4], ids[3])
    second = client.files.list(limit=2, after=first.last_id)
    assert [f.id for f in second.data] == ids[::-1][2:4] and second.has_more
    assert [f.id for f in client.files.list(limit=2, order="asc", after=ids[2])] == ids[3:]
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # auto-pagination
    paged = client.files.list(purpose="assistants", limit=1, order="asc")
    assert [f.id for f in paged] == mine


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": 0}, "limit"), ({"limit": 10_001}, "limit"), ({"order": "up"}, "order")],
)
def test_list_refuses_bad_parameters(
    http: httpx.Client, params: dict[str, Any], param: str
) -> None:
    assert _error(http.get("/files", params=params), 400)["param"] == param


def test_list_accepts_the_largest_limit(http: httpx.Client) -> None:
    assert http.get("/files", params={"limit": 10_000}).status_code == 200


# --- delete -----------------------------------------------------------------------------------


def test_delete_removes_the_file_and_its_blob(client: openai.OpenAI, server: RunningServer) -> None:
    kept = client.files.create(file=("keep.txt", b"keep"), purpose="assistants")
    doomed = client.files.create(file=("doomed.txt", b"bye"), purpose="assistants")
    assert doomed.id in blobs_of(server)

    deleted = client.files.delete(doomed.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (doomed.id, "file", True)

    assert doomed.id not in blobs_of(server)
    for attempt in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as raised:
            attempt(doomed.id)
        assert raised.value.body == {
            "message": f"No such File object: {doomed.id}",
            "type": "invalid_request_error",
            "param": "id",
            "code": None,
        }
    assert [f.id for f in client.files.list().data] == [kept.id]
    assert client.files.content(kept.id).read() == b"keep"


# --- expiry -----------------------------------------------------------------------------------


def test_expires_after_sets_expires_at(client: openai.OpenAI) -> None:
    created = client.files.create(
        file=("soon.txt", b"x"),
        purpose="assistants",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600
    assert client.files.retrieve(created.id).expires_at == created.expires_at
    longest = client.files.create(
        file=("late.txt", b"x"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": THIRTY_DAYS},
    )
    assert longest.expires_at == longest.created_at + THIRTY_DAYS


def test_batch_files_expire_after_thirty_days_by_default(client: openai.OpenAI) -> None:
    batch = client.files.create(file=("in.jsonl", b"{}"), purpose="batch")
    assert batch.expires_at == batch.created_at + THIRTY_DAYS


# --- bad uploads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (
            {"purpose": "wizardry"},
            "purpose",
            "Invalid 'purpose': Input should be 'assistants', 'batch', 'fine-tune', 'vision', "
            "'user_data' or 'evals'.",
        ),
        ({}, "purpose", "Missing required parameter: 'purpose'."),
        (
            {
                "purpose": "assistants",
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": "3599",
            },
            "expires_after.seconds",
            "greater than or equal to 3600",
        ),
        (
            {
                "purpose": "assistants",
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": "2592001",
            },
            "expires_after.seconds",
            "less than or equal to 2592000",
        ),
        (
            {
                "purpose": "assistants",
                "expires_after[anchor]": "last_active_at",
                "expires_after[seconds]": "3600",
            },
            "expires_after.anchor",
            "Input should be 'created_at'",
        ),
        (
            {"purpose": "assistants", "expires_after[seconds]": "3600"},
            "expires_after.anchor",
            "Missing required parameter",
        ),
        ({"purpose": "assistants", "colour": "red"}, "colour", "Unrecognized request argument"),
    ],
)
def test_invalid_upload_is_a_400_and_stores_nothing(
    http: httpx.Client, server: RunningServer, fields: dict[str, str], param: str, message: str
) -> None:
    before = blobs_of(server)
    response = http.post("/files", data=fields, files={"file": ("a.txt", b"some bytes")})
    error = _error(response, 400)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert message in error["message"]
    assert blobs_of(server) == before
    assert http.get("/files").json()["data"] == []


def test_missing_file_is_a_400(http: httpx.Client) -> None:
    response = http.post("/files", files={"purpose": (None, "assistants")})
    error = _error(response, 400)
    assert (error["param"], error["message"]) == ("file", "Missing required parameter: 'file'.")


def test_two_files_are_a_400(http: httpx.Client, server: RunningServer) -> None:
    before = blobs_of(server)
    response = http.post(
        "/files",
        data={"purpose": "assistants"},
        files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))],
    )
    assert _error(response, 400)["param"] == "file"
    assert blobs_of(server) == before


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"content-type": "application/json"}, b'{"purpose": "assistants"}'),
        ({"content-type": "multipart/form-data"}, b"no boundary"),
        ({"content-type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\nbroken"),
    ],
)
def test_malformed_bodies_are_a_400(
    http: httpx.Client, headers: dict[str, str], body: bytes
) -> None:
    _error(http.post("/files", content=body, headers=headers), 400)
    assert http.get("/files").json()["data"] == []


# --- isolation --------------------------------------------------------------------------------


def test_other_projects_files_are_invisible(client: openai.OpenAI, server: RunningServer) -> None:
    mine = client.files.create(file=("private.txt", b"secret"), purpose="assistants")
    with validating_client(server.base_url, server.new_key()) as intruder:
        for attempt in (intruder.files.retrieve, intruder.files.content, intruder.files.delete):
            with pytest.raises(openai.NotFoundError):
                attempt(mine.id)
        assert intruder.files.list().data == []
        assert intruder.files.list(after=mine.id).data == []
    assert client.files.content(mine.id).read() == b"secret"
    assert mine.id in blobs_of(server)


# --- size limits and the sweeper, on a server of its own --------------------------------------

LIMIT = 1024


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """SQLite, uploads of at most ``LIMIT`` bytes, and a fast sweeper."""
    limits = {"RUNSTEP_MAX_FILE_BYTES": str(LIMIT), "RUNSTEP_SWEEP_SECONDS": "0.2"}
    with sqlite_server(
        tmp_path_factory.mktemp("small-files"), RUNSTEP_UPSTREAM_BASE_URL="", **limits
    ) as process:
        yield process


@pytest.fixture
def small_http(small_server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {STATIC_KEY}"}
    with httpx.Client(base_url=small_server.base_url, headers=headers) as http_client:
        yield http_client


def _small_blobs(small_server: ServerProcess) -> list[str]:
    directory = blob_dir(small_server.env["RUNSTEP_DATA_DIR"])
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def _chunked(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """The body as a generator, so httpx sends it without a Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_upload_at_the_limit_is_accepted(small_http: httpx.Client) -> None:
    response = small_http.post(
        "/files", data={"purpose": "assistants"}, files={"file": ("max.bin", b"m" * LIMIT)}
    )
    assert response.status_code == 200 and response.json()["bytes"] == LIMIT
    assert small_http.get(f"/files/{response.json()['id']}/content").content == b"m" * LIMIT
    assert small_http.delete(f"/files/{response.json()['id']}").status_code == 200


@pytest.mark.parametrize("size", [LIMIT + 1, 200_000], ids=["one-byte-over", "far-over"])
def test_oversized_upload_with_content_length_is_a_413(
    small_http: httpx.Client, small_server: ServerProcess, size: int
) -> None:
    headers, body = multipart({"purpose": "assistants"}, {"file": ("big.bin", b"b" * size)})
    response = small_http.post("/files", content=body, headers=headers)
    assert response.request.headers["content-length"] == str(len(body))
    error = _error(response, 413)
    assert (error["type"], error["param"]) == ("invalid_request_error", "file")
    assert f"maximum size of an uploaded file is {LIMIT} bytes" in error["message"]
    assert _small_blobs(small_server) == []
    assert small_http.get("/files").json()["data"] == []


@pytest.mark.parametrize("size", [LIMIT + 1, 200_000], ids=["one-byte-over", "far-over"])
def test_oversized_chunked_upload_is_a_413(
    small_http: httpx.Client, small_server: ServerProcess, size: int
) -> None:
    headers, body = multipart({"purpose": "assistants"}, {"file": ("big.bin", b"c" * size)})
    response = small_http.post("/files", content=_chunked(body), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert _error(response, 413)["param"] == "file"
    assert _small_blobs(small_server) == []
    assert small_http.get("/files").json()["data"] == []


def test_chunked_upload_within_the_limit_is_stored(small_http: httpx.Client) -> None:
    content = bytes(range(256)) * 4
    headers, body = multipart({"purpose": "vision"}, {"file": ("ok.bin", content)})
    response = small_http.post("/files", content=_chunked(body, 7), headers=headers)
    assert response.status_code == 200, response.text
    file_id = response.json()["id"]
    assert small_http.get(f"/files/{file_id}/content").content == content
    assert small_http.delete(f"/files/{file_id}").status_code == 200


def test_expired_files_are_gone_and_swept(
    small_http: httpx.Client, small_server: ServerProcess
) -> None:
    response = small_http.post(
        "/files",
        data={
            "purpose": "assistants",
            "expires_after[anchor]": "created_at",
            "expires_after[seconds]": "3600",
        },
        files={"file": ("old.txt", b"old")},
    )
    file_id = response.json()["id"]
    assert _small_blobs(small_server) == [file_id]
    database = Path(small_server.env["RUNSTEP_DATA_DIR"]) / "runstep.sqlite3"
    with closing(sqlite3.connect(database)) as conn, conn:  # as if the hour had passed
        conn.execute(
            "UPDATE files SET expires_at = 1, data = json_set(data, '$.expires_at', 1) "
            "WHERE id = ?",
            (file_id,),
        )

    for path in (f"/files/{file_id}", f"/files/{file_id}/content"):
        _error(small_http.get(path), 404)
    _error(small_http.delete(f"/files/{file_id}"), 404)
    assert small_http.get("/files").json()["data"] == []
    deadline = time.monotonic() + 10
    while _small_blobs(small_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _small_blobs(small_server) == []


def test_declared_oversized_upload_is_refused_before_its_body_is_sent(
    small_server: ServerProcess,
) -> None:
    """A ``Content-Length`` over the limit gets its 413 while the body has not even been sent."""
    head = (
        "POST /v1/files HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {STATIC_KEY}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {10**9}\r\n\r\n--b\r\n"
    )
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = b""
        while b"\r\n" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert _small_blobs(small_server) == []
