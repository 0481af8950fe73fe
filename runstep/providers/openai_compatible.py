"""Any OpenAI-compatible Chat Completions endpoint, through the official ``openai`` SDK.

The SDK sends the request and retries 429 / 5xx / connection errors / timeouts with backoff
(honouring Retry-After). The stream's ``data:`` lines are read raw and parsed as plain JSON:
building the SDK's typed chunk objects cost more CPU than everything else in a turn.
"""

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai

from runstep.config import Settings
from runstep.providers.base import (
    ChatRequest,
    Finish,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
)


def _transport_errors() -> tuple[type[Exception], ...]:
    """Transport failures while reading a raw stream: httpx (SDK 1.x/2.x) or httpx2 (3.x)."""
    errors: list[type[Exception]] = [httpx.TransportError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(errors)


TRANSPORT_ERRORS = _transport_errors()
FinishReason = Literal["stop", "tool_calls", "length", "content_filter"]

# Sent when no key is configured: the SDK insists on one, and falling back to
# OPENAI_API_KEY would hand that key to whatever endpoint is configured.
_NO_KEY = "runstep-no-key"
_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}


@dataclass
class _Turn:
    """What one stream reported so far: the last finish_reason and usage seen."""

    reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    called_tools: bool = False

    def finish(self) -> Finish:
        """The closing event; an upstream that called tools but said "stop" means "tool_calls"."""
        if self.reason is None:
            raise ProviderError("server", "The model stream ended before it finished.")
        reason = _REASONS.get(self.reason, "stop")
        if reason == "stop" and self.called_tools:
            reason = "tool_calls"
        return Finish(reason, self.prompt_tokens, self.completion_tokens)


class OpenAICompatibleProvider:
    """Streams chat completions from ``settings.upstream_base_url``."""

    name = "openai-compatible"

    def __init__(self, settings: Settings) -> None:
        self._key = settings.upstream_api_key
        self._client = openai.AsyncOpenAI(
            base_url=settings.upstream_base_url,
            api_key=settings.upstream_api_key or _NO_KEY,
            max_retries=settings.upstream_max_retries,
            timeout=settings.upstream_timeout_seconds,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the deltas of one model turn, then exactly one ``Finish``."""
        turn = _Turn()
        try:
            async with self._client.chat.completions.with_streaming_response.create(
                stream=True, stream_options={"include_usage": True}, **request_options(request)
            ) as response:
                async for line in response.iter_lines():
                    chunk = _chunk(line)
                    if chunk is None:
                        continue
                    for event in _events(chunk, turn):
                        yield event
        # Errors while reading the raw stream arrive unwrapped from the HTTP library.
        except (openai.APIError, *TRANSPORT_ERRORS) as exc:
            raise self._error(exc) from None
        yield turn.finish()

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self._client.close()

    def _error(self, exc: Exception) -> ProviderError:
        """The ``ProviderError`` for an SDK or transport failure, with the key scrubbed."""
        error = provider_error(exc)
        if self._key and self._key in error.message:
            return ProviderError(error.kind, error.message.replace(self._key, "***"))
        return error


def request_options(request: ChatRequest) -> dict[str, Any]:
    """The ``create`` keyword arguments for the options that are set (None is omitted)."""
    options: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "response_format": request.response_format,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_completion_tokens": request.max_completion_tokens,
        "reasoning_effort": request.reasoning_effort,
    }
    if request.tools:
        # OpenAI rejects tool_choice and parallel_tool_calls without tools.
        options["tools"] = request.tools
        options["tool_choice"] = request.tool_choice
        options["parallel_tool_calls"] = request.parallel_tool_calls
    return {key: value for key, value in options.items() if value is not None}


def _chunk(line: str) -> dict[str, Any] | None:
    """The JSON of one SSE ``data:`` line; None for other lines and ``[DONE]``."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]" or not payload:
        return None
    chunk: dict[str, Any] = json.loads(payload)
    if isinstance(chunk.get("error"), dict):  # an error reported inside the stream
        message = chunk["error"].get("message") or "unknown error"
        raise ProviderError("server", f"The upstream model reported an error: {message}")
    return chunk


def _events(chunk: dict[str, Any], turn: _Turn) -> Iterator[ProviderEvent]:
    """The deltas in one chunk; its finish_reason and usage are recorded on ``turn``."""
    usage = chunk.get("usage")
    if usage:
        turn.prompt_tokens = usage.get("prompt_tokens")
        turn.completion_tokens = usage.get("completion_tokens")
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            yield TextDelta(delta["content"])
        for position, call in enumerate(delta.get("tool_calls") or ()):
            turn.called_tools = True
            function = call.get("function") or {}
            index = call.get("index")
            yield ToolCallDelta(
                index=index if index is not None else position,
                arguments=function.get("arguments") or "",
                id=call.get("id"),
                name=function.get("name"),
            )
        if choice.get("finish_reason"):
            turn.reason = choice["finish_reason"]


def provider_error(exc: Exception) -> ProviderError:
    """Map an SDK or transport exception (after the SDK's retries) to a ``ProviderError``."""
    if isinstance(exc, openai.RateLimitError):
        return ProviderError("rate_limit", f"The upstream model is rate limited: {_detail(exc)}")
    if isinstance(exc, openai.APITimeoutError) or "Timeout" in type(exc).__name__:
        return ProviderError("server", "The upstream model did not answer in time.")
    if isinstance(exc, openai.APIStatusError) and exc.status_code < 500:
        return ProviderError("invalid", f"The upstream model refused the request: {_detail(exc)}")
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            "server", f"The upstream model failed (HTTP {exc.status_code}): {_detail(exc)}"
        )
    if isinstance(exc, (openai.APIConnectionError, *TRANSPORT_ERRORS)):
        return ProviderError("server", "The connection to the upstream model failed.")
    return ProviderError("server", f"The upstream model reported an error: {exc}")


def _detail(exc: openai.APIStatusError) -> str:
    """The upstream's own error message, else the SDK's summary of the response."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])
    if isinstance(body, str) and body:
        return body
    return exc.message
