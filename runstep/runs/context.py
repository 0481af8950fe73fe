"""What the model sees: instructions, the thread's messages after truncation, this run's
tool calls and outputs, the tools and the options, as one Chat Completions request."""

import json
from dataclasses import dataclass
from typing import Any

from runstep.providers.base import ChatRequest
from runstep.tools.code_interpreter import model_tool as code_tool
from runstep.tools.file_search import tool as file_search

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token); upstreams report exact usage."""
    return len(text) // CHARS_PER_TOKEN + 1


def _message_tokens(message: dict[str, Any]) -> int:
    return estimate_tokens(
        json.dumps(message.get("content") or message.get("tool_calls") or "")
    ) + (MESSAGE_OVERHEAD_TOKENS)


def chat_content(
    content: list[dict[str, Any]], images: dict[str, str] | None = None, with_images: bool = True
) -> str | list[dict[str, Any]]:
    """Message content parts as chat content: plain text when it is only text. ``image_file``
    parts become image input from ``images`` (file id → data URL), unless ``with_images`` is
    false (then only the text is kept)."""
    parts: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"]["value"]})
        elif not with_images:
            continue
        elif part["type"] == "image_url":
            parts.append({"type": "image_url", "image_url": part["image_url"]})
        elif part["type"] == "image_file" and part["image_file"]["file_id"] in (images or {}):
            url = (images or {})[part["image_file"]["file_id"]]
            detail = part["image_file"].get("detail", "auto")
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": detail}})
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _chat_message(message: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """A thread message as a chat message; only user messages carry images (chat models take
    no images from the assistant, e.g. the figures its code made)."""
    role = message["role"]
    return {"role": role, "content": chat_content(message["content"], images, role == "user")}


def _tool_turn(
    step: dict[str, Any], sources: dict[str, int], options: dict[str, Any]
) -> list[dict[str, Any]]:
    """A tool_calls step as the assistant's tool calls followed by one result per call:
    function outputs as submitted, file_search passages with their markers (``sources``: the
    call's marker source), code_interpreter output as the model read it (hosted calls' arguments
    and outputs are kept in the run's ``options``)."""
    calls = step["step_details"]["tool_calls"]
    if not calls:
        return []
    requested, results = [], []
    for call in calls:
        kind = call["type"]
        if kind == "function":
            function = {
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            }
            output = call["function"]["output"] or ""
        else:
            function = {
                "name": kind,
                "arguments": options.get("tool_arguments", {}).get(call["id"], "{}"),
            }
            if kind == file_search.NAME:
                queries = file_search.queries_in(function["arguments"])
                found = call[kind].get("results") or []
                output = file_search.passages_text(sources[call["id"]], queries, found)
            else:
                output = options.get("tool_outputs", {}).get(call["id"], "")
        requested.append({"id": call["id"], "type": "function", "function": function})
        results.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    return [{"role": "assistant", "content": None, "tool_calls": requested}, *results]


@dataclass(frozen=True)
class Context:
    request: ChatRequest
    prompt_tokens: int  # estimated
    prompt_budget: int | None  # what max_prompt_tokens leaves for this turn, if set
    searches: list[dict[str, Any]]  # the run's file_search calls so far, in marker order
    images: list[str]  # file ids of images the run's code made since its last message


def _truncate(
    history: list[dict[str, Any]], strategy: dict[str, Any], budget: int
) -> list[dict[str, Any]]:
    """``last_messages`` keeps the newest N. ``auto`` always keeps the newest message (if even
    that does not fit, the run ends ``incomplete``), then the first (it often states the task)
    and as many of the newest others as fit in ``budget``, dropping from the middle."""
    if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
        return history[-strategy["last_messages"] :]
    if len(history) <= 1:
        return history
    *older, newest = history
    budget -= _message_tokens(newest)
    head: list[dict[str, Any]] = []
    if _message_tokens(older[0]) <= budget:
        budget -= _message_tokens(older[0])
        head, older = [older[0]], older[1:]
    kept: list[dict[str, Any]] = []
    for message in reversed(older):
        cost = _message_tokens(message)
        if cost > budget:
            break
        kept.append(message)
        budget -= cost
    return [*head, *reversed(kept), newest]


HOSTED_MODEL_TOOLS = {
    file_search.NAME: file_search.MODEL_TOOL,
    code_tool.NAME: code_tool.MODEL_TOOL,
}


def _tools(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's functions, and its hosted tools as functions."""
    functions = [
        {"type": "function", "function": tool["function"]}
        for tool in run["tools"]
        if tool["type"] == "function"
    ]
    return functions + [HOSTED_MODEL_TOOLS[name] for name in hosted_tools(run)]


def hosted_tools(run: dict[str, Any]) -> list[str]:
    """The hosted tools the run has (unless a function of its own takes the tool's name)."""
    names = {tool["function"]["name"] for tool in run["tools"] if tool["type"] == "function"}
    return [
        kind
        for kind in HOSTED_MODEL_TOOLS
        if any(tool["type"] == kind for tool in run["tools"]) and kind not in names
    ]


def _tool_choice(run: dict[str, Any], tools: list[dict[str, Any]]) -> str | dict[str, Any] | None:
    choice = run["tool_choice"]
    if not tools or choice in (None, "auto"):
        return None
    if isinstance(choice, dict) and choice.get("type") in hosted_tools(run):
        return {"type": "function", "function": {"name": choice["type"]}}
    return choice if isinstance(choice, str) or choice.get("type") == "function" else "required"


def build(
    run: dict[str, Any],
    options: dict[str, Any],
    thread_messages: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    context_window: int,
    images: dict[str, str] | None = None,
) -> Context:
    """The request for the next model turn of ``run``."""
    by_id = {message["id"]: message for message in thread_messages}
    done = [step for step in steps if step["status"] != "in_progress"]  # else: regenerated
    searches = file_search.file_search_calls(done)
    sources = {call["id"]: n for n, call in enumerate(searches)}
    current: list[dict[str, Any]] = []
    for step in done:
        if step["type"] == "tool_calls":
            current += _tool_turn(step, sources, options)
            continue
        message = by_id.get(step["step_details"]["message_creation"]["message_id"])
        if message is not None and message["content"]:
            current.append(_chat_message(message, images or {}))
    system = [{"role": "system", "content": run["instructions"]}] if run["instructions"] else []
    tools = _tools(run)
    fixed = sum(_message_tokens(m) for m in system + current) + estimate_tokens(json.dumps(tools))
    prompt_budget = None
    if run["max_prompt_tokens"] is not None:
        prompt_budget = run["max_prompt_tokens"] - options.get("usage", {}).get("prompt_tokens", 0)
    budget = min(context_window, prompt_budget) if prompt_budget is not None else context_window
    history = [_chat_message(m, images or {}) for m in thread_messages if m["run_id"] != run["id"]]
    kept = _truncate(history, run["truncation_strategy"] or {}, max(budget - fixed, 0))
    messages = system + kept + current
    return Context(
        request=ChatRequest(
            model=run["model"],
            messages=messages,
            tools=tools,
            tool_choice=_tool_choice(run, tools),
            parallel_tool_calls=run["parallel_tool_calls"] if tools else None,
            response_format=None if run["response_format"] == "auto" else run["response_format"],
            temperature=run["temperature"] if run["temperature"] not in (None, 1.0) else None,
            top_p=run["top_p"] if run["top_p"] not in (None, 1.0) else None,
            max_completion_tokens=_completion_budget(run, options),
            reasoning_effort=options.get("reasoning_effort"),
        ),
        prompt_tokens=fixed + sum(_message_tokens(m) for m in kept),
        prompt_budget=prompt_budget,
        searches=searches,
        images=_images_since_last_message(done),
    )


def _images_since_last_message(steps: list[dict[str, Any]]) -> list[str]:
    """The images code_interpreter calls made after the run's last message: the next message
    shows them."""
    images: list[str] = []
    for step in steps:
        if step["type"] == "message_creation":
            images = []
            continue
        for call in step["step_details"]["tool_calls"]:
            for output in call.get(code_tool.NAME, {}).get("outputs", []):
                if output["type"] == "image":
                    images.append(output["image"]["file_id"])
    return images


def _completion_budget(run: dict[str, Any], options: dict[str, Any]) -> int | None:
    if run["max_completion_tokens"] is None:
        return None
    used = options.get("usage", {}).get("completion_tokens", 0)
    return max(run["max_completion_tokens"] - used, 1)
