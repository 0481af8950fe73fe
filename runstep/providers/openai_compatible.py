"""Any OpenAI-compatible Chat Completions endpoint, through the official ``openai`` SDK.

The SDK sends the request and retries 429 / 5xx / connection errors / timeouts with backoff
(honouring Retry-After). The stream's ``data:`` lines are read raw and parsed as plain JSON:
building the SDK's typed chunk objects cost more CPU than everything else in a turn.
"""

import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai

from runstep.providers.base import (
    ChatRequest,
    Finish,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
)
from runstep.providers.families import is_reasoning, token_limit_param
from runstep.providers.upstreams import Upstream


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
LIST_TIMEOUT_SECONDS = 5.0
KEEPALIVE = 100  # idle upstream connections kept for reuse (the SDK's default)
MIN_SECRET_LENGTH = 8  # shorter header values (e.g. a version) are not scrubbed
_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}


def _unbounded_http_client() -> Any:
    """The SDK's default HTTP client without its cap of 1,000 connections: each executing run
    holds one, and runs are bounded already (``RUNSTEP_WORKER_CONCURRENCY``). Built from the
    HTTP library the installed SDK uses (httpx, or httpx2 from SDK 3.x)."""
    library = sys.modules[openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0]]
    return openai.DefaultAsyncHttpxClient(
        limits=library.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE)
    )


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
    """Streams chat completions from one configured upstream."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.name = upstream.name
        self._client = openai.AsyncOpenAI(
            base_url=upstream.base_url,
            api_key=upstream.api_key or _NO_KEY,
            max_retries=upstream.max_retries,
            timeout=upstream.timeout_seconds,
            default_headers=dict(upstream.headers),
            http_client=_unbounded_http_client(),
        )

    def _client_for(self, api_key: str | None) -> openai.AsyncOpenAI:
        """The client sending ``api_key`` (a project's own) instead of the configured key; it
        shares the configured client's connections."""
        return self._client if api_key is None else self._client.with_options(api_key=api_key)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the deltas of one model turn, then exactly one ``Finish``."""
        turn = _Turn()
        create = self._client_for(request.api_key).chat.completions.with_streaming_response
        try:
            async with create.create(
                stream=True,
                stream_options={"include_usage": True},
                **request_options(request, self.upstream),
            ) as response:
                async for line in response.iter_lines():
                    chunk = _chunk(line)
                    if chunk is None:
                        continue
                    for event in _events(chunk, turn):
                        yield event
        # Errors while reading the raw stream arrive unwrapped from the HTTP library.
        except (openai.APIError, *TRANSPORT_ERRORS) as exc:
            raise self._error(provider_error(exc), request.api_key) from None
        yield turn.finish()

    async def list_models(self, api_key: str | None = None) -> list[dict[str, Any]]:
        """The upstream's own ``GET /models``: one quick try, no retries."""
        client = self._client_for(api_key).with_options(
            max_retries=0, timeout=min(self.upstream.timeout_seconds, LIST_TIMEOUT_SECONDS)
        )
        try:
            page = await client.models.list()
        except (openai.APIError, *TRANSPORT_ERRORS) as exc:
            raise self._error(provider_error(exc), api_key) from None
        return [
            {
                "id": model.id,
                "created": getattr(model, "created", None) or 0,
                "owned_by": getattr(model, "owned_by", None) or self.name,
            }
            for model in page.data
            if isinstance(getattr(model, "id", None), str)
        ]

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self._client.close()

    def _error(self, error: ProviderError, api_key: str | None) -> ProviderError:
        """``error`` with every secret this upstream sends scrubbed from its message."""
        message = error.message
        secrets = [api_key, self.upstream.api_key, *self.upstream.headers.values()]
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                message = message.replace(secret, "***")
        return ProviderError(error.kind, message)


def request_options(request: ChatRequest, upstream: Upstream | None = None) -> dict[str, Any]:
    """The ``create`` keyword arguments for the options that are set (None is omitted), in
    the form the model's family takes (see ``families``)."""
    limit = token_limit_param(request.model, upstream.token_limit_param if upstream else "auto")
    reasoning = is_reasoning(request.model, upstream.reasoning_models if upstream else None)
    options: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "response_format": request.response_format,
        "temperature": request.temperature,
        "top_p": request.top_p,
        limit: request.max_completion_tokens,
        "reasoning_effort": request.reasoning_effort if reasoning else None,
    }
    if request.tools:
        # OpenAI rejects tool_choice and parallel_tool_calls without tools. Parallel calls are
        # every upstream's default, and some models refuse the parameter: sent only to turn
        # them off.
        options["tools"] = request.tools
        options["tool_choice"] = request.tool_choice
        options["parallel_tool_calls"] = False if request.parallel_tool_calls is False else None
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
