"""Fidelity and control tests for the scripted Chat Completions upstream."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall

ROOT = Path(__file__).resolve().parents[2]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": {}}},
    }
    for name in ("get_weather", "get_time")
]


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(server: ScriptedUpstream) -> ScriptedUpstream:
    server.reset()
    return server


@pytest.fixture
def client(upstream: ScriptedUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0) as sdk:
        yield sdk


def ask(text: str) -> list[Any]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def stream_text(client: openai.OpenAI, text: str = "hi") -> str:
    stream = client.chat.completions.create(model="gpt-test", messages=ask(text), stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def raw_events(upstream: ScriptedUpstream, body: dict[str, Any]) -> list[str]:
    response = httpx.post(f"{upstream.base_url}/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.text.endswith("data: [DONE]\n\n")
    events = response.text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def test_streamed_text_with_usage_parsed_by_openai_client(
    upstream: ScriptedUpstream, client: openai.OpenAI
) -> None:
    upstream.enqueue(Script(text=["Hel", "lo", " world"]))
    stream = client.chat.completions.create(
        model="gpt-test",
        messages=ask("x" * 40),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {"gpt-test"} and chunks[0].system_fingerprint
    first, *middle, _finish, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in middle) == "Hello world"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 4 + ["stop"]
    assert all(c.usage is None for c in chunks[:-1])
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == (len("Be brief.") + 40) // 4
    assert (usage_chunk.usage.completion_tokens, usage_chunk.usage.total_tokens) == (3, 15)
    assert (
        usage_chunk.usage.prompt_tokens_details
        and usage_chunk.usage.prompt_tokens_details.cached_tokens == 0
    )


def test_raw_wire_format(upstream: ScriptedUpstream) -> None:
    upstream.enqueue(Script(text=["a"]))
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": ask("hi"),
    }
    events = [json.loads(e) for e in raw_events(upstream, body)[:-1]]
    assert [list(e) for e in events] == [
        [
            "id",
            "object",
            "created",
            "model",
            "service_tier",
            "system_fingerprint",
            "choices",
            "usage",
            "obfuscation",
        ]
    ] * 4
    assert events[0]["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert events[2]["choices"][0]["delta"] == {} and events[2]["usage"] is None
    assert (
        events[3]["choices"] == []
        and events[3]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    )
    plain = [
        json.loads(e)
        for e in raw_events(upstream, {**body, "stream_options": {"include_obfuscation": False}})[
            :-1
        ]
    ]
    assert all("usage" not in e and "obfuscation" not in e for e in plain)


def test_parallel_tool_calls_reassembled_by_stream_helper(
    upstream: ScriptedUpstream, client: openai.OpenAI
) -> None:
    upstream.enqueue(
        Script(
            tool_calls=[
                ToolCall("get_weather", {"city": "Paris"}, fragments=4, id="call_w"),
                ToolCall("get_time", '{"tz": "CET"}', fragments=2),
            ]
        )
    )
    with client.chat.completions.stream(
        model="gpt-test", messages=ask("hi"), tools=TOOLS
    ) as stream:
        deltas = [e.chunk.choices[0].delta for e in stream if e.type == "chunk" and e.chunk.choices]
        final = stream.get_final_completion()
    assert deltas[0].role == "assistant" and deltas[0].content is None
    assert [(t.index, t.id is not None) for d in deltas for t in d.tool_calls or []] == (
        [(0, True)] + [(0, False)] * 4 + [(1, True)] + [(1, False)] * 2
    )
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    assert calls[0] == ("call_w", "get_weather", '{"city":"Paris"}')
    assert calls[1][1:] == ("get_time", '{"tz": "CET"}') and calls[1][0].startswith("call_")


def test_text_then_tool_call_and_finish_reason_override(
    upstream: ScriptedUpstream, client: openai.OpenAI
) -> None:
    upstream.enqueue(
        Script(text=["Let me check."], tool_calls=[ToolCall("get_time")]),
        Script(text=["cut"], finish_reason="length"),
    )
    chunks = list(client.chat.completions.create(model="m", messages=ask("hi"), stream=True))
    assert (
        chunks[0].choices[0].delta.content == ""
        and chunks[1].choices[0].delta.content == "Let me check."
    )
    assert (
        chunks[2].choices[0].delta.tool_calls
        and chunks[-1].choices[0].finish_reason == "tool_calls"
    )
    chunks = list(client.chat.completions.create(model="m", messages=ask("hi"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"


def test_max_completion_tokens_truncates_with_length(
    upstream: ScriptedUpstream, client: openai.OpenAI
) -> None:
    upstream.enqueue(Script(text=list("abcdef")))
    completion = client.chat.completions.create(
        model="m", messages=ask("hi"), max_completion_tokens=4
    )
    assert (
        completion.choices[0].message.content == "abcd"
        and completion.choices[0].finish_reason == "length"
    )


def test_non_streaming_text_and_tool_calls(
    upstream: ScriptedUpstream, client: openai.OpenAI
) -> None:
    upstream.enqueue(
        Script(text=["Hi", " there"], usage={"prompt_tokens": 7}),
        Script(tool_calls=[ToolCall("get_weather", {"q": 1})]),
    )
    text = client.chat.completions.create(model="gpt-test", messages=ask("hi"))
    assert (
        isinstance(text, ChatCompletion)
        and text.object == "chat.completion"
        and text.model == "gpt-test"
    )
    assert text.choices[0].message.content == "Hi there" and text.choices[0].finish_reason == "stop"
    assert text.usage and (
        text.usage.prompt_tokens,
        text.usage.completion_tokens,
        text.usage.total_tokens,
    ) == (7, 2, 9)
    tools = client.chat.completions.create(model="gpt-test", messages=ask("hi"), tools=TOOLS)
    message = tools.choices[0].message
    assert message.content is None and tools.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls and message.tool_calls[0].type == "function"
    assert message.tool_calls[0].function.arguments == '{"q":1}'


def test_http_errors_surface_as_openai_exceptions(
    upstream: ScriptedUpstream, client: openai.OpenAI
) -> None:
    upstream.enqueue(
        Script(status=429, retry_after=2),
        Script(status=500),
        Script(status=503, error={"code": "overloaded"}),
    )
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="m", messages=ask("hi"), stream=True)
    assert (
        limited.value.code == "rate_limit_exceeded"
        and limited.value.response.headers["retry-after"] == "2"
    )
    assert limited.value.type == "requests" and limited.value.param is None
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="m", messages=ask("hi"))
    assert failed.value.status_code == 500 and failed.value.type == "server_error"
    with pytest.raises(openai.InternalServerError) as overloaded:
        client.chat.completions.create(model="m", messages=ask("hi"))
    assert overloaded.value.status_code == 503 and overloaded.value.code == "overloaded"


def test_abort_mid_stream_and_mid_body(upstream: ScriptedUpstream, client: openai.OpenAI) -> None:
    upstream.enqueue(Script(text=["a", "b", "c"], abort_after=2), Script(text=["a"], abort_after=0))
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        received.extend(client.chat.completions.create(model="m", messages=ask("hi"), stream=True))
    assert [c.choices[0].delta.content for c in received] == ["", "a"]
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=ask("hi"))


def test_delays_and_client_timeout(upstream: ScriptedUpstream, client: openai.OpenAI) -> None:
    upstream.enqueue(Script(initial_delay=5), Script(text=["a", "b"], chunk_delay=0.05))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).chat.completions.create(model="m", messages=ask("hi"))
    assert time.monotonic() - started < 2
    started = time.monotonic()
    assert stream_text(client) == "ab" and time.monotonic() - started >= 0.15


def test_named_scripts_fifo_and_default(upstream: ScriptedUpstream, client: openai.OpenAI) -> None:
    upstream.register("weather", Script(text=["first"]), Script(text=["last"]))
    upstream.enqueue(Script(text=["queued"]))
    assert stream_text(client, "[[script:weather]] go") == "first"
    assert stream_text(client, "plain") == "queued"
    assert stream_text(client, "[[script:weather]] again") == "last"
    assert stream_text(client, "[[script:weather]] and again") == "last"
    assert stream_text(client, "[[script:unknown]] one two").startswith(
        "Echo: [[script:unknown]] one two [[script"
    )
    sources = [r.source for r in upstream.requests]
    assert sources == ["named:weather", "fifo", "named:weather", "named:weather", "default"]


def test_latest_marker_wins(upstream: ScriptedUpstream, client: openai.OpenAI) -> None:
    upstream.register("a", Script(text=["A"]))
    upstream.register("b", Script(text=["B"]))
    messages: list[Any] = [
        {"role": "user", "content": "[[script:a]]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "[[script:a]] then [[script:b]]"}]},
    ]
    completion = client.chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == "B"


def test_default_reply_is_deterministic_and_configurable(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="m", messages=ask("tell me a story"), stream=True)
    )
    texts = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(texts) == 20 and texts[:5] == ["Echo:", " tell", " me", " a", " story"]
    with (
        ScriptedUpstream(chunks=3) as small,
        openai.OpenAI(base_url=small.base_url, api_key="k") as other,
    ):
        assert stream_text(other, "tell me") == "Echo: tell me"


def test_request_log_records_headers_and_body(
    upstream: ScriptedUpstream, client: openai.OpenAI
) -> None:
    client.chat.completions.create(
        model="gpt-test", messages=ask("hi"), tools=TOOLS, tool_choice="required"
    )
    [request] = upstream.requests
    assert (
        request.path == "/v1/chat/completions"
        and request.headers["authorization"] == "Bearer sk-test"
    )
    assert request.body["tools"] == TOOLS and request.body["tool_choice"] == "required"
    assert request.body["messages"] == ask("hi") and request.source == "default"
    upstream.reset()
    assert upstream.requests == []


def test_http_control_api(upstream: ScriptedUpstream, client: openai.OpenAI) -> None:
    with httpx.Client(base_url=upstream.base_url.removesuffix("/v1") + "/_control") as control:
        check_control_api(control, client)


def check_control_api(control: httpx.Client, client: openai.OpenAI) -> None:
    assert control.post("/enqueue", json={"text": ["fifo"]}).json() == {"ok": True, "scripts": 1}
    scripts = [Script(tool_calls=[ToolCall("get_time")]).to_dict(), {"text": ["done"]}]
    assert control.post("/register/flow", json=scripts).status_code == 200
    assert (
        stream_text(client, "[[script:flow]]") == ""
        and stream_text(client, "[[script:flow]]") == "done"
    )
    assert stream_text(client) == "fifo"
    logged = control.get("/requests").json()
    assert [r["source"] for r in logged] == ["named:flow", "named:flow", "fifo"]
    assert (
        logged[0]["headers"]["authorization"] == "Bearer sk-test"
        and logged[0]["body"]["model"] == "gpt-test"
    )
    assert control.post("/enqueue", json={"bogus": 1}).status_code == 400
    assert control.post("/reset").json() == {"ok": True} and control.get("/requests").json() == []


def test_models_endpoint_and_unknown_route(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    assert [m.id for m in client.models.list()] == ["scripted-model"]
    missing = httpx.get(f"{upstream.base_url}/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_cli_runs_as_separate_process() -> None:
    command = [
        sys.executable,
        "-m",
        "tests.support.scripted_upstream",
        "--port",
        "0",
        "--chunks",
        "4",
    ]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().split()[-1]
            with openai.OpenAI(base_url=base_url, api_key="k", max_retries=2) as client:
                assert stream_text(client, "bench mark") == "Echo: bench mark bench"
        finally:
            process.terminate()
