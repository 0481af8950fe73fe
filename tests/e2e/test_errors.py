"""Bad input gets the OpenAI error envelope with the right status, and changes nothing."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.support.validating_client import validate_body


@pytest.fixture
def http(server: RunningServer, api_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_key}", "OpenAI-Beta": "assistants=v2"}
    with httpx.Client(base_url=server.base_url, headers=headers) as http_client:
        yield http_client


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate_body(body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def _assistant_count(http: httpx.Client) -> int:
    return len(http.get("/assistants", params={"limit": 100}).json()["data"])


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (
            {"model": "m", "colour": "red"},
            "colour",
            "Unrecognized request argument supplied: colour",
        ),
        ({}, "model", "Missing required parameter: 'model'."),
        ({"model": "m", "name": "n" * 257}, "name", "maximum length 256"),
        ({"model": "m", "description": "d" * 513}, "description", "maximum length 512"),
        ({"model": "m", "instructions": "i" * 256_001}, "instructions", "maximum length 256000"),
        ({"model": "m", "metadata": {str(i): "v" for i in range(17)}}, "metadata", "at most 16"),
        ({"model": "m", "metadata": {"k" * 65: "v"}}, "metadata", "at most 64"),
        ({"model": "m", "metadata": {"k": "v" * 513}}, "metadata", "at most 512"),
        (
            {"model": "m", "tools": [{"type": "code_interpreter"}] * 129},
            "tools",
            "maximum length 128",
        ),
        (
            {"model": "m", "tools": [{"type": "function", "function": {"name": "no spaces"}}]},
            "tools[0].function.name",
            "does not match pattern",
        ),
        (
            {"model": "m", "tools": [{"type": "function", "function": {"name": "f" * 65}}]},
            "tools[0].function.name",
            "does not match pattern",
        ),
        ({"model": "m", "tools": [{"type": "browser"}]}, "tools[0]", "tag"),
        ({"model": "m", "temperature": 2.5}, "temperature", "less than or equal to 2"),
        (
            {"model": "m", "tool_resources": {"code_interpreter": {"file_ids": ["f"] * 21}}},
            "tool_resources.code_interpreter.file_ids",
            "maximum length 20",
        ),
    ],
)
def test_invalid_assistant_is_refused_and_nothing_is_written(
    http: httpx.Client, body: dict[str, Any], param: str, fragment: str
) -> None:
    error = _error(http.post("/assistants", json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]
    assert _assistant_count(http) == 0


def test_malformed_json_is_a_400(http: httpx.Client) -> None:
    response = http.post(
        "/assistants", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert "could not parse the JSON body" in _error(response, 400)["message"]
    assert _assistant_count(http) == 0


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_list_limit_out_of_range_is_a_400(http: httpx.Client, limit: str) -> None:
    assert _error(http.get("/assistants", params={"limit": limit}), 400)["param"] == "limit"


def test_bad_order_is_a_400(http: httpx.Client) -> None:
    assert _error(http.get("/assistants", params={"order": "up"}), 400)["param"] == "order"


def test_invalid_thread_messages_write_nothing(http: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "ok"}, {"role": "system", "content": "x"}]}
    error = _error(http.post("/threads", json=body), 400)
    assert error["param"] == "messages[1].role"
    thread = http.post("/threads", json={}).json()
    for content in ([], [{"type": "text"}], 5):
        _error(
            http.post(
                f"/threads/{thread['id']}/messages", json={"role": "user", "content": content}
            ),
            400,
        )
    assert http.get(f"/threads/{thread['id']}/messages").json()["data"] == []


def test_unknown_ids_are_404_with_the_hosted_wording(http: httpx.Client) -> None:
    error = _error(http.get("/threads/thread_nope"), 404)
    assert error["message"] == "No thread found with id 'thread_nope'."
    _error(http.post("/assistants/asst_nope", json={"name": "x"}), 404)
    _error(http.delete("/threads/thread_nope/messages/msg_nope"), 404)


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    assert "Invalid URL (GET /v1/nothing)" in _error(http.get("/nothing"), 404)["message"]
    _error(http.put("/assistants"), 405)


def test_missing_or_wrong_key_is_a_401(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url) as anonymous:
        error = _error(anonymous.get("/assistants"), 401)
        assert error["code"] == "invalid_api_key"
        wrong = anonymous.get("/assistants", headers={"Authorization": "Bearer sk-wrong-key-1234"})
        assert "Incorrect API key provided" in _error(wrong, 401)["message"]
        assert "sk-wrong-key-1234" not in wrong.text


def test_health_answers_without_a_key(server: RunningServer) -> None:
    for path in ("/health", "/v1/health"):
        response = httpx.get(server.process.url + path)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert response.json()["providers"]["default"]["status"] == "healthy"


def _thread_count(http: httpx.Client, server: RunningServer) -> int:
    """The tenant's threads, as the inspector lists them (the API has no thread list)."""
    headers = {"Authorization": http.headers["authorization"]}
    page = httpx.get(f"{server.process.url}/inspector/api/threads?limit=100", headers=headers)
    return len(page.json()["data"])


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"model": "m", "metadata": {"\ud800": "v"}}',
        rb'{"model": "m", "metadata": {"k": "x\udfff"}}',
        rb'{"model": "m", "name": "a\u0000b"}',
        rb'{"model": "m\u0000"}',
    ],
)
def test_unstorable_text_is_a_400_and_nothing_is_written(http: httpx.Client, raw: bytes) -> None:
    """Regression: an unpaired surrogate escape in a metadata key or value was accepted, stored,
    and then broke every read of the tenant's list (500); NUL broke PostgreSQL text."""
    response = http.post("/assistants", content=raw, headers={"content-type": "application/json"})
    assert _error(response, 400)["type"] == "invalid_request_error"
    assert _assistant_count(http) == 0


def test_unstorable_message_text_is_refused_and_the_thread_stays_readable(
    http: httpx.Client, server: RunningServer
) -> None:
    thread = http.post("/threads", json={}).json()
    for content in (rb'"a\ud800b"', rb'[{"type": "text", "text": "\udc00"}]', rb'"\u0000"'):
        body = b'{"role": "user", "content": ' + content + b"}"
        response = http.post(
            f"/threads/{thread['id']}/messages",
            content=body,
            headers={"content-type": "application/json"},
        )
        _error(response, 400)
    raw = rb'{"messages": [{"role": "user", "content": "x\ud83d"}]}'
    _error(http.post("/threads", content=raw, headers={"content-type": "application/json"}), 400)
    assert http.get(f"/threads/{thread['id']}/messages").json()["data"] == []
    assert _thread_count(http, server) == 1
    # a pair is one character, and an escaped backslash is just text: both are fine
    fine = rb'{"role": "user", "content": "\ud83d\ude00 \\u0000 \\ud800"}'
    created = http.post(
        f"/threads/{thread['id']}/messages",
        content=fine,
        headers={"content-type": "application/json"},
    )
    assert created.status_code == 200, created.text
    assert created.json()["content"][0]["text"]["value"] == "😀 \\u0000 \\ud800"


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/threads/runs", rb'{"assistant_id": "asst_\u0000"}'),
        ("/vector_stores", rb'{"file_ids": ["file-\u0000"]}'),
    ],
)
def test_nul_in_an_id_in_a_body_is_a_400(http: httpx.Client, path: str, raw: bytes) -> None:
    """Regression: on PostgreSQL looking such an id up was a 500."""
    response = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert "NUL" in _error(response, 400)["message"]


@pytest.mark.parametrize("path", ["/assistants/asst_%00x", "/threads/thread_x/messages?after=a%00"])
def test_nul_in_the_url_is_a_400(http: httpx.Client, path: str) -> None:
    """Regression: on PostgreSQL a NUL in an id or cursor was a 500."""
    assert "NUL" in _error(http.get(path), 400)["message"]


def test_a_new_thread_takes_at_most_32_messages(http: httpx.Client, server: RunningServer) -> None:
    messages = [{"role": "user", "content": f"m{i}"} for i in range(33)]
    error = _error(http.post("/threads", json={"messages": messages}), 400)
    assert error["param"] == "messages" and "maximum length 32" in error["message"]
    body = {"assistant_id": "asst_x", "thread": {"messages": messages}}
    assert _error(http.post("/threads/runs", json=body), 400)["param"] == "thread.messages"
    assert _thread_count(http, server) == 0
    assert http.post("/threads", json={"messages": messages[:32]}).status_code == 200
