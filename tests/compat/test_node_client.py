"""openai-node 6.30.1 (tests/compat/node) streams a function-calling run, on both stores.

The SDK's AssistantStream rebuilds runs, steps and messages from the events, so it fails on
events out of order, deltas without a snapshot or malformed fragments; the script then exits
non-zero and the test shows its stderr.
"""

import json
import shutil
from typing import Any

import pytest

from tests.compat.clients import (
    COMPAT,
    FUNCTION_CALL_STREAM,
    TOOL_OUTPUTS_STREAM,
    collapse,
    run_client,
    tool_results_sent,
    unique,
)
from tests.conftest import RunningServer
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall

NODE_DIR = COMPAT / "node"
NODE = shutil.which("node")
SDK = NODE_DIR / "node_modules" / "openai" / "package.json"

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (Node.js 20+ runs these)"),
    pytest.mark.skipif(
        not SDK.exists(),
        reason="openai-node is not installed: run `npm ci --prefix tests/compat/node` "
        "(scripts/test does it when npm exists)",
    ),
]

ARGUMENTS = {"city": "Paris", "unit": "celsius"}
ANSWER = ["It is ", "21 °C ", "and sunny ", "in Paris."]


def run_node(server: RunningServer, upstream: ScriptedUpstream) -> tuple[str, dict[str, Any]]:
    name = unique("node-function")
    upstream.register(
        name,
        Script(tool_calls=[ToolCall("get_weather", ARGUMENTS, fragments=4)]),
        Script(text=ANSWER),
    )
    assert NODE is not None
    command = [NODE, str(NODE_DIR / "stream_function_call.mjs"), name]
    return name, run_client(command, server, server.new_key())


def test_node_streams_function_call_then_answer(
    server: RunningServer, upstream: ScriptedUpstream
) -> None:
    script, result = run_node(server, upstream)
    assert result["sdk_version"] == "6.30.1"

    first, second = result["events"]["first"], result["events"]["second"]
    assert collapse(first) == FUNCTION_CALL_STREAM, first
    assert collapse(second) == TOOL_OUTPUTS_STREAM, second
    assert first.count("thread.run.step.delta") >= 2  # the arguments arrive in fragments
    assert second.count("thread.message.delta") == len(ANSWER)

    assert result["same_run"] is True
    assert result["statuses"] == {
        "first_stream": "requires_action",
        "after_first_stream": "requires_action",
        "second_stream": "completed",
        "after_second_stream": "completed",
    }
    assert result["required_action_type"] == "submit_tool_outputs"
    [call] = result["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == ARGUMENTS
    # The output the script submitted reached the model, tied to that call.
    [sent] = tool_results_sent(upstream, script)
    assert sent["tool_call_id"] == call["id"]
    assert json.loads(sent["content"]) == {"city": "Paris", "celsius": 21}
    # The SDK's own merge of the step deltas gives the same call as required_action.
    assert result["streamed_tool_calls"] == [
        {"id": call["id"], "name": "get_weather", "arguments": call["arguments"]}
    ]
    [step] = result["first_step_snapshots"]
    assert step["type"] == "tool_calls" and step["step_details_type"] == "tool_calls"
    assert step["tool_calls"] == [result["streamed_tool_calls"][0]]

    text = "".join(ANSWER)
    assert result["final_text"] == text and result["streamed_text"] == text
    assert result["texts_done"] == [text]
    assert result["done_message"] == {
        "id": result["final_message_id"],
        "status": "completed",
        "text": text,
    }
    assert result["thread_messages"] == [
        {"role": "user", "run_id": None, "text": result["thread_messages"][0]["text"]},
        {"role": "assistant", "run_id": result["run_id"], "text": text},
    ]
    assert result["steps_after"] == [
        {"type": "tool_calls", "status": "completed"},
        {"type": "message_creation", "status": "completed"},
    ]
    assert result["usage"]["total_tokens"] > 0
