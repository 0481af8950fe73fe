"""The inspector's page, JSON and event-stream endpoints on a real server, on both stores."""

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RunningServer
from tests.inspector.helpers import finished_function_run, streaming_run
from tests.support.runs import WEATHER, scripted, wait_for_run
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall


def call(server: RunningServer, key: str | None, path: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.process.url}{path}", headers=headers, params=params, timeout=10)


def data(server: RunningServer, key: str, path: str, **params: Any) -> Any:
    response = call(server, key, f"/inspector/api{path}", **params)
    assert response.status_code == 200, response.text
    return response.json()


def frames(response: httpx.Response) -> Iterator[tuple[float, dict[str, str]]]:
    """Each SSE frame's fields (pings skipped), with the time it arrived."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if fields:
                yield time.monotonic(), fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")


def events(server: RunningServer, key: str, run_id: str, after: int = 0) -> list[dict[str, str]]:
    path = f"{server.process.url}/inspector/api/runs/{run_id}/events"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("GET", path, params={"after": after}, headers=headers, timeout=30) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        return [fields for _, fields in frames(reply)]


def test_the_page_needs_no_key_but_every_data_endpoint_does(server: RunningServer) -> None:
    for path in ("/inspector", "/inspector/", "/inspector/runs/run_x", "/inspector/threads/t"):
        page = call(server, None, path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert '<script src="/inspector/static/inspector.js"' in page.text
    script = call(server, None, "/inspector/static/inspector.js")
    assert script.status_code == 200 and "text/javascript" in script.headers["content-type"]
    assert call(server, None, "/inspector/static/inspector.css").status_code == 200
    for missing in ("/inspector/static/nope.js", "/inspector/static/..%2Fapp.py"):
        assert call(server, None, missing).status_code == 404
    for path in ("/inspector/api/session", "/inspector/api/threads", "/inspector/api/runs/run_x"):
        refused = call(server, None, path)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert call(server, "sk-wrong", path).status_code == 401


def test_a_finished_run_shows_its_steps_timings_tokens_and_conversation(
    server: RunningServer, client: openai.OpenAI, api_key: str, upstream: ScriptedUpstream
) -> None:
    done = finished_function_run(client, upstream)

    view = data(server, api_key, f"/runs/{done.run_id}")

    run = view["run"]
    assert run["status"] == "completed" and view["summary"]["status"] == "completed"
    tool, answer = view["steps"]
    assert (tool["type"], answer["type"]) == ("tool_calls", "message_creation")
    [function_call] = tool["step_details"]["tool_calls"]
    assert function_call["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
        "output": "22C and sunny",
    }
    summary = view["summary"]
    assert summary["usage"] == run["usage"] and summary["usage"]["prompt_tokens"] == 100
    assert summary["duration_seconds"] == run["completed_at"] - run["started_at"]
    assert summary["ended_at"] == run["completed_at"]
    assert [event["event"].removeprefix("thread.run.") for event in view["history"]] == [
        "created",
        "queued",
        "in_progress",
        "requires_action",
        "queued",
        "in_progress",
        "completed",
    ]
    assert [(m["role"], m["run_id"]) for m in view["messages"]] == [
        ("user", None),
        ("assistant", done.run_id),
    ]
    assert view["messages"][1]["content"][0]["text"]["value"] == "Sunny in Paris."
    assert view["tool_arguments"] == {}
    # The snapshot is as of its seq: the log holds exactly that many events, the last one
    # ending the run, so a live view of it has nothing to wait for.
    replay = events(server, api_key, done.run_id)
    assert [int(f["id"]) for f in replay[:-1]] == list(range(1, view["seq"] + 1))
    assert replay[-2]["event"] == "thread.run.completed" and replay[-1]["event"] == "done"
    assert events(server, api_key, done.run_id, after=view["seq"]) == [
        {"event": "done", "data": "[DONE]"}
    ]
    step = data(server, api_key, f"/runs/{done.run_id}/steps/{tool['id']}")
    assert step == tool


def test_threads_are_listed_newest_first_and_searched_by_id_and_metadata(
    server: RunningServer, client: openai.OpenAI, api_key: str, upstream: ScriptedUpstream
) -> None:
    done = finished_function_run(client, upstream, metadata={"customer": "Acme-42", "tier": "gold"})
    plain = client.beta.threads.create(metadata={"note": "100% done_ here"})

    listed = data(server, api_key, "/threads")["data"]
    assert [t["id"] for t in listed] == [plain.id, done.thread_id]
    assert listed[0]["runs"] == {"count": 0}
    assert listed[1]["runs"]["count"] == 1
    latest = listed[1]["runs"]["latest"]
    assert (latest["id"], latest["status"]) == (done.run_id, "completed")
    assert latest["model"] == "scripted-model"

    def found(query: str) -> list[str]:
        return [t["id"] for t in data(server, api_key, "/threads", q=query)["data"]]

    assert found("acme") == [done.thread_id]  # metadata values, any case
    assert found("TIER") == [done.thread_id]  # and keys
    assert found("customer=Acme-42") == [done.thread_id]  # one pair, exactly
    assert found("customer=Acme") == []
    assert found(done.thread_id[-10:].lower()) == [done.thread_id]  # ids
    assert found("100%") == [plain.id] and found("1%d") == []  # LIKE wildcards are literal
    assert found("done_") == [plain.id] and found("on_") == []
    page = data(server, api_key, "/threads", limit=1)
    assert page["has_more"] is True and len(page["data"]) == 1
    rest = data(server, api_key, "/threads", limit=1, after=page["data"][0]["id"])
    assert [t["id"] for t in rest["data"]] == [done.thread_id]

    thread = data(server, api_key, f"/threads/{done.thread_id}")
    assert thread["thread"]["metadata"]["customer"] == "Acme-42"
    [run] = thread["runs"]["data"]
    assert run["id"] == done.run_id and run["usage"]["total_tokens"] > 0
    assert isinstance(run["duration_seconds"], int)
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant"]
    assert thread["files"] == {}
    names = [a["name"] for a in data(server, api_key, "/assistants")["data"]]
    assert names == ["Weather"]


def test_another_keys_objects_are_not_found(
    server: RunningServer, client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    done = finished_function_run(client, upstream)
    other = server.new_key()

    for path in (
        f"/runs/{done.run_id}",
        f"/runs/{done.run_id}/events",
        f"/runs/{done.run_id}/steps/step_x",
        f"/threads/{done.thread_id}",
        f"/threads/{done.thread_id}/runs",
    ):
        refused = call(server, other, f"/inspector/api{path}")
        assert refused.status_code == 404, path
        assert refused.json()["error"]["type"] == "invalid_request_error"
    assert data(server, other, "/threads")["data"] == []
    assert data(server, other, "/threads", q=done.thread_id)["data"] == []
    assert data(server, other, "/assistants")["data"] == []


def test_events_stream_a_run_live_and_continue_past_requires_action(
    server: RunningServer, client: openai.OpenAI, api_key: str, upstream: ScriptedUpstream
) -> None:
    run_id, _, text = streaming_run(client, upstream, chunks=12, delay=0.08)
    path = f"{server.process.url}/inspector/api/runs/{run_id}/events"
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.stream("GET", path, headers=headers, timeout=30) as reply:
        arrived = list(frames(reply))
    names = [fields["event"] for _, fields in arrived]
    assert names[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert names[-2:] == ["thread.run.completed", "done"]
    deltas = [(at, json.loads(f["data"])) for at, f in arrived if f["event"].endswith("e.delta")]
    assert "".join(d["delta"]["content"][0]["text"]["value"] for _, d in deltas) == text
    # Streamed as the model wrote it, not delivered at the end.
    assert arrived[-2][0] - deltas[0][0] > 0.4

    # A run waiting for tool outputs: the stream stays open and goes on once they arrive.
    script = scripted(
        upstream, Script(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]), Script(["Cold"])
    )
    tools: Any = [WEATHER]
    assistant = client.beta.assistants.create(model="scripted-model", tools=tools)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": script.say("Hi")}])
    waiting = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    waiting = wait_for_run(client, thread.id, waiting.id)
    assert waiting.required_action is not None
    [pending] = waiting.required_action.submit_tool_outputs.tool_calls

    def submit() -> None:
        time.sleep(0.5)
        client.beta.threads.runs.submit_tool_outputs(
            run_id=waiting.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": pending.id, "output": "-3C"}],
        )

    submitter = threading.Thread(target=submit)
    submitter.start()
    try:
        names = [f["event"] for f in events(server, api_key, waiting.id)]
    finally:
        submitter.join()
    waited = names.index("thread.run.requires_action")
    assert "thread.run.completed" in names[waited:] and names[-1] == "done"


@pytest.mark.parametrize("path", ["/runs/run_nope", "/threads/thread_nope"])
def test_unknown_ids_are_not_found(server: RunningServer, api_key: str, path: str) -> None:
    refused = call(server, api_key, f"/inspector/api{path}")
    assert refused.status_code == 404
    assert "nope" in refused.json()["error"]["message"]
