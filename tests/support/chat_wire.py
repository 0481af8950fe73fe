"""OpenAI Chat Completions wire format (chunks, completions, errors) for the scripted upstream.

Shapes follow `openai.types.chat.ChatCompletionChunk` / `ChatCompletion` and what
api.openai.com actually sends: compact JSON, `service_tier`, `system_fingerprint`,
`obfuscation` on every chunk (unless `stream_options.include_obfuscation` is false),
`usage: null` on every chunk but the final `choices: []` one when
`stream_options.include_usage` is true (the key is absent otherwise).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support.upstream_script import Script, ToolCall, message_texts

FINGERPRINT = "fp_5c2a9d3e1b"
OBFUSCATION = "Qh3ZkT9"
_COMPACT = (",", ":")
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "We could not parse the JSON body of your request."),
    404: ("invalid_request_error", "unknown_url", "Unknown request URL."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass
class Exchange:
    """Per-request facts echoed in every chunk."""

    model: str
    prompt_tokens: int
    include_usage: bool = False
    obfuscate: bool = True
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex[:29])
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def of(cls, body: dict[str, Any]) -> Exchange:
        """Read model, stream_options and prompt size from a request body."""
        options = body.get("stream_options") or {}
        chars = sum(len(text) for text in message_texts(body.get("messages", [])))
        return cls(
            model=str(body.get("model", "scripted-model")),
            prompt_tokens=max(1, chars // 4),
            include_usage=bool(options.get("include_usage")),
            obfuscate=options.get("include_obfuscation", True) is not False,
        )


def usage_of(script: Script, prompt_tokens: int) -> dict[str, Any]:
    """The `usage` object, with the script's overrides applied."""
    over = script.usage or {}
    prompt = over.get("prompt_tokens", prompt_tokens)
    completion = over.get("completion_tokens", script.completion_tokens())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": over.get("total_tokens", prompt + completion),
        "prompt_tokens_details": {"cached_tokens": over.get("cached_tokens", 0), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": over.get("reasoning_tokens", 0),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _call_id(call: ToolCall) -> str:
    return call.id or "call_" + uuid.uuid4().hex[:24]


def _tool_call_deltas(calls: list[ToolCall]) -> Iterator[dict[str, Any]]:
    for index, call in enumerate(calls):
        function = {"name": call.name, "arguments": ""}
        yield {
            "tool_calls": [
                {"index": index, "id": _call_id(call), "type": "function", "function": function}
            ]
        }
        for fragment in call.argument_fragments():
            yield {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}


def _deltas(script: Script) -> Iterator[dict[str, Any]]:
    """The choice deltas: role chunk, text chunks, then tool-call fragments."""
    calls = list(_tool_call_deltas(script.tool_calls))
    if calls and not script.text:
        yield {"role": "assistant", "content": None, **calls.pop(0), "refusal": None}
    else:
        yield {"role": "assistant", "content": "", "refusal": None}
    yield from ({"content": piece} for piece in script.text)
    yield from calls


def _event(
    ex: Exchange, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None
) -> bytes:
    chunk: dict[str, Any] = {
        "id": ex.id,
        "object": "chat.completion.chunk",
        "created": ex.created,
        "model": ex.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }
    if ex.include_usage:
        chunk["usage"] = usage
    if ex.obfuscate:
        chunk["obfuscation"] = OBFUSCATION
    return b"data: " + json.dumps(chunk, separators=_COMPACT).encode() + b"\n\n"


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def stream_events(script: Script, ex: Exchange) -> Iterator[bytes]:
    """Every SSE event of a streamed response, `data: [DONE]` included."""
    for delta in _deltas(script):
        yield _event(ex, [_choice(delta, None)])
    yield _event(ex, [_choice({}, script.final_reason())])
    if ex.include_usage:
        yield _event(ex, [], usage_of(script, ex.prompt_tokens))
    yield b"data: [DONE]\n\n"


def completion_body(script: Script, ex: Exchange) -> dict[str, Any]:
    """A non-streamed `chat.completion` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if script.tool_calls and not script.text else "".join(script.text),
        "refusal": None,
        "annotations": [],
    }
    if script.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(c),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_json()},
            }
            for c in script.tool_calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": script.final_reason(),
    }
    return {
        "id": ex.id,
        "object": "chat.completion",
        "created": ex.created,
        "model": ex.model,
        "choices": [choice],
        "usage": usage_of(script, ex.prompt_tokens),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def error_body(status: int, override: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAI error envelope `{"error": {message, type, param, code}}`."""
    kind, code, message = _ERRORS.get(status, ("server_error", None, f"Upstream error {status}."))
    return {
        "error": {"message": message, "type": kind, "param": None, "code": code, **(override or {})}
    }
