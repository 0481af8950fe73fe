"""The chat-model interface: a request in, a stream of provider events out.

ProviderError                      a model call that failed for good (after retries)
├── kind "rate_limit"              429 from the upstream
├── kind "server"                  5xx, connection loss, timeout, broken stream
└── kind "invalid"                 the upstream refused the request (4xx)
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ChatRequest:
    """A Chat Completions request, already in the wire shape of ``messages`` and ``tools``."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None
    reasoning_effort: str | None = None
    # Not options: whose run this is (the router picks the project's own upstream key by it),
    # and the key the router chose to send instead of the upstream's configured one.
    project_id: str | None = None
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of tool call ``index``; ``id`` and ``name`` arrive with its first fragment."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Finish:
    """The end of one model turn, with the upstream's reported usage when it gave one."""

    reason: Literal["stop", "tool_calls", "length", "content_filter"]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


ProviderEvent = TextDelta | ToolCallDelta | Finish


def content_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list (images skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


class ProviderError(Exception):
    def __init__(self, kind: Literal["rate_limit", "server", "invalid"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Provider(Protocol):
    """A chat model. ``stream`` yields deltas and ends with exactly one ``Finish``."""

    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]: ...

    async def aclose(self) -> None: ...
