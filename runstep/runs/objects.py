"""Builders of the wire objects a run creates: the run itself, its steps and its messages."""

from typing import Any

from runstep import ids
from runstep.protocol.messages import MessageObject
from runstep.protocol.runs import FILE_SEARCH_CONTENT, RunStepObject


def new_step(run: dict[str, Any], kind: str, details: dict[str, Any], now: int) -> dict[str, Any]:
    """An in-progress step of ``run``."""
    return RunStepObject(
        id=ids.new_id(ids.STEP),
        created_at=now,
        assistant_id=run["assistant_id"],
        thread_id=run["thread_id"],
        run_id=run["id"],
        type=kind,  # type: ignore[arg-type]
        step_details={"type": kind, **details},
        expires_at=run["expires_at"],
    ).wire()


def message_step(run: dict[str, Any], message_id: str, now: int) -> dict[str, Any]:
    return new_step(run, "message_creation", {"message_creation": {"message_id": message_id}}, now)


def tool_calls_step(run: dict[str, Any], now: int) -> dict[str, Any]:
    return new_step(run, "tool_calls", {"tool_calls": []}, now)


def assistant_message(run: dict[str, Any], now: int) -> dict[str, Any]:
    """The in-progress assistant message a ``message_creation`` step writes."""
    return MessageObject(
        id=ids.new_id(ids.MESSAGE),
        created_at=now,
        thread_id=run["thread_id"],
        status="in_progress",
        role="assistant",
        content=[],
        assistant_id=run["assistant_id"],
        run_id=run["id"],
    ).wire()


def function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A function tool call as a step records it (``output`` null until submitted)."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments, "output": None},
    }


def file_search_call(call_id: str, ranking_options: dict[str, Any]) -> dict[str, Any]:
    """A file_search tool call as a step records it (``results`` once searched)."""
    return {
        "id": call_id,
        "type": "file_search",
        "file_search": {"ranking_options": ranking_options, "results": []},
    }


def required_action(step: dict[str, Any]) -> dict[str, Any]:
    """The run's ``required_action`` for the function calls of a ``tool_calls`` step."""
    calls = [
        {
            "id": call["id"],
            "type": "function",
            "function": {
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            },
        }
        for call in step["step_details"]["tool_calls"]
        if call["type"] == "function" and call["function"]["output"] is None
    ]
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def message_delta(
    message_id: str,
    index: int,
    text: str,
    first: bool,
    annotations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``thread.message.delta``: the first carries ``annotations``, later ones only ``value``
    and the annotations that text completed."""
    part: dict[str, Any] = {"value": text}
    if first or annotations:
        part["annotations"] = annotations or []
    return {
        "id": message_id,
        "object": "thread.message.delta",
        "delta": {"content": [{"index": index, "type": "text", "text": part}]},
    }


def step_delta(step_id: str, tool_call: dict[str, Any]) -> dict[str, Any]:
    """A ``thread.run.step.delta`` carrying one tool-call fragment."""
    return {
        "id": step_id,
        "object": "thread.run.step.delta",
        "delta": {"step_details": {"type": "tool_calls", "tool_calls": [tool_call]}},
    }


def present_step(step: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """A step as returned: file_search result ``content`` only when ``include`` asks for it."""
    if step["type"] != "tool_calls" or FILE_SEARCH_CONTENT in include:
        return step
    calls = []
    for call in step["step_details"]["tool_calls"]:
        results = call.get("file_search", {}).get("results")
        if results:
            trimmed = [{k: v for k, v in r.items() if k != "content"} for r in results]
            call = {**call, "file_search": {**call["file_search"], "results": trimmed}}
        calls.append(call)
    return {**step, "step_details": {**step["step_details"], "tool_calls": calls}}
