"""Runs on their happy paths through the official client, polling, on both stores.

Every test registers its own upstream script under a fresh name and puts ``[[script:NAME]]``
in a user message, so the scripted model answers it alone and ``Scripted.bodies`` lists
exactly the chat requests the server sent for it. Streaming is in ``test_run_streams.py``.
"""

import base64
import json
from typing import Any

import openai
import pytest
from openai.types.beta import Assistant, Thread

from tests.conftest import RunningServer
from tests.support.runs import Scripted
from tests.support.runs import scripted as script
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall
from tests.support.validating_client import client as validating_client

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}


# -- helpers shared with test_run_streams.py ------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """A scripted usage, and the usage object the run and its steps must report for it."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def new_assistant(client: openai.OpenAI, **overrides: Any) -> Assistant:
    options: dict[str, Any] = {
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "tools": [WEATHER_TOOL],
        **overrides,
    }
    return client.beta.assistants.create(**options)


def user_thread(client: openai.OpenAI, scripted: Scripted, text: str = "Hello") -> Thread:
    """A thread holding one user message that selects ``scripted``."""
    return client.beta.threads.create(messages=[{"role": "user", "content": scripted.say(text)}])


def dump(value: Any) -> Any:
    """SDK models (also in a list) as their wire JSON; other values unchanged."""
    if isinstance(value, list):
        return [dump(item) for item in value]
    return value.to_dict(mode="json") if isinstance(value, openai.BaseModel) else value


# -- a plain run ------------------------------------------------------------------------------


def test_create_and_poll_completes_with_message_step_and_usage(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["Hi", " there", "!"], usage=usage(12, 3)))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)

    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    assert run.status == "completed" and run.object == "thread.run"
    assert (run.thread_id, run.assistant_id) == (thread.id, assistant.id)
    assert run.started_at is not None and run.completed_at is not None
    assert run.created_at <= run.started_at <= run.completed_at
    assert run.expires_at is None
    assert (run.failed_at, run.cancelled_at, run.last_error) == (None, None, None)
    assert (run.required_action, run.incomplete_details) == (None, None)
    assert dump(run.usage) == usage(12, 3)
    assert (run.model, run.instructions, run.tools) == ("gpt-4o", "Be brief.", assistant.tools)
    assert run.tool_choice == "auto" and run.parallel_tool_calls is True
    assert dump(run.truncation_strategy) == {"type": "auto", "last_messages": None}
    assert run.response_format == "auto"
    assert (run.temperature, run.top_p) == (1.0, 1.0)
    assert (run.max_prompt_tokens, run.max_completion_tokens, run.metadata) == (None, None, {})

    user, reply = client.beta.threads.messages.list(thread.id, order="asc").data
    assert user.run_id is None
    assert (reply.role, reply.status, reply.run_id, reply.assistant_id) == (
        "assistant", "completed", run.id, assistant.id,
    )  # fmt: skip
    assert reply.completed_at is not None and reply.incomplete_details is None
    assert [dump(part) for part in reply.content] == [
        {"type": "text", "text": {"value": "Hi there!", "annotations": []}}
    ]

    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert len(steps) == 1
    step = steps[0]
    assert (step.type, step.status, step.run_id, step.thread_id, step.assistant_id) == (
        "message_creation", "completed", run.id, thread.id, assistant.id,
    )  # fmt: skip
    assert dump(step.step_details) == {
        "type": "message_creation",
        "message_creation": {"message_id": reply.id},
    }
    assert dump(step.usage) == usage(12, 3)
    assert step.completed_at is not None and step.last_error is None
    retrieved = client.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id)
    assert retrieved == step
    assert len(scripted.bodies) == 1


def test_create_returns_queued_and_run_get_sends_poll_hint(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)

    created = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert created.status == "queued"
    assert (created.started_at, created.completed_at, created.usage) == (None, None, None)
    assert created.expires_at == created.created_at + 600

    raw = client.beta.threads.runs.with_raw_response.retrieve(created.id, thread_id=thread.id)
    assert int(raw.headers["openai-poll-after-ms"]) > 0
    assert raw.parse().id == created.id
    done = client.beta.threads.runs.poll(created.id, thread_id=thread.id)
    assert done.status == "completed"


# -- function calling -------------------------------------------------------------------------


def test_function_call_requires_action_then_completes_after_outputs(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    call = ToolCall("get_weather", {"city": "Paris"})
    scripted = script(upstream, Script(tool_calls=[call]), Script(text=["Sunny", " in Paris."]))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted, "Weather in Paris?")

    waiting = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )
    assert waiting.status == "requires_action"
    assert waiting.required_action is not None and waiting.usage is None
    assert waiting.expires_at is not None
    [pending] = waiting.required_action.submit_tool_outputs.tool_calls
    assert pending.id.startswith("call_")
    assert (pending.type, pending.function.name) == ("function", "get_weather")
    assert json.loads(pending.function.arguments) == {"city": "Paris"}
    [open_step] = client.beta.threads.runs.steps.list(waiting.id, thread_id=thread.id).data
    assert (open_step.type, open_step.status) == ("tool_calls", "in_progress")
    assert open_step.usage is None

    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=waiting.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": pending.id, "output": "22C and sunny"}],
    )

    assert run.status == "completed" and run.required_action is None
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    assert [m.content[0].text.value for m in reply] == ["Sunny in Paris."]
    message_step, tool_step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert (message_step.type, tool_step.type) == ("message_creation", "tool_calls")
    assert tool_step.status == "completed" and tool_step.completed_at is not None
    assert dump(tool_step.step_details.tool_calls) == [
        {
            "id": pending.id,
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": pending.function.arguments,
                "output": "22C and sunny",
            },
        }
    ]
    assert len(scripted.bodies) == 2


def test_parallel_tool_calls_false_is_sent_upstream(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client, tools=[WEATHER_TOOL, TIME_TOOL])
    thread = user_thread(client, scripted)

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, parallel_tool_calls=False
    )

    assert run.status == "completed" and run.parallel_tool_calls is False
    [body] = scripted.bodies
    assert body["parallel_tool_calls"] is False
    assert body["tools"] == dump(assistant.tools)


# -- POST /v1/threads/runs --------------------------------------------------------------------


def test_create_and_run_poll_makes_thread_with_messages_and_tool_resources(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["Done", "."]))
    assistant = new_assistant(client)

    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": scripted.say("Start")}]},
        tool_resources={"code_interpreter": {"file_ids": ["file-abc123"]}},
    )

    assert run.status == "completed" and run.thread_id.startswith("thread_")
    thread = client.beta.threads.retrieve(run.thread_id)
    assert thread.tool_resources is not None
    assert dump(thread.tool_resources.code_interpreter) == {"file_ids": ["file-abc123"]}
    messages = client.beta.threads.messages.list(run.thread_id, order="asc").data
    assert [(m.role, m.run_id, m.content[0].text.value) for m in messages] == [
        ("user", None, scripted.say("Start")),
        ("assistant", run.id, "Done."),
    ]


# -- what the model is sent -------------------------------------------------------------------

JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather",
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


@pytest.mark.parametrize(
    "options",
    [
        {"model": "gpt-4o-mini"},
        {"temperature": 0.3, "top_p": 0.5},
        {"response_format": {"type": "json_object"}},
        {"response_format": JSON_SCHEMA_FORMAT},
        {"tool_choice": "none"},
        {"tool_choice": "required"},
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    ],
    ids=["model", "sampling", "json-object", "json-schema", "tool-choice-none",
         "tool-choice-required", "tool-choice-named"],
)  # fmt: skip
def test_run_option_is_kept_on_the_run_and_sent_to_the_model(
    client: openai.OpenAI, upstream: ScriptedUpstream, options: dict[str, Any]
) -> None:
    """Each option shows on the run as given and reaches the chat request under the same key
    and in the same shape (Chat Completions spells all of these like the Assistants API)."""
    scripted = script(upstream, Script(text=["{}"]))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted, "Answer in JSON.")

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, **options
    )

    assert run.status == "completed"
    assert {key: dump(getattr(run, key)) for key in options} == options
    [body] = scripted.bodies
    assert {key: body.get(key) for key in options} == options


def test_assistant_instructions_become_the_system_message(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client, instructions="You are a weather bot.")
    thread = user_thread(client, scripted)

    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    [body] = scripted.bodies
    assert body["model"] == "gpt-4o"
    assert body["messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": scripted.say("Hello")},
    ]
    assert body["tools"] == dump(assistant.tools)
    # parallel calls are every upstream's default: the option is sent only to turn them off
    assert body.get("tool_choice") in (None, "auto") and "parallel_tool_calls" not in body


def test_run_instructions_replace_the_assistants(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client, instructions="You are a weather bot.")
    thread = user_thread(client, scripted)

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, instructions="Answer in French."
    )

    assert run.instructions == "Answer in French."
    [body] = scripted.bodies
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}


def test_additional_instructions_are_appended(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client, instructions="You are a weather bot.")
    thread = user_thread(client, scripted)

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, additional_instructions="Use Celsius."
    )

    assert run.instructions.startswith("You are a weather bot.")
    assert run.instructions.endswith("Use Celsius.")
    [body] = scripted.bodies
    assert body["messages"][0] == {"role": "system", "content": run.instructions}


def test_additional_messages_join_the_thread_before_the_run(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "First."}])

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_messages=[
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": scripted.say("Second.")},
        ],
    )

    messages = client.beta.threads.messages.list(thread.id, order="asc").data
    assert [(m.role, m.run_id, m.content[0].text.value) for m in messages] == [
        ("user", None, "First."),
        ("assistant", None, "Noted."),
        ("user", None, scripted.say("Second.")),
        ("assistant", run.id, "ok"),
    ]
    assert all(m.created_at <= run.created_at for m in messages[:3])
    [body] = scripted.bodies
    assert body["messages"][1:] == [
        {"role": "user", "content": "First."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": scripted.say("Second.")},
    ]


def test_image_url_parts_reach_the_model_as_image_url_parts(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["A cat."]))
    assistant = new_assistant(client)
    image = {"url": "https://example.com/cat.png", "detail": "low"}
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": scripted.say("What is this?")},
                    {"type": "image_url", "image_url": image},
                ],
            }
        ]
    )

    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    [body] = scripted.bodies
    assert body["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": scripted.say("What is this?")},
            {"type": "image_url", "image_url": image},
        ],
    }


def test_image_file_parts_reach_the_model_as_image_data(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["A dot."]))
    assistant = new_assistant(client)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    uploaded = client.files.create(file=("dot.png", png), purpose="vision")
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": scripted.say("What is this?")},
                    {
                        "type": "image_file",
                        "image_file": {"file_id": uploaded.id, "detail": "high"},
                    },
                ],
            }
        ]
    )

    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)

    [body] = scripted.bodies
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert body["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": url, "detail": "high"},
    }


def test_truncation_last_messages_sends_only_the_newest(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client)
    turns = [("user", "one"), ("assistant", "two"), ("user", "three"), ("assistant", "four")]
    thread = client.beta.threads.create(
        messages=[
            *({"role": role, "content": text} for role, text in turns),
            {"role": "user", "content": scripted.say("five")},
        ]
    )

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
    )

    assert dump(run.truncation_strategy) == {"type": "last_messages", "last_messages": 2}
    [body] = scripted.bodies
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "four"},
        {"role": "user", "content": scripted.say("five")},
    ]


# -- runs as resources ------------------------------------------------------------------------


def test_runs_list_retrieve_and_modify_metadata(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)
    runs = client.beta.threads.runs
    first = runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    second = runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, metadata={"attempt": "2"}
    )

    assert [r.id for r in runs.list(thread.id).data] == [second.id, first.id]
    assert [r.id for r in runs.list(thread.id, order="asc", limit=1).data] == [first.id]
    assert runs.retrieve(first.id, thread_id=thread.id) == first
    assert second.metadata == {"attempt": "2"}

    modified = runs.update(first.id, thread_id=thread.id, metadata={"label": "kept"})
    assert modified.metadata == {"label": "kept"} and modified.status == "completed"
    assert runs.retrieve(first.id, thread_id=thread.id).metadata == {"label": "kept"}


def test_messages_list_by_run_id_returns_that_runs_reply_only(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["first reply"]), Script(text=["second reply"]))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)
    first = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    second = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )

    for run, text in ((first, "first reply"), (second, "second reply")):
        replies = client.beta.threads.messages.list(thread.id, run_id=run.id).data
        assert [(m.role, m.run_id, m.content[0].text.value) for m in replies] == [
            ("assistant", run.id, text)
        ]


def test_run_is_invisible_through_another_threads_path(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)
    other = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]

    assert client.beta.threads.runs.list(other.id).data == []
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(run.id, thread_id=other.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.update(run.id, thread_id=other.id, metadata={"x": "y"})
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.list(run.id, thread_id=other.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.retrieve(step.id, thread_id=other.id, run_id=run.id)
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).metadata == {}


def test_another_tenants_run_is_not_found(
    client: openai.OpenAI, upstream: ScriptedUpstream, server: RunningServer
) -> None:
    scripted = script(upstream, Script(text=["ok"]))
    assistant = new_assistant(client)
    thread = user_thread(client, scripted)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]

    with validating_client(server.base_url, server.new_key()) as intruder:
        runs = intruder.beta.threads.runs
        attempts = [
            lambda: runs.retrieve(run.id, thread_id=thread.id),
            lambda: runs.list(thread.id),
            lambda: runs.update(run.id, thread_id=thread.id, metadata={"x": "y"}),
            lambda: runs.steps.list(run.id, thread_id=thread.id),
            lambda: runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id),
            lambda: intruder.beta.threads.messages.list(thread.id, run_id=run.id),
            lambda: runs.create(thread_id=thread.id, assistant_id=assistant.id),
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError):
                attempt()
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).metadata == {}
    assert [r.id for r in client.beta.threads.runs.list(thread.id)] == [run.id]


# -- the built-in local model -----------------------------------------------------------------


def test_local_model_replies_that_it_is_a_stand_in(local_client: openai.OpenAI) -> None:
    assistant = new_assistant(local_client)
    thread = local_client.beta.threads.create(messages=[{"role": "user", "content": "Hello there"}])

    run = local_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )

    assert run.status == "completed" and run.usage is not None
    [reply] = local_client.beta.threads.messages.list(thread.id, run_id=run.id).data
    text = reply.content[0].text.value
    assert "stand-in" in text and "Hello there" in text


def test_local_model_calls_the_function_a_message_names(local_client: openai.OpenAI) -> None:
    assistant = new_assistant(local_client)
    thread = local_client.beta.threads.create(
        messages=[{"role": "user", "content": 'Please call get_weather with {"city": "Oslo"}'}]
    )

    waiting = local_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )

    assert waiting.status == "requires_action" and waiting.required_action is not None
    [call] = waiting.required_action.submit_tool_outputs.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    run = local_client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=waiting.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "-3C, snow"}],
    )
    assert run.status == "completed"
    [reply] = local_client.beta.threads.messages.list(thread.id, run_id=run.id).data
    assert "-3C, snow" in reply.content[0].text.value
