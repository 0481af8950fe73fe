"""Scripts and script selection for the scripted upstream (wire format: `chat_wire`).

Script selection for `POST /v1/chat/completions`, in order:

1. Named: the latest `[[script:NAME]]` marker found in the message contents (last
   message containing one, last marker in it) picks the queue registered under NAME.
   Each request pops the queue head while more than one script is left; the last
   one is never removed, so it repeats. A marker whose NAME has no registered
   scripts is ignored (falls through to 2).
2. FIFO: the global queue filled by `enqueue`, each script used once.
3. Default: `default_script` (N chunks echoing the last user message).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MARKER = re.compile(r"\[\[script:([^\]\s]+)\]\]")
DEFAULT_MODELS = ("scripted-model",)


@dataclass
class ToolCall:
    """A function call; `arguments` (JSON text or a dict) streams in `fragments` pieces."""

    name: str
    arguments: str | dict[str, Any] = "{}"
    fragments: int = 3
    id: str | None = None

    def arguments_json(self) -> str:
        """The arguments as the JSON text the model emits."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))

    def argument_fragments(self) -> list[str]:
        """Split the arguments into `fragments` non-empty pieces (fewer if too short)."""
        text = self.arguments_json()
        count = max(1, min(self.fragments, len(text)))
        bounds = [len(text) * i // count for i in range(count + 1)]
        return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@dataclass
class Script:
    """One scripted response.

    `text`: content chunks; `tool_calls`: calls streamed after the text.
    `usage`: overrides for prompt_tokens / completion_tokens / total_tokens /
    cached_tokens / reasoning_tokens. `finish_reason`: defaults to "tool_calls"
    when there are tool calls, else "stop". `chunk_delay`: seconds before each
    SSE event after the first; `initial_delay`: seconds before the first byte.
    `status` != 200 answers with an OpenAI error envelope instead (`retry_after`
    sets the Retry-After header, `error` overrides envelope fields).
    `abort_after`: close the connection abruptly after that many SSE events
    (non-streaming: after half the body).
    """

    text: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    chunk_delay: float = 0.0
    initial_delay: float = 0.0
    status: int = 200
    retry_after: float | None = None
    error: dict[str, Any] | None = None
    abort_after: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Script:
        """Build a script from its JSON form (the `to_dict` shape, all keys optional)."""
        calls = [ToolCall(**call) for call in data.get("tool_calls", [])]
        return cls(**{**data, "tool_calls": calls})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form accepted by the HTTP control API."""
        return dataclasses.asdict(self)

    def completion_tokens(self) -> int:
        """Default completion tokens: one per text chunk and per argument fragment."""
        return len(self.text) + sum(len(c.argument_fragments()) for c in self.tool_calls)

    def final_reason(self) -> str:
        """The finish_reason of the last choice chunk."""
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


def content_texts(content: Any) -> Iterator[str]:
    """Text of one message content (a string or a list of content parts)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        yield from (
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )


def message_texts(messages: list[dict[str, Any]]) -> Iterator[str]:
    """Every text found in the request's message contents, in order."""
    for message in messages:
        yield from content_texts(message.get("content"))


def default_script(
    messages: list[dict[str, Any]], chunks: int, chunk_delay: float, initial_delay: float
) -> Script:
    """Deterministic `chunks`-piece reply echoing the last user message's first words."""
    user = [m for m in messages if m.get("role") == "user"]
    words = " ".join(content_texts(user[-1].get("content"))).split()[:8] if user else []
    words = words or ["hello"]
    pieces = ["Echo:"] + [" " + words[i % len(words)] for i in range(chunks - 1)]
    return Script(
        text=pieces[: max(chunks, 0)], chunk_delay=chunk_delay, initial_delay=initial_delay
    )


def apply_token_limit(script: Script, body: dict[str, Any]) -> Script:
    """Honour max_completion_tokens / max_tokens: one text chunk is one token."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if not isinstance(limit, int) or script.completion_tokens() <= limit:
        return script
    return dataclasses.replace(
        script, text=script.text[:limit], tool_calls=[], finish_reason="length"
    )


@dataclass
class RecordedRequest:
    """One received chat completion request and the script source used for it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    source: str  # "named:NAME", "fifo" or "default"


class ScriptBook:
    """Thread-safe script queues, default-reply settings and request log."""

    def __init__(
        self, chunks: int = 20, chunk_delay: float = 0.0, initial_delay: float = 0.0
    ) -> None:
        self.default = (chunks, chunk_delay, initial_delay)
        self._lock = threading.Lock()
        self._fifo: deque[Script] = deque()
        self._named: dict[str, list[Script]] = {}
        self._log: list[RecordedRequest] = []
        # GET /v1/models: the ids listed (or an error status), and the requests received
        self.models: list[str] = list(DEFAULT_MODELS)
        self.models_status = 200
        self._model_log: list[RecordedRequest] = []

    def enqueue(self, *scripts: Script) -> None:
        """Append scripts to the global FIFO queue."""
        with self._lock:
            self._fifo.extend(scripts)

    def register(self, name: str, *scripts: Script) -> None:
        """Replace the queue for `[[script:NAME]]` (the last script repeats)."""
        with self._lock:
            self._named[name] = list(scripts)

    def reset(self) -> None:
        """Forget all queued scripts and logged requests."""
        with self._lock:
            self._fifo.clear()
            self._named.clear()
            self._log.clear()
            self._model_log.clear()
            self.models, self.models_status = list(DEFAULT_MODELS), 200

    def serve_models(self, models: list[str], status: int = 200) -> None:
        """What GET /v1/models answers: these ids, or an error with ``status``."""
        with self._lock:
            self.models, self.models_status = list(models), status

    def list_models(self, headers: dict[str, str]) -> tuple[int, list[str]]:
        """Log a GET /v1/models request; the status and ids to answer with."""
        with self._lock:
            self._model_log.append(RecordedRequest("/v1/models", headers, {}, "models"))
            return self.models_status, list(self.models)

    @property
    def model_requests(self) -> list[RecordedRequest]:
        """A snapshot of the GET /v1/models requests received so far."""
        with self._lock:
            return list(self._model_log)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the chat completion requests received so far."""
        with self._lock:
            return list(self._log)

    def take(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Script:
        """Log the request and pick its script (named, then FIFO, then default)."""
        with self._lock:
            source, script = self._pick(body.get("messages") or [])
            self._log.append(RecordedRequest(path, headers, body, source))
        return script

    def _pick(self, messages: list[dict[str, Any]]) -> tuple[str, Script]:
        name = _marker(messages)
        queue = self._named.get(name) if name else None
        if queue:
            return f"named:{name}", queue.pop(0) if len(queue) > 1 else queue[0]
        if self._fifo:
            return "fifo", self._fifo.popleft()
        return "default", default_script(messages, *self.default)


def _marker(messages: list[dict[str, Any]]) -> str | None:
    """NAME of the latest `[[script:NAME]]` marker in the message contents."""
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue
        found: list[str] = MARKER.findall(" ".join(content_texts(message.get("content"))))
        if found:
            return found[-1]
    return None
