"""OpenAICompatibleProvider against the scripted Chat Completions server."""

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from runstep.providers.base import ChatRequest, Finish, ProviderError, TextDelta
from runstep.providers.openai_compatible import OpenAICompatibleProvider, _Turn
from runstep.providers.upstreams import Upstream
from tests.providers.helpers import chat, collect, function_tool, reassemble, user
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall

KEY = "sk-provider-test-key-0123456789"

MakeProvider = Callable[..., OpenAICompatibleProvider]


@pytest.fixture
async def make_provider(upstream: ScriptedUpstream) -> AsyncIterator[MakeProvider]:
    """Build providers pointed at the scripted upstream; all are closed afterwards."""
    made: list[OpenAICompatibleProvider] = []

    def make(**overrides: Any) -> OpenAICompatibleProvider:
        fields = {
            "name": "scripted",
            "base_url": upstream.base_url,
            "api_key": KEY,
            "max_retries": 0,
            "timeout_seconds": 5.0,
            **overrides,
        }
        made.append(OpenAICompatibleProvider(Upstream(**fields)))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def failure(provider: OpenAICompatibleProvider, request: ChatRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request)
    return caught.value


async def test_streams_text_then_one_finish_with_usage(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(
        Script(text=["Hel", "lo", " there"], usage={"prompt_tokens": 11, "completion_tokens": 3})
    )
    events = await collect(make_provider(), chat(user("Hi")))
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" there"),
        Finish("stop", prompt_tokens=11, completion_tokens=3),
    ]


async def test_parallel_tool_calls_reassemble_from_fragments(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(
        Script(
            tool_calls=[
                ToolCall("get_weather", {"city": "Paris"}, fragments=3, id="call_a"),
                ToolCall("get_time", {"zone": "UTC"}, fragments=2, id="call_b"),
            ]
        )
    )
    request = chat(user("Weather and time?"), tools=[function_tool("get_weather")])
    events = await collect(make_provider(), request)
    calls = reassemble(events)
    assert calls[0] == {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert calls[1] == {"id": "call_b", "name": "get_time", "arguments": '{"zone":"UTC"}'}
    assert events[-1] == Finish("tool_calls", prompt_tokens=4, completion_tokens=5)


async def test_only_set_options_are_sent_with_the_key(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    await collect(make_provider(), chat(user("Hi"), model="some/model:latest"))
    sent = upstream.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {
        "model": "some/model:latest",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_set_options_are_passed_through(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    options: dict[str, Any] = {
        "tools": [function_tool("lookup")],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 50,
        "reasoning_effort": "low",
    }
    await collect(make_provider(), chat(user("Hi"), model="o4-mini", **options))
    body = upstream.requests[-1].body
    assert {key: body[key] for key in options} == options


async def test_a_strict_json_schema_response_format_is_sent_as_given(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "strict": True,
        },
    }
    await collect(make_provider(), chat(user("Hi"), response_format=schema))
    assert upstream.requests[-1].body["response_format"] == schema


async def test_a_project_key_replaces_the_configured_one_and_never_shows_in_errors(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    own = "sk-project-own-key-987654321"
    provider = make_provider()
    await collect(provider, chat(user("Hi"), api_key=own))
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {own}"
    await collect(provider, chat(user("Hi")))
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {KEY}"  # unchanged
    upstream.enqueue(Script(status=401, error={"message": f"Incorrect API key provided: {own}"}))
    error = await failure(provider, chat(user("Hi"), api_key=own))
    assert own not in error.message and "Incorrect API key provided: ***" in error.message


async def test_configured_headers_are_sent_and_scrubbed_from_errors(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    secret = "header-secret-value-42"
    provider = make_provider(headers={"x-gateway-token": secret, "anthropic-version": "1"})
    await collect(provider, chat(user("Hi")))
    headers = upstream.requests[-1].headers
    assert headers["x-gateway-token"] == secret and headers["anthropic-version"] == "1"
    upstream.enqueue(Script(status=400, error={"message": f"bad token {secret}"}))
    assert secret not in (await failure(provider, chat(user("Hi")))).message


async def test_the_upstream_models_are_listed_with_the_key_given(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.serve_models(["llama3.1:8b", "qwen2.5:7b"])
    listed = await make_provider().list_models("sk-project-listing-key")
    assert [model["id"] for model in listed] == ["llama3.1:8b", "qwen2.5:7b"]
    assert listed[0] == {"id": "llama3.1:8b", "created": 1700000000, "owned_by": "runstep-tests"}
    [request] = upstream.model_requests
    assert request.headers["authorization"] == "Bearer sk-project-listing-key"


async def test_an_upstream_that_cannot_list_its_models_is_a_provider_error(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.serve_models([], status=404)
    with pytest.raises(ProviderError) as caught:
        await make_provider(max_retries=3).list_models()
    assert caught.value.kind == "invalid"
    assert len(upstream.model_requests) == 1  # no retries for a listing


async def test_tool_choice_is_omitted_without_tools(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    await collect(make_provider(), chat(user("Hi"), tool_choice="auto", parallel_tool_calls=True))
    body = upstream.requests[-1].body
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()


async def test_no_configured_key_never_borrows_openai_api_key(
    upstream: ScriptedUpstream, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    await collect(make_provider(api_key=None), chat(user("Hi")))
    assert "sk-from-the-environment" not in upstream.requests[-1].headers["authorization"]


async def test_finish_length_is_reported(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(Script(text=["a", "b", "c", "d"]))
    events = await collect(make_provider(), chat(user("Hi"), max_completion_tokens=2))
    assert events[:-1] == [TextDelta("a"), TextDelta("b")]
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "length"


async def test_rate_limit_is_retried_then_reported(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(Script(status=429, retry_after=0), Script(status=429, retry_after=0))
    error = await failure(make_provider(max_retries=1), chat(user("Hi")))
    assert error.kind == "rate_limit"
    assert "Rate limit reached" in error.message
    assert len(upstream.requests) == 2


async def test_server_error_is_retried_and_can_recover(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(Script(status=503, retry_after=0.01), Script(text=["ok"]))
    events = await collect(make_provider(max_retries=1), chat(user("Hi")))
    assert events[0] == TextDelta("ok")
    assert len(upstream.requests) == 2


async def test_server_error_is_reported(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(Script(status=500))
    error = await failure(make_provider(), chat(user("Hi")))
    assert error.kind == "server"
    assert "500" in error.message


async def test_refusal_carries_the_upstream_message(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    reason = "Invalid schema for function 'lookup': 'object' is not valid."
    upstream.enqueue(Script(status=400, error={"message": reason}))
    error = await failure(make_provider(), chat(user("Hi")))
    assert error.kind == "invalid"
    assert error.message == f"The upstream model refused the request: {reason}"


async def test_the_key_never_appears_in_error_messages(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(Script(status=401, error={"message": f"Incorrect API key provided: {KEY}."}))
    error = await failure(make_provider(), chat(user("Hi")))
    assert error.kind == "invalid"
    assert KEY not in error.message
    assert "Incorrect API key provided: ***." in error.message


async def test_timeout_is_a_server_error(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(Script(initial_delay=2))
    provider = make_provider(timeout_seconds=0.5, max_retries=0)
    error = await failure(provider, chat(user("Hi")))
    assert error.kind == "server"


async def test_stream_broken_midway_is_a_server_error(
    upstream: ScriptedUpstream, make_provider: MakeProvider
) -> None:
    upstream.enqueue(Script(text=["one", "two", "three", "four"], abort_after=3))
    events: list[object] = []
    with pytest.raises(ProviderError) as caught:
        async for event in make_provider().stream(chat(user("Hi"))):
            events.append(event)
    assert caught.value.kind == "server"
    assert events == [TextDelta("one"), TextDelta("two")]


async def test_connection_refused_is_a_server_error(make_provider: MakeProvider) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    provider = make_provider(base_url=f"http://127.0.0.1:{closed_port}/v1")
    error = await failure(provider, chat(user("Hi")))
    assert error.kind == "server"


def test_a_stream_without_finish_reason_is_a_server_error() -> None:
    with pytest.raises(ProviderError) as caught:
        _Turn().finish()
    assert caught.value.kind == "server"
    assert caught.value.message == "The model stream ended before it finished."


def test_tool_calls_reported_as_stop_become_tool_calls() -> None:
    assert _Turn(reason="stop", called_tools=True).finish().reason == "tool_calls"
