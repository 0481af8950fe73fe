"""openai-python 1.109.1 (the last 1.x, on httpx) drives runs through its helpers, on both stores.

The SDK lives in .cache/openai-1.109.1 (scripts/test installs it there, apart from the venv's
openai 3.x) and runs in its own process: tests/compat/openai_v1_flow.py prints one JSON object
with a section per helper, and each test below checks one section.
"""

import json
import os
import sys
from typing import Any

import pytest

from tests.compat.clients import (
    COMPAT,
    FUNCTION_CALL_STREAM,
    ROOT,
    THREAD_AND_RUN_STREAM,
    TOOL_OUTPUTS_STREAM,
    collapse,
    run_client,
    tool_results_sent,
    unique,
)
from tests.conftest import RunningServer
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall

VERSION = "1.109.1"
TARGET = ROOT / ".cache" / f"openai-{VERSION}"

pytestmark = pytest.mark.skipif(
    not (TARGET / f"openai-{VERSION}.dist-info").is_dir(),
    reason=f"openai {VERSION} is not installed in {TARGET.relative_to(ROOT)}: run scripts/test, "
    f"or pip install --target {TARGET.relative_to(ROOT)} openai=={VERSION}",
)

ARGUMENTS = {"city": "Paris"}
HELLO = ["Hello ", "from ", "the ", "script."]
ANSWER = ["Sunny ", "and 21 °C ", "in Paris."]
OUTPUT = {"city": "Paris", "celsius": 21}

Flow = tuple[dict[str, str], dict[str, Any]]  # script names, and the flow's JSON output


def function_then_answer() -> tuple[Script, Script]:
    return Script(tool_calls=[ToolCall("get_weather", ARGUMENTS, fragments=3)]), Script(text=ANSWER)


@pytest.fixture(scope="module")
def flow(server: RunningServer, upstream: ScriptedUpstream) -> Flow:
    """Script names and the flow's output, once per store."""
    names = {key: unique(f"py1-{key}") for key in ("text", "stream", "poll")}
    upstream.register(names["text"], Script(text=HELLO))
    upstream.register(names["stream"], *function_then_answer())
    upstream.register(names["poll"], *function_then_answer())
    command = [sys.executable, str(COMPAT / "openai_v1_flow.py"), *names.values()]
    # The target directory goes first, so `import openai` (and its httpx, pydantic) is 1.109.1.
    path = os.pathsep.join(filter(None, [str(TARGET), os.environ.get("PYTHONPATH")]))
    result = run_client(command, server, server.new_key(), env={"PYTHONPATH": path})
    return names, result


def section(flow: Flow, name: str) -> dict[str, Any]:
    """One section of the output; a section that raised fails here with the client's traceback."""
    part: dict[str, Any] = flow[1][name]
    if "error" in part:
        pytest.fail(f"openai {VERSION}: {name} raised {part['error']}\n{part['traceback']}")
    return part


def test_runs_the_pinned_sdk_from_its_target_dir(flow: Flow) -> None:
    result = flow[1]
    assert result["sdk_version"] == VERSION
    assert result["sdk_path"].startswith(str(TARGET))
    assert result["httpx_version"].startswith("0.")  # httpx, not the 3.x line's httpx2


def test_create_and_poll_completes(flow: Flow) -> None:
    part = section(flow, "create_and_poll")
    assert part["status"] == "completed"
    assert part["texts"] == ["".join(HELLO)]  # messages.list(run_id=...) finds the answer
    assert part["usage"]["total_tokens"] == part["usage"]["prompt_tokens"] + len(HELLO)


def test_stream_with_event_handler_then_submit_tool_outputs_stream(
    flow: Flow, upstream: ScriptedUpstream
) -> None:
    part = section(flow, "stream")
    first, second = part["events"]["first"], part["events"]["second"]
    assert collapse(first) == FUNCTION_CALL_STREAM, first
    assert collapse(second) == TOOL_OUTPUTS_STREAM, second
    assert second.count("thread.message.delta") == len(ANSWER)
    assert part["same_run"] is True
    assert part["statuses"] == {
        "first_stream": "requires_action",
        "after_first_stream": "requires_action",
        "second_stream": "completed",
        "after_second_stream": "completed",
    }

    [call] = part["tool_calls"]
    assert call["id"].startswith("call_") and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == ARGUMENTS
    assert part["streamed_tool_calls"] == [call]  # the SDK's merge of the step deltas
    assert part["first_steps"] == [
        {"type": "tool_calls", "status": "in_progress", "details": "tool_calls"}
    ]
    [sent] = tool_results_sent(upstream, flow[0]["stream"])
    assert sent["tool_call_id"] == call["id"] and json.loads(sent["content"]) == OUTPUT

    text = "".join(ANSWER)
    assert part["text_deltas"] == ANSWER and part["texts_done"] == [text]
    assert [m["status"] for m in part["messages_done"]] == ["completed"]
    assert part["messages_done"][0]["text"] == text and part["snapshot_texts"] == [text]
    done = [{"type": "tool_calls", "status": "completed"}]
    assert part["steps_done"] == {
        "first": [],
        "second": [*done, {"type": "message_creation", "status": "completed"}],
    }
    # steps.list, one per page, with include[]: the tool step keeps the submitted output.
    assert [(s["type"], s["status"]) for s in part["steps"]] == [
        ("tool_calls", "completed"),
        ("message_creation", "completed"),
    ]
    assert [json.loads(o) for o in part["steps"][0]["outputs"]] == [OUTPUT]
    assert part["usage"]["total_tokens"] > 0


def test_create_and_poll_then_submit_tool_outputs_and_poll(
    flow: Flow, upstream: ScriptedUpstream
) -> None:
    part = section(flow, "poll_function")
    assert part["statuses"] == ["requires_action", "completed"]
    [call] = part["tool_calls"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == ARGUMENTS
    [sent] = tool_results_sent(upstream, flow[0]["poll"])
    assert sent["tool_call_id"] == call["id"]
    assert part["text"] == "".join(ANSWER)


def test_create_and_run_poll_and_stream(flow: Flow) -> None:
    part = section(flow, "create_and_run")
    text = "".join(HELLO)
    assert part["poll"] == {"status": "completed", "roles": ["user", "assistant"], "text": text}
    stream = part["stream"]
    assert stream["status"] == "completed"
    assert collapse(stream["events"]) == THREAD_AND_RUN_STREAM, stream["events"]
    assert stream["texts_done"] == [text]


def test_auto_pagination_of_messages(flow: Flow) -> None:
    part = section(flow, "pagination")
    assert part["asc"] == part["expected"]
    assert part["desc"] == part["expected"][::-1]
    assert part["page_sizes"] == [2, 2, 2, 1] and part["first_page_has_more"] is True


def test_poll_helpers_follow_the_poll_after_header(
    flow: Flow,
) -> None:
    polls = flow[1]["polls"]
    assert polls["count"] >= 3  # one create_and_poll, two in the function-call flow, at least
    [interval] = polls["poll_after_ms"]
    assert interval != "missing" and 0 < int(interval) < 1000
