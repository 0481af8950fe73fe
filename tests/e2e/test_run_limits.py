"""The limits a run meets, through the official client: token budgets (the prompt truncated
to fit, or the run ending ``incomplete``), tool_choice, invalid tool outputs or cancels, a busy
thread, and bad requests."""

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types.beta.threads import Run

from tests.conftest import RunningServer
from tests.support.runs import (
    MESSAGE_OPENED,
    MESSAGE_STAMPS,
    RUN_STAMPS,
    STARTED,
    STEP_STAMPS,
    WEATHER,
    StreamLog,
    assert_stamps,
    assistant,
    data_of,
    messages_of,
    recording_client,
    scripted,
    steps_of,
    thread_with,
    upstream_prompt_tokens,
    usage,
    wait_for_run,
    without_deltas,
)
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.upstream_script import Script, ToolCall

FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


def _invalid(message: str, param: str | None = None) -> dict[str, Any]:
    """The ``error`` object of a 400."""
    return {"message": message, "type": "invalid_request_error", "param": param, "code": None}


@pytest.fixture
def recorded(server: RunningServer, api_key: str) -> Iterator[tuple[openai.OpenAI, StreamLog]]:
    """The official client as a fresh tenant, recording every event stream it reads."""
    client, log = recording_client(server.base_url, api_key)
    with client:
        yield client, log


def _runs(client: openai.OpenAI, thread_id: str) -> list[Run]:
    return client.beta.threads.runs.list(thread_id).data


# --- token budgets: truncation ----------------------------------------------------------------


def test_auto_truncation_sends_the_first_and_newest_messages_that_fit_max_prompt_tokens(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    script = scripted(upstream, Script(text=["Short ", "answer."]))
    # 250 characters each (about 65 tokens): three fit in 256 tokens, with "first" beside them.
    middle = [f"message {i} ".ljust(250, "x") for i in range(1, 9)]
    latest = f"latest {script.marker} ".ljust(250, "y")
    thread_id = thread_with(client, "first", *middle, latest)
    run = client.beta.threads.runs.create(
        thread_id, assistant_id=assistant(client), max_prompt_tokens=256
    )
    assert run.truncation_strategy is not None
    assert (run.truncation_strategy.type, run.truncation_strategy.last_messages) == ("auto", None)
    assert wait_for_run(client, thread_id, run.id).status == "completed"

    [request] = script.requests
    sent = [(m["role"], m["content"]) for m in request.body["messages"]]
    assert sent == [("user", "first"), ("user", middle[-2]), ("user", middle[-1]), ("user", latest)]


# --- token budgets reached --------------------------------------------------------------------


def test_completion_budget_reached_ends_run_incomplete_and_message_max_tokens(
    recorded: tuple[openai.OpenAI, StreamLog], upstream: ScriptedUpstream
) -> None:
    client, log = recorded
    script = scripted(upstream, Script(text=["x"] * 300))
    thread_id = thread_with(client, f"long answer {script.marker}")
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant(client), max_completion_tokens=256
    ) as stream:
        stream.until_done()
    frames = log.last()
    assert without_deltas(frames) == [
        *STARTED,
        *MESSAGE_OPENED,
        "thread.message.incomplete",
        "thread.run.step.completed",
        "thread.run.incomplete",
        "done",
    ]
    [request] = script.requests
    # a model outside OpenAI's families: the budget goes as max_tokens (providers/families.py)
    assert request.body["max_tokens"] == 256 and "max_completion_tokens" not in request.body
    spent = usage(upstream_prompt_tokens(request), 256)

    run = client.beta.threads.runs.retrieve(frames[0].json()["id"], thread_id=thread_id)
    assert run.to_dict() == frames[-2].json()
    assert run.status == "incomplete" and run.max_completion_tokens == 256
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert_stamps(run, RUN_STAMPS, "started_at")
    assert run.expires_at is None and run.last_error is None
    assert run.usage is not None and run.usage.model_dump() == spent
    [step] = steps_of(client, run)
    assert (step.status, step.last_error) == ("completed", None)
    assert step.usage is not None and step.usage.model_dump() == spent
    assert_stamps(step, STEP_STAMPS, "completed_at")
    [message] = messages_of(client, run)
    assert message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "max_tokens"
    assert_stamps(message, MESSAGE_STAMPS, "incomplete_at")
    assert message.content[0].text.value == "x" * 256  # type: ignore[union-attr]
    assert step.to_dict() == data_of(frames, "thread.run.step.completed")
    assert message.to_dict() == data_of(frames, "thread.message.incomplete")


def test_latest_message_beyond_the_prompt_budget_ends_run_incomplete_without_a_model_call(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    script = scripted(upstream, Script(text=["never"]))
    # About 1,250 tokens: the newest message alone cannot be truncated to fit 256.
    thread_id = thread_with(client, "word " * 1000 + script.marker)
    before = len(upstream.requests)
    run = client.beta.threads.runs.create(
        thread_id, assistant_id=assistant(client), max_prompt_tokens=256
    )
    run = wait_for_run(client, thread_id, run.id)
    assert run.status == "incomplete" and run.max_prompt_tokens == 256
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_prompt_tokens"
    assert_stamps(run, RUN_STAMPS, "started_at")
    assert run.expires_at is None and run.last_error is None
    assert run.usage is not None and run.usage.model_dump() == usage(0, 0)
    assert steps_of(client, run) == [] and messages_of(client, run) == []
    assert script.requests == []
    assert not [r for r in upstream.requests[before:] if r.body.get("messages") == []]


# --- tool_choice ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "choice",
    ["none", "required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["none", "required", "named-function"],
)
def test_tool_choice_is_recorded_on_the_run_and_sent_upstream_with_the_tools(
    client: openai.OpenAI, upstream: ScriptedUpstream, choice: Any
) -> None:
    # The scripted model answers with text whatever tool_choice says: only the request matters.
    script = scripted(upstream, Script(text=["It is ", "sunny."]))
    thread_id = thread_with(client, f"weather? {script.marker}")
    run = client.beta.threads.runs.create(
        thread_id, assistant_id=assistant(client, tools=[WEATHER]), tool_choice=choice
    )
    assert run.to_dict()["tool_choice"] == choice
    assert wait_for_run(client, thread_id, run.id).status == "completed"

    [request] = script.requests
    assert request.body["tool_choice"] == choice
    assert [tool["function"]["name"] for tool in request.body["tools"]] == ["get_weather"]


def test_tool_choice_naming_a_function_the_run_does_not_have_is_refused(
    client: openai.OpenAI,
) -> None:
    thread_id = thread_with(client, "hello")
    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.runs.create(
            thread_id,
            assistant_id=assistant(client, tools=[WEATHER]),
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert refused.value.body == _invalid(
        "Invalid 'tool_choice': no function named 'get_time' among the run's tools.",
        "tool_choice",
    )
    assert _runs(client, thread_id) == []


# --- tool outputs, and a cancel too late ------------------------------------------------------


def _waiting_for_two_calls(client: openai.OpenAI, upstream: ScriptedUpstream) -> Run:
    """A run waiting for the outputs of two get_weather calls; then the model answers."""
    calls = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Oslo"})]
    script = scripted(upstream, Script(tool_calls=calls), Script(text=["Both ", "sunny."]))
    thread_id = thread_with(client, f"weather in Paris and Oslo? {script.marker}")
    run = client.beta.threads.runs.create(
        thread_id, assistant_id=assistant(client, tools=[WEATHER])
    )
    waiting = wait_for_run(client, thread_id, run.id)
    assert waiting.status == "requires_action" and waiting.required_action is not None
    assert len(waiting.required_action.submit_tool_outputs.tool_calls) == 2
    return waiting


def _missing_one(a: str, b: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    return [{"tool_call_id": a, "output": "sunny"}], _invalid(
        f"Expected tool outputs for call_ids ['{a}', '{b}'], got ['{a}']. "
        "Submit every output in one request.",
        "tool_outputs",
    )


def _unknown_id(a: str, b: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    outputs = [{"tool_call_id": a, "output": "sunny"}, {"tool_call_id": "call_nope", "output": "?"}]
    return outputs, _invalid(
        "Invalid 'tool_outputs[1].tool_call_id': no pending tool call with id 'call_nope'.",
        "tool_outputs[1].tool_call_id",
    )


def _duplicate_id(a: str, b: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    outputs = [
        {"tool_call_id": a, "output": "sunny"},
        {"tool_call_id": a, "output": "rainy"},
        {"tool_call_id": b, "output": "snowy"},
    ]
    return outputs, _invalid(
        f"Invalid 'tool_outputs[1].tool_call_id': duplicate output for '{a}'.",
        "tool_outputs[1].tool_call_id",
    )


@pytest.mark.parametrize("bad", [_missing_one, _unknown_id, _duplicate_id])
def test_invalid_tool_outputs_are_refused_and_change_nothing(
    client: openai.OpenAI,
    upstream: ScriptedUpstream,
    bad: Callable[[str, str], tuple[list[dict[str, str]], dict[str, Any]]],
) -> None:
    waiting = _waiting_for_two_calls(client, upstream)
    assert waiting.required_action is not None
    a, b = (call.id for call in waiting.required_action.submit_tool_outputs.tool_calls)
    [step_before] = steps_of(client, waiting)
    outputs, error = bad(a, b)

    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.runs.submit_tool_outputs(
            waiting.id,
            thread_id=waiting.thread_id,
            tool_outputs=outputs,  # type: ignore[arg-type]
        )
    assert refused.value.body == error

    assert client.beta.threads.runs.retrieve(waiting.id, thread_id=waiting.thread_id) == waiting
    [step] = steps_of(client, waiting)
    assert step == step_before
    assert (step.status, step.usage, step.completed_at) == ("in_progress", None, None)
    tool_calls = step.step_details.tool_calls  # type: ignore[union-attr]
    assert [call.function.output for call in tool_calls] == [None, None]  # type: ignore[union-attr]

    # Still waiting as before: the proper submission goes through.
    queued = client.beta.threads.runs.submit_tool_outputs(
        waiting.id,
        thread_id=waiting.thread_id,
        tool_outputs=[{"tool_call_id": a, "output": "sunny"}, {"tool_call_id": b, "output": "fog"}],
    )
    assert queued.status == "queued"
    assert wait_for_run(client, waiting.thread_id, waiting.id).status == "completed"


def test_tool_outputs_for_a_run_that_is_not_waiting_are_refused(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    script = scripted(upstream, Script(text=["Done."]))
    thread_id = thread_with(client, f"hi {script.marker}")
    run = client.beta.threads.runs.create(thread_id, assistant_id=assistant(client))
    completed = wait_for_run(client, thread_id, run.id)
    assert completed.status == "completed"

    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": "call_x", "output": "x"}]
        )
    assert refused.value.body == _invalid(
        'Runs in status "completed" do not accept tool outputs.', "tool_outputs"
    )
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread_id) == completed


def test_cancelling_a_completed_run_is_refused_with_the_error_envelope(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    script = scripted(upstream, Script(text=["Done."]))
    thread_id = thread_with(client, f"hi {script.marker}")
    run = client.beta.threads.runs.create(thread_id, assistant_id=assistant(client))
    assert wait_for_run(client, thread_id, run.id).status == "completed"

    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
    assert refused.value.status_code == 400
    assert refused.value.body == _invalid("Cannot cancel run with status 'completed'.")
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread_id).status == "completed"


# --- a thread with an active run --------------------------------------------------------------


def test_thread_with_an_active_run_refuses_another_run_and_new_messages(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    waiting = _waiting_for_two_calls(client, upstream)
    thread_id, assistant_id = waiting.thread_id, waiting.assistant_id
    messages_before = client.beta.threads.messages.list(thread_id).data
    busy = _invalid(f"Thread {thread_id} already has an active run {waiting.id}.")

    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.runs.create(thread_id, assistant_id=assistant_id)
    assert refused.value.body == busy
    with pytest.raises(openai.BadRequestError) as refused:  # streamed, it is refused alike
        client.beta.threads.runs.create(thread_id, assistant_id=assistant_id, stream=True)
    assert refused.value.body == busy
    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.messages.create(thread_id, role="user", content="and Rome?")
    assert refused.value.body == _invalid(
        f"Can't add messages to {thread_id} while a run {waiting.id} is active."
    )

    assert [run.id for run in _runs(client, thread_id)] == [waiting.id]
    assert client.beta.threads.messages.list(thread_id).data == messages_before


# --- bad run requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        pytest.param(
            {"assistant_id": "asst_nope"},
            404,
            _invalid("No assistant found with id 'asst_nope'."),
            id="unknown-assistant",
        ),
        pytest.param(
            {"thread_id": "thread_nope"},
            404,
            _invalid("No thread found with id 'thread_nope'."),
            id="unknown-thread",
        ),
        pytest.param(
            {"extra_body": {"colour": "red"}},
            400,
            _invalid("Unrecognized request argument supplied: colour", "colour"),
            id="unknown-field",
        ),
        pytest.param(
            {"max_completion_tokens": 100},
            400,
            _invalid(
                "Invalid 'max_completion_tokens': Input should be greater than or equal to 256.",
                "max_completion_tokens",
            ),
            id="completion-budget-below-256",
        ),
        pytest.param(
            {"include": ["bogus"]},
            400,
            _invalid(f"Invalid 'include': 'bogus'. Supported: '{FILE_SEARCH_CONTENT}'.", "include"),
            id="bogus-include",
        ),
        pytest.param(
            {"tools": [{"type": "code_interpreter"}] * 21},
            400,
            _invalid(
                "Invalid 'tools': array too long. Expected an array with maximum length 20, "
                "but got an array with length 21 instead.",
                "tools",
            ),
            id="21-tools",
        ),
    ],
)
def test_bad_run_request_is_refused_and_creates_nothing(
    client: openai.OpenAI, change: dict[str, Any], status: int, error: dict[str, Any]
) -> None:
    thread_id = thread_with(client, "hello")
    options: dict[str, Any] = {"thread_id": thread_id, "assistant_id": assistant(client), **change}
    with pytest.raises(openai.APIStatusError) as refused:
        client.beta.threads.runs.create(**options)
    assert refused.value.status_code == status
    assert refused.value.body == error
    assert _runs(client, thread_id) == []
