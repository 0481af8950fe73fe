"""Run streams through the official client's event handlers, and the raw SSE wire, on both stores.

Event orders are the spec's (spec-notes §5 and §11): openai-node 7.x enforces them, and
OpenAI-DotNet reads the run right after the stream ends.
"""

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta import AssistantStreamEvent

from tests.conformance import validate_event
from tests.e2e.test_runs import (
    TIME_TOOL,
    WEATHER_TOOL,
    new_assistant,
    script,
    usage,
    user_thread,
)
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall
from tests.support.sse import post_stream

RUN_STARTS = ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
RUN_RESUMES = ["thread.run.queued", "thread.run.in_progress"]
TOOL_STEP_OPENS = ["thread.run.step.created", "thread.run.step.in_progress"]
DELTA_KEYS = {"id", "object", "delta"}


def message_step(deltas: int) -> list[str]:
    """The events of one message_creation step whose text arrives in ``deltas`` pieces."""
    return [
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * deltas,
        "thread.message.completed",
        "thread.run.step.completed",
    ]


class Recording(AssistantEventHandler):
    """Keeps every event's name and wire data, each validated against the spec on arrival."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_event(self, event: AssistantStreamEvent) -> None:
        data = event.data.to_dict(mode="json")
        validate_event(event.event, data)
        self.events.append((event.event, data))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def data(self, name: str) -> list[dict[str, Any]]:
        """The data of every ``name`` event, in order."""
        return [data for event, data in self.events if event == name]

    def last(self, name: str) -> dict[str, Any]:
        return self.data(name)[-1]


def stream_run(client: openai.OpenAI, thread_id: str, assistant_id: str) -> Recording:
    recording = Recording()
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=recording
    ) as stream:
        stream.until_done()
    return recording


def submit_stream(
    client: openai.OpenAI, thread_id: str, run_id: str, outputs: dict[str, str]
) -> Recording:
    recording = Recording()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread_id,
        run_id=run_id,
        tool_outputs=[{"tool_call_id": call, "output": out} for call, out in outputs.items()],
        event_handler=recording,
    ) as stream:
        stream.until_done()
    return recording


def tool_fragments(recording: Recording) -> list[dict[str, Any]]:
    """Every tool-call fragment of the stream's step deltas, in order."""
    fragments = []
    for delta in recording.data("thread.run.step.delta"):
        assert set(delta) == DELTA_KEYS and set(delta["delta"]) == {"step_details"}
        details = delta["delta"]["step_details"]
        assert details["type"] == "tool_calls"
        fragments += details["tool_calls"]
    return fragments


def text_of(recording: Recording) -> str:
    return "".join(
        part["text"]["value"]
        for delta in recording.data("thread.message.delta")
        for part in delta["delta"]["content"]
    )


# -- a plain run ------------------------------------------------------------------------------


def test_stream_events_come_in_spec_order_and_end_completed(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    chunks = ["Hel", "lo ", "world"]
    scripted = script(upstream, Script(text=chunks, usage=usage(12, 3)))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)

    recording = stream_run(client, thread.id, assistant.id)

    assert recording.names == [*RUN_STARTS, *message_step(len(chunks)), "thread.run.completed"]
    created, queued, started = (recording.last(name) for name in RUN_STARTS)
    assert (created["status"], queued["status"], started["status"]) == (
        "queued", "queued", "in_progress",
    )  # fmt: skip
    assert created["started_at"] is None and started["started_at"] is not None
    assert created["expires_at"] == created["created_at"] + 600
    step = recording.data("thread.run.step.created")[0]
    message = recording.data("thread.message.created")[0]
    assert (step["type"], step["status"], step["usage"]) == (
        "message_creation", "in_progress", None,
    )  # fmt: skip
    assert step["step_details"]["message_creation"]["message_id"] == message["id"]
    assert (step["run_id"], step["expires_at"]) == (created["id"], created["expires_at"])
    assert (message["status"], message["content"], message["run_id"]) == (
        "in_progress", [], created["id"],
    )  # fmt: skip
    assert text_of(recording) == "Hello world"
    completed = recording.last("thread.message.completed")
    assert completed["status"] == "completed" and completed["completed_at"] is not None
    assert completed["content"] == [
        {"type": "text", "text": {"value": "Hello world", "annotations": []}}
    ]
    assert recording.last("thread.run.step.completed")["usage"] == usage(12, 3)
    run = recording.last("thread.run.completed")
    assert (run["status"], run["expires_at"], run["usage"]) == ("completed", None, usage(12, 3))

    after = client.beta.threads.runs.retrieve(created["id"], thread_id=thread.id)
    assert after.status == "completed"


@pytest.fixture
def http(client: openai.OpenAI) -> Iterator[httpx.Client]:
    """Plain HTTP as the same tenant as ``client``."""
    headers = {"Authorization": f"Bearer {client.api_key}", "OpenAI-Beta": "assistants=v2"}
    with httpx.Client(base_url=str(client.base_url), headers=headers, timeout=10) as plain:
        yield plain


def test_raw_stream_framing_and_delta_shapes(
    client: openai.OpenAI, http: httpx.Client, upstream: ScriptedUpstream
) -> None:
    chunks = ["One", ", two", ", three."]
    scripted = script(upstream, Script(text=chunks))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)

    raw = post_stream(
        http, f"threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True}
    )

    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    frames = raw.events
    assert all(frame.fields == ["event", "data"] for frame in frames), raw.body
    assert all(comment == ": ping" for frame in raw.frames for comment in frame.comments)
    *events, done = frames
    assert (done.event, done.data, done.terminated) == ("done", "[DONE]", True)
    names = [frame.event for frame in events]
    assert names == [*RUN_STARTS, *message_step(len(chunks)), "thread.run.completed"]
    for frame in events:
        assert frame.event is not None
        validate_event(frame.event, frame.json())
    deltas = [frame.json() for frame in events if frame.event == "thread.message.delta"]
    message_id = events[names.index("thread.message.created")].json()["id"]
    assert all(set(delta) == DELTA_KEYS for delta in deltas)
    assert [delta["id"] for delta in deltas] == [message_id] * len(chunks)
    assert [delta["delta"] for delta in deltas] == [
        {"content": [{"index": 0, "type": "text", "text": {"value": "One", "annotations": []}}]},
        {"content": [{"index": 0, "type": "text", "text": {"value": ", two"}}]},
        {"content": [{"index": 0, "type": "text", "text": {"value": ", three."}}]},
    ]

    run_id = events[0].json()["id"]
    assert client.beta.threads.runs.retrieve(run_id, thread_id=thread.id).status == "completed"


# -- function calling -------------------------------------------------------------------------


def test_function_call_streams_then_continues_after_submitted_outputs(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    call = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, fragments=3)
    scripted = script(
        upstream,
        Script(tool_calls=[call], usage=usage(20, 5)),
        Script(text=["Sunny", ", 22C."], usage=usage(30, 4)),
    )
    assistant = new_assistant(client)
    thread = user_thread(client, scripted, "Weather in Paris?")

    first = stream_run(client, thread.id, assistant.id)

    fragments = call.argument_fragments()
    assert first.names == [
        *RUN_STARTS,
        *TOOL_STEP_OPENS,
        *["thread.run.step.delta"] * (1 + len(fragments)),
        "thread.run.requires_action",
    ]
    step = first.data("thread.run.step.created")[0]
    assert (step["type"], step["usage"]) == ("tool_calls", None)
    assert step["step_details"] == {"type": "tool_calls", "tool_calls": []}
    opening, *pieces = tool_fragments(first)
    call_id = opening["id"]
    assert call_id.startswith("call_")
    assert opening == {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": "", "output": None},
    }
    assert pieces == [
        {"index": 0, "type": "function", "function": {"arguments": piece}} for piece in fragments
    ]
    assert {delta["id"] for delta in first.data("thread.run.step.delta")} == {step["id"]}
    waiting = first.last("thread.run.requires_action")
    assert waiting["status"] == "requires_action"
    assert waiting["required_action"] == {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments_json()},
                }
            ]
        },
    }
    run_id = waiting["id"]
    assert client.beta.threads.runs.retrieve(run_id, thread_id=thread.id).status == (
        "requires_action"
    )
    still_open = client.beta.threads.runs.steps.retrieve(
        step["id"], thread_id=thread.id, run_id=run_id
    )
    assert still_open.status == "in_progress"

    second = submit_stream(client, thread.id, run_id, {call_id: "22C and sunny"})

    assert second.names == [
        "thread.run.step.completed",
        *RUN_RESUMES,
        *message_step(2),
        "thread.run.completed",
    ]
    tool_step = second.data("thread.run.step.completed")[0]
    assert (tool_step["id"], tool_step["status"]) == (step["id"], "completed")
    assert tool_step["step_details"]["tool_calls"] == [
        {
            "id": call_id,
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": call.arguments_json(),
                "output": "22C and sunny",
            },
        }
    ]
    assert tool_step["usage"] == usage(20, 5)
    resumed = second.last("thread.run.queued")
    assert (resumed["status"], resumed["required_action"]) == ("queued", None)
    assert text_of(second) == "Sunny, 22C."
    assert second.last("thread.run.step.completed")["usage"] == usage(30, 4)
    assert second.last("thread.run.completed")["usage"] == usage(50, 9)
    assert client.beta.threads.runs.retrieve(run_id, thread_id=thread.id).status == "completed"

    _, after_outputs = scripted.bodies
    assert after_outputs["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments_json()},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "22C and sunny"},
    ]


def test_parallel_tool_calls_share_one_step_with_distinct_ids(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    calls = [ToolCall("get_weather", {"city": "Oslo"}), ToolCall("get_time", {"tz": "CET"})]
    scripted = script(upstream, Script(tool_calls=calls), Script(text=["Cold", " at noon."]))
    assistant = new_assistant(client, tools=[WEATHER_TOOL, TIME_TOOL])
    thread = user_thread(client, scripted, "Weather and time in Oslo?")

    first = stream_run(client, thread.id, assistant.id)

    assert first.names.count("thread.run.step.created") == 1
    fragments = tool_fragments(first)
    openings = [fragment for fragment in fragments if "id" in fragment]
    assert [(o["index"], o["function"]["name"]) for o in openings] == [
        (0, "get_weather"),
        (1, "get_time"),
    ]
    ids = [opening["id"] for opening in openings]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    for index, call in enumerate(calls):
        arguments = "".join(
            f["function"].get("arguments", "") for f in fragments if f["index"] == index
        )
        assert arguments == call.arguments_json()
    required = first.last("thread.run.requires_action")["required_action"]
    pending = required["submit_tool_outputs"]["tool_calls"]
    assert [(c["id"], c["function"]["name"]) for c in pending] == list(
        zip(ids, ["get_weather", "get_time"], strict=True)
    )

    outputs = {ids[0]: "-3C", ids[1]: "12:00"}
    second = submit_stream(client, thread.id, first.events[0][1]["id"], outputs)

    assert second.names[-1] == "thread.run.completed"
    tool_step = second.data("thread.run.step.completed")[0]
    assert [c["function"]["output"] for c in tool_step["step_details"]["tool_calls"]] == [
        "-3C",
        "12:00",
    ]
    _, after_outputs = scripted.bodies
    assert [c["id"] for c in after_outputs["messages"][-3]["tool_calls"]] == ids
    assert after_outputs["messages"][-2:] == [
        {"role": "tool", "tool_call_id": ids[0], "content": "-3C"},
        {"role": "tool", "tool_call_id": ids[1], "content": "12:00"},
    ]


# -- POST /v1/threads/runs --------------------------------------------------------------------


def test_create_and_run_stream_starts_with_thread_created(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["Hi", "!"]))
    assistant = new_assistant(client)
    recording = Recording()

    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": scripted.say("Hello")}]},
        tool_resources={"code_interpreter": {"file_ids": ["file-abc123"]}},
        event_handler=recording,
    ) as stream:
        stream.until_done()

    assert recording.names == [
        "thread.created",
        *RUN_STARTS,
        *message_step(2),
        "thread.run.completed",
    ]
    thread = recording.last("thread.created")
    run = recording.last("thread.run.completed")
    assert thread["id"].startswith("thread_") and run["thread_id"] == thread["id"]
    assert thread["tool_resources"]["code_interpreter"] == {"file_ids": ["file-abc123"]}
    messages = client.beta.threads.messages.list(thread["id"], order="asc").data
    assert [(m.role, m.content[0].text.value) for m in messages] == [
        ("user", scripted.say("Hello")),
        ("assistant", "Hi!"),
    ]
    assert client.beta.threads.runs.retrieve(run["id"], thread_id=thread["id"]).status == (
        "completed"
    )
