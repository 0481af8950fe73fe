"""What the model sees: system prompt, truncated history, this run's tool turns, options."""

from typing import Any

from runstep.runs.context import build


def _run(**overrides: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": "run_1",
        "model": "m",
        "instructions": "Be brief.",
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "response_format": "auto",
        "temperature": 1.0,
        "top_p": 1.0,
        "max_prompt_tokens": None,
        "max_completion_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
    }
    return {**run, **overrides}


def _message(
    number: int, text: str, role: str = "user", run_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": f"msg_{number}",
        "role": role,
        "run_id": run_id,
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
    }


FUNCTION = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_system_prompt_then_thread_messages_in_order() -> None:
    built = build(_run(), {}, [_message(1, "a"), _message(2, "b", "assistant")], [], 1000)
    assert built.request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
    ]
    assert built.request.tools == [] and built.request.tool_choice is None


def test_last_messages_keeps_only_the_newest() -> None:
    history = [_message(i, str(i)) for i in range(5)]
    run = _run(truncation_strategy={"type": "last_messages", "last_messages": 2}, instructions="")
    built = build(run, {}, history, [], 1000)
    assert [m["content"] for m in built.request.messages] == ["3", "4"]


def test_auto_truncation_drops_the_middle_to_fit_the_budget() -> None:
    history = [_message(i, f"{i}" + "x" * 396) for i in range(10)]  # ~104 tokens each
    run = _run(instructions="", max_prompt_tokens=400)
    built = build(run, {}, history, [], 128_000)
    kept = [m["content"][0] for m in built.request.messages]
    assert kept[0] == "0" and kept[-1] == "9" and len(kept) < 10
    assert built.prompt_tokens <= 400 and built.prompt_budget == 400


def test_this_runs_tool_calls_and_outputs_follow_the_history() -> None:
    step = {
        "type": "tool_calls",
        "status": "completed",
        "step_details": {
            "type": "tool_calls",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}", "output": "42"},
                }
            ],
        },
    }
    built = build(_run(tools=[FUNCTION]), {}, [_message(1, "q")], [step], 1000)
    assert built.request.messages[-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]


def test_options_are_sent_only_when_they_differ_from_defaults() -> None:
    run = _run(
        tools=[FUNCTION],
        tool_choice="required",
        temperature=0.3,
        parallel_tool_calls=False,
        response_format={"type": "json_object"},
        max_completion_tokens=300,
    )
    request = build(
        run, {"usage": {"completion_tokens": 100}, "reasoning_effort": "low"}, [], [], 1000
    ).request
    assert (request.tool_choice, request.temperature, request.top_p) == ("required", 0.3, None)
    assert request.parallel_tool_calls is False
    assert request.response_format == {"type": "json_object"}
    assert request.max_completion_tokens == 200  # what the run's budget still allows
    assert request.reasoning_effort == "low"
