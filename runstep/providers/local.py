"""The built-in, deterministic, offline stand-in model used when no upstream is configured.

It is not a language model: the ``RULES`` are tried in order, the first that applies
decides the reply, and when none does it echoes the user. To teach it a new trick (e.g.
a hosted tool), write a ``Rule`` returning a ``Reply`` (None when it does
not apply) and insert it into ``RULES`` ahead of the rules it should win over.
"""

import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runstep.providers.base import (
    ChatRequest,
    Finish,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    content_text,
)
from runstep.tools.code_interpreter import model_tool as code_tool
from runstep.tools.file_search import tool as file_search

LABEL = "[local stand-in model]"
ECHO_LABEL = "[local stand-in model — no upstream configured]"
USER_TEXT_LIMIT = 300
TOOL_OUTPUT_LIMIT = 500
QUOTE_LIMIT = 300
FENCED_PYTHON = re.compile(r"```(?:python|py)[^\n]*\n(.*?)```", re.DOTALL)
ARGUMENT_FRAGMENTS = 3


@dataclass(frozen=True)
class PlannedCall:
    """One function call the stand-in decided to make."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """What the stand-in answers: text, or function calls."""

    text: str = ""
    calls: list[PlannedCall] = field(default_factory=list)


Rule = Callable[[ChatRequest], Reply | None]


def estimate_tokens(text: str) -> int:
    """About one token per four characters."""
    return math.ceil(len(text) / 4)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def function_names(request: ChatRequest) -> list[str]:
    """Names of the request's function tools, in order."""
    return [
        tool["function"]["name"]
        for tool in request.tools
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict)
    ]


def _mention(text: str, name: str) -> int | None:
    """Where ``name`` first appears in ``text`` as a whole word, if it does."""
    found = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
    return found.start() if found else None


def first_json_object(text: str, start: int = 0) -> dict[str, Any] | None:
    """The first JSON object in ``text`` at or after ``start``."""
    decoder = json.JSONDecoder()
    position = text.find("{", start)
    while position != -1:
        try:
            value, _ = decoder.raw_decode(text, position)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        position = text.find("{", position + 1)
    return None


def _call_id(request: ChatRequest, index: int) -> str:
    """A call id derived from the whole conversation, so it repeats only for the same request."""
    history = json.dumps(request.messages, sort_keys=True, default=str)
    return "call_" + hashlib.sha256(f"{index}\n{history}".encode()).hexdigest()[:24]


def _chosen_functions(request: ChatRequest, text: str) -> list[tuple[str, int]]:
    """(name, mention position) of the functions to call, per tool_choice and the text."""
    names = function_names(request)
    choice = request.tool_choice
    if choice == "none" or not names:
        return []
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        return [(name, _mention(text, name) or 0)] if isinstance(name, str) else []
    mentioned = sorted(
        ((name, at) for name in names if (at := _mention(text, name)) is not None),
        key=lambda pair: pair[1],
    )
    if not mentioned and choice == "required":
        return [(names[0], 0)]
    return mentioned[:1] if request.parallel_tool_calls is False else mentioned


def call_named_functions(request: ChatRequest) -> Reply | None:
    """Call the function tools the last user message names, with its JSON object as arguments."""
    last = request.messages[-1] if request.messages else {}
    if last.get("role") != "user":
        return None
    text = content_text(last.get("content"))
    calls: list[PlannedCall] = []
    for index, (name, at) in enumerate(_chosen_functions(request, text)):
        arguments = first_json_object(text, at) or first_json_object(text) or {}
        calls.append(PlannedCall(_call_id(request, index), name, json.dumps(arguments)))
    return Reply(calls=calls) if calls else None


def summarise_tool_results(request: ChatRequest) -> Reply | None:
    """After tool results, report what the tools returned."""
    outputs = [
        _truncate(content_text(message.get("content")), TOOL_OUTPUT_LIMIT)
        for message in _trailing_tool_messages(request)
    ]
    if not outputs:
        return None
    return Reply(text=f"{LABEL} The tool returned: " + " | ".join(outputs))


def run_fenced_python(request: ChatRequest) -> Reply | None:
    """With code_interpreter on, run the fenced python block of the user's last message."""
    last = request.messages[-1] if request.messages else {}
    if last.get("role") != "user" or request.tool_choice == "none":
        return None
    if code_tool.NAME not in function_names(request):
        return None
    block = FENCED_PYTHON.search(content_text(last.get("content")))
    if block is None:
        return None
    arguments = json.dumps({"code": block.group(1)})
    return Reply(calls=[PlannedCall(_call_id(request, 0), code_tool.NAME, arguments)])


def search_files(request: ChatRequest) -> Reply | None:
    """With file_search on, search the files for what the user just said."""
    last = request.messages[-1] if request.messages else {}
    if last.get("role") != "user" or request.tool_choice == "none":
        return None
    if file_search.NAME not in function_names(request):
        return None
    said = _truncate(content_text(last.get("content")).strip(), USER_TEXT_LIMIT)
    arguments = json.dumps({"queries": [said]})
    return Reply(calls=[PlannedCall(_call_id(request, 0), file_search.NAME, arguments)])


def quote_search_results(request: ChatRequest) -> Reply | None:
    """After a file search, quote the best passage, citing it by its marker."""
    trailing = _trailing_tool_messages(request)
    asked = request.messages[-len(trailing) - 1] if trailing else {}
    searches = {
        call["id"]
        for call in asked.get("tool_calls") or []
        if call.get("function", {}).get("name") == file_search.NAME
    }
    outputs = [content_text(m.get("content")) for m in trailing if m["tool_call_id"] in searches]
    if not outputs:
        return None
    passages = [passage for output in outputs for passage in file_search.parse_passages(output)]
    if not passages:
        return Reply(text=f"{LABEL} I searched the files and found nothing relevant.")
    best = passages[0]
    quote = _truncate(" ".join(best.text.split()), QUOTE_LIMIT)
    return Reply(text=f'{LABEL} From {best.file_name}: "{quote}" {best.marker}')


def _trailing_tool_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The tool results at the end of the conversation, in order."""
    trailing: list[dict[str, Any]] = []
    for message in reversed(request.messages):
        if message.get("role") != "tool":
            break
        trailing.insert(0, message)
    return trailing


def echo_last_user_message(request: ChatRequest) -> Reply:
    """Say plainly that this is a stand-in, and echo the last user message."""
    users = [m for m in request.messages if m.get("role") == "user"]
    said = content_text(users[-1].get("content")).strip() if users else ""
    return Reply(text=f"{ECHO_LABEL} You said: {_truncate(said, USER_TEXT_LIMIT) or '(nothing)'}")


RULES: list[Rule] = [
    call_named_functions,
    run_fenced_python,
    search_files,
    quote_search_results,
    summarise_tool_results,
]


def reply_for(request: ChatRequest) -> Reply:
    """The reply of the first rule that applies, else the echo."""
    for rule in RULES:
        reply = rule(request)
        if reply is not None:
            return reply
    return echo_last_user_message(request)


def _fragments(text: str, count: int) -> list[str]:
    """``text`` split into up to ``count`` non-empty pieces (one piece if empty)."""
    count = max(1, min(count, len(text)))
    bounds = [len(text) * i // count for i in range(count + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(count)]


def reply_events(reply: Reply) -> Iterator[tuple[ProviderEvent, str]]:
    """Each delta of ``reply`` with the text it costs tokens for."""
    for word in re.findall(r"\s*\S+", reply.text):
        yield TextDelta(word), word
    for index, call in enumerate(reply.calls):
        for number, piece in enumerate(_fragments(call.arguments, ARGUMENT_FRAGMENTS)):
            first = number == 0
            delta = ToolCallDelta(
                index, piece, call.id if first else None, call.name if first else None
            )
            yield delta, piece


class LocalProvider:
    """The deterministic stand-in: no network, same request in, same events out."""

    name = "local"

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        """Stream the reply, stopping with "length" once max_completion_tokens would be passed."""
        reply = reply_for(request)
        prompt = estimate_tokens("".join(content_text(m.get("content")) for m in request.messages))
        budget = request.max_completion_tokens
        spent = 0
        for event, text in reply_events(reply):
            cost = max(1, estimate_tokens(text))
            if budget is not None and spent + cost > budget:
                yield Finish("length", prompt, spent)
                return
            spent += cost
            yield event
        yield Finish("tool_calls" if reply.calls else "stop", prompt, spent)

    async def aclose(self) -> None:
        """Nothing to release."""
