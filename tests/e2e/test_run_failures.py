"""Runs that end cancelled, expired or failed, through the official client, with the exact
run, steps, messages and event stream (``incomplete`` runs: test_run_limits)."""

import time
from collections.abc import Iterator

import openai
import pytest
from openai.types.beta.threads import Run

from tests.conftest import BACKENDS, RunningServer
from tests.support.runs import (
    MESSAGE_OPENED,
    MESSAGE_STAMPS,
    RUN_STAMPS,
    STARTED,
    STEP_STAMPS,
    WEATHER,
    Scripted,
    ServerSpec,
    StreamLog,
    assert_stamps,
    assistant,
    data_of,
    messages_of,
    names,
    own_servers,
    recording_client,
    scripted,
    steps_of,
    streamed_text,
    thread_with,
    upstream_prompt_tokens,
    usage,
    wait_for_run,
    without_deltas,
)
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.upstream_script import Script, ToolCall
from tests.support.validating_client import client as validating_client

CITY = ToolCall("get_weather", {"city": "Paris"})  # three argument fragments: 3 tokens


@pytest.fixture
def recorded(server: RunningServer, api_key: str) -> Iterator[tuple[openai.OpenAI, StreamLog]]:
    """The official client as a fresh tenant, recording every event stream it reads."""
    client, log = recording_client(server.base_url, api_key)
    with client:
        yield client, log


def _waiting_for_weather(client: openai.OpenAI, upstream: ScriptedUpstream) -> tuple[Run, Scripted]:
    """A run that asked for one get_weather call and waits for its output."""
    script = scripted(upstream, Script(tool_calls=[CITY]))
    thread_id = thread_with(client, f"weather? {script.marker}")
    run = client.beta.threads.runs.create(
        thread_id, assistant_id=assistant(client, tools=[WEATHER])
    )
    waiting = wait_for_run(client, thread_id, run.id)
    assert waiting.status == "requires_action" and waiting.required_action is not None
    return waiting, script


# --- cancelled --------------------------------------------------------------------------------


@pytest.fixture(scope="session")  # not "module": tests run grouped by store, across modules
def servers(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
) -> Iterator[dict[str, RunningServer]]:
    """Per store: an idle server (takes runs, never executes them, so they stay queued), and
    an expiring one (runs expire 3 s after creation, swept every half second)."""
    expiry = {"RUNSTEP_RUN_EXPIRY_SECONDS": "3", "RUNSTEP_SWEEP_SECONDS": "0.5"}
    specs = {
        **{f"idle-{b}": ServerSpec(b, args=("--no-worker",)) for b in BACKENDS},
        **{f"expiring-{b}": ServerSpec(b, env=expiry) for b in BACKENDS},
    }
    with own_servers(specs, request, tmp_path_factory, upstream) as started:
        yield started


@pytest.fixture(params=BACKENDS)
def idle_server(request: pytest.FixtureRequest, servers: dict[str, RunningServer]) -> RunningServer:
    return servers[f"idle-{request.param}"]


@pytest.fixture(params=BACKENDS)
def expiring_server(
    request: pytest.FixtureRequest, servers: dict[str, RunningServer]
) -> RunningServer:
    return servers[f"expiring-{request.param}"]


def test_cancelling_a_queued_run_answers_cancelling_and_ends_cancelled_without_steps(
    idle_server: RunningServer,
) -> None:
    with validating_client(idle_server.base_url, idle_server.new_key()) as client:
        thread_id = thread_with(client, "hello")
        run = client.beta.threads.runs.create(thread_id, assistant_id=assistant(client))
        assert run.status == "queued"

        answer = client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
        assert (answer.id, answer.status) == (run.id, "cancelling")

        cancelled = client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
        assert cancelled.status == "cancelled"
        assert_stamps(cancelled, RUN_STAMPS, "cancelled_at")
        assert cancelled.expires_at is None
        assert cancelled.last_error is None and cancelled.incomplete_details is None
        assert cancelled.required_action is None
        assert cancelled.usage is not None and cancelled.usage.model_dump() == usage(0, 0)
        assert steps_of(client, cancelled) == []
        assert messages_of(client, cancelled) == []


def test_cancel_mid_stream_closes_message_step_and_run_and_abandons_the_model(
    recorded: tuple[openai.OpenAI, StreamLog], upstream: ScriptedUpstream
) -> None:
    client, log = recorded
    script = scripted(upstream, Script(text=[f"w{i} " for i in range(200)], chunk_delay=0.05))
    thread_id = thread_with(client, f"talk for ten seconds {script.marker}")
    run_id, deltas, cancelled_at = "", 0, 0.0
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant(client)
    ) as stream:
        for event in stream:
            if event.event == "thread.run.created":
                run_id = event.data.id
            elif event.event == "thread.message.delta":
                deltas += 1
                if deltas == 3:
                    cancelled_at = time.monotonic()
                    answer = client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
                    assert answer.status == "cancelling"
    assert cancelled_at, "the stream ended before its third message delta"
    assert time.monotonic() - cancelled_at < 2.0, "the run outlived its cancel by 2 s"

    frames = log.last()
    assert without_deltas(frames) == [
        *STARTED,
        *MESSAGE_OPENED,
        "thread.run.cancelling",
        "thread.message.incomplete",
        "thread.run.step.cancelled",
        "thread.run.cancelled",
        "done",
    ]
    text = streamed_text(frames)
    assert 3 <= names(frames).count("thread.message.delta") < 100

    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)  # no polling needed
    assert run.to_dict() == data_of(frames, "thread.run.cancelled")
    assert run.status == "cancelled"
    assert_stamps(run, RUN_STAMPS, "started_at", "cancelled_at")
    assert run.expires_at is None and run.last_error is None and run.incomplete_details is None
    assert run.usage is not None and run.usage.model_dump() == usage(0, 0)

    [step] = steps_of(client, run)
    assert (step.type, step.status) == ("message_creation", "cancelled")
    assert step.usage is None and step.last_error is None
    assert_stamps(step, STEP_STAMPS, "cancelled_at")
    [message] = messages_of(client, run)
    assert step.step_details.message_creation.message_id == message.id  # type: ignore[union-attr]
    assert message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "run_cancelled"
    assert_stamps(message, MESSAGE_STAMPS, "incomplete_at")
    assert message.content[0].text.value == text  # type: ignore[union-attr]
    assert step.to_dict() == data_of(frames, "thread.run.step.cancelled")
    assert message.to_dict() == data_of(frames, "thread.message.incomplete")
    assert len(script.requests) == 1


def test_cancel_while_waiting_for_tool_outputs_cancels_the_tool_calls_step(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    waiting, script = _waiting_for_weather(client, upstream)
    assert waiting.required_action is not None
    [call] = waiting.required_action.submit_tool_outputs.tool_calls

    answer = client.beta.threads.runs.cancel(waiting.id, thread_id=waiting.thread_id)
    assert answer.status == "cancelling"

    run = client.beta.threads.runs.retrieve(waiting.id, thread_id=waiting.thread_id)
    assert run.status == "cancelled" and run.required_action is None
    assert_stamps(run, RUN_STAMPS, "started_at", "cancelled_at")
    assert run.expires_at is None and run.last_error is None
    [request] = script.requests
    assert run.usage is not None
    assert run.usage.model_dump() == usage(upstream_prompt_tokens(request), 3)
    [step] = steps_of(client, run)
    assert (step.type, step.status) == ("tool_calls", "cancelled")
    assert step.usage is None and step.last_error is None
    assert_stamps(step, STEP_STAMPS, "cancelled_at")
    [recorded_call] = step.step_details.tool_calls  # type: ignore[union-attr]
    assert recorded_call.id == call.id
    assert recorded_call.function.output is None  # type: ignore[union-attr]
    assert recorded_call.function.arguments == '{"city":"Paris"}'  # type: ignore[union-attr]
    assert messages_of(client, run) == []


# --- expired ----------------------------------------------------------------------------------


def test_run_left_waiting_for_tool_outputs_expires_without_anyone_polling(
    expiring_server: RunningServer, upstream: ScriptedUpstream
) -> None:
    with validating_client(expiring_server.base_url, expiring_server.new_key()) as client:
        waiting, script = _waiting_for_weather(client, upstream)
        assert waiting.expires_at == waiting.created_at + 3
        [call] = waiting.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
        time.sleep(max(waiting.expires_at + 1 - time.time(), 0))  # swept by then

        run = client.beta.threads.runs.retrieve(waiting.id, thread_id=waiting.thread_id)
        assert run.status == "expired" and run.required_action is None
        assert_stamps(run, RUN_STAMPS, "started_at")
        assert run.expires_at == waiting.expires_at
        assert run.last_error is None and run.incomplete_details is None
        [request] = script.requests
        assert run.usage is not None
        assert run.usage.model_dump() == usage(upstream_prompt_tokens(request), 3)
        [step] = steps_of(client, run)
        assert (step.type, step.status) == ("tool_calls", "expired")
        assert step.usage is None and step.last_error is None
        assert_stamps(step, STEP_STAMPS, "expired_at")
        assert step.step_details.tool_calls[0].function.output is None  # type: ignore[union-attr]

        with pytest.raises(openai.BadRequestError) as refused:
            client.beta.threads.runs.submit_tool_outputs(
                run.id,
                thread_id=run.thread_id,
                tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}],
            )
        assert refused.value.body == {
            "message": 'Runs in status "expired" do not accept tool outputs.',
            "type": "invalid_request_error",
            "param": "tool_outputs",
            "code": None,
        }
        assert client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id) == run


# --- failed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "code", "message", "attempts"),
    [
        pytest.param(
            Script(status=429, retry_after=0.1),
            "rate_limit_exceeded",
            "The upstream model is rate limited: "
            "Rate limit reached for requests. Please try again later.",
            2,
            id="rate-limited-twice",
        ),
        pytest.param(
            Script(status=500, retry_after=0.1),
            "server_error",
            "The upstream model failed (HTTP 500): "
            "The server had an error while processing your request. Sorry about that!",
            2,
            id="server-error-twice",
        ),
        pytest.param(
            Script(initial_delay=5),
            "server_error",
            "The upstream model did not answer in time.",
            2,
            id="timed-out-twice",
        ),
        pytest.param(
            Script(status=400),
            "invalid_prompt",
            "The upstream model refused the request: "
            "We could not parse the JSON body of your request.",
            1,
            id="bad-request",
        ),
    ],
)
def test_upstream_failure_before_any_output_fails_the_run_and_the_server_goes_on(
    recorded: tuple[openai.OpenAI, StreamLog],
    upstream: ScriptedUpstream,
    failure: Script,
    code: str,
    message: str,
    attempts: int,
    server: RunningServer,
) -> None:
    if failure.initial_delay and server.backend != "sqlite":
        pytest.skip("4 s of timeouts on one store suffice: the store plays no part in them")
    client, log = recorded
    script = scripted(upstream, failure)
    assistant_id = assistant(client)
    thread_id = thread_with(client, f"hi {script.marker}")
    with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        stream.until_done()
    frames = log.last()
    assert names(frames) == [*STARTED, "thread.run.failed", "done"]

    run = client.beta.threads.runs.retrieve(frames[0].json()["id"], thread_id=thread_id)
    assert run.to_dict() == frames[-2].json()  # what the stream ended with is stored
    assert run.status == "failed"
    assert run.last_error is not None
    assert (run.last_error.code, run.last_error.message) == (code, message)
    assert_stamps(run, RUN_STAMPS, "started_at", "failed_at")
    assert run.expires_at is None and run.incomplete_details is None
    assert run.usage is not None and run.usage.model_dump() == usage(0, 0)
    assert steps_of(client, run) == [] and messages_of(client, run) == []
    assert len(script.requests) == attempts

    fine = scripted(upstream, Script(text=["All ", "good."]))
    client.beta.threads.messages.create(thread_id, role="user", content=f"again {fine.marker}")
    again = client.beta.threads.runs.create(thread_id, assistant_id=assistant_id)
    assert wait_for_run(client, thread_id, again.id).status == "completed"
    [answer] = messages_of(client, again)
    assert answer.content[0].text.value == "All good."  # type: ignore[union-attr]


def test_failure_on_the_turn_after_tool_outputs_fails_the_run_and_keeps_the_tool_step(
    recorded: tuple[openai.OpenAI, StreamLog], upstream: ScriptedUpstream
) -> None:
    client, log = recorded
    script = scripted(upstream, Script(tool_calls=[CITY]), Script(status=400))
    thread_id = thread_with(client, f"weather? {script.marker}")
    run = client.beta.threads.runs.create(
        thread_id, assistant_id=assistant(client, tools=[WEATHER])
    )
    waiting = wait_for_run(client, thread_id, run.id)
    assert waiting.required_action is not None
    [call] = waiting.required_action.submit_tool_outputs.tool_calls
    with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "9C"}]
    ) as stream:
        stream.until_done()
    frames = log.last()
    assert names(frames) == [
        "thread.run.step.completed",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.failed",
        "done",
    ]

    failed = client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    assert failed.to_dict() == frames[-2].json()
    assert failed.status == "failed" and failed.last_error is not None
    assert failed.last_error.code == "invalid_prompt"
    assert_stamps(failed, RUN_STAMPS, "started_at", "failed_at")
    first, second = script.requests
    assert failed.usage is not None
    assert failed.usage.model_dump() == usage(upstream_prompt_tokens(first), 3)
    [step] = steps_of(client, failed)
    assert step.to_dict() == data_of(frames, "thread.run.step.completed")
    assert (step.type, step.status, step.last_error) == ("tool_calls", "completed", None)
    assert step.usage is not None
    assert step.usage.model_dump() == usage(upstream_prompt_tokens(first), 3)
    assert step.step_details.tool_calls[0].function.output == "9C"  # type: ignore[union-attr]
    assert second.body["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "9C"}


def test_model_stream_cut_mid_message_fails_run_step_and_message(
    recorded: tuple[openai.OpenAI, StreamLog], upstream: ScriptedUpstream
) -> None:
    client, log = recorded
    # The role chunk and two text chunks arrive, then the connection drops.
    script = scripted(upstream, Script(text=["Hel", "lo", " wor", "ld"], abort_after=3))
    thread_id = thread_with(client, f"hi {script.marker}")
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant(client)
    ) as stream:
        stream.until_done()
    frames = log.last()
    assert without_deltas(frames) == [
        *STARTED,
        *MESSAGE_OPENED,
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
        "done",
    ]
    assert streamed_text(frames) == "Hello"

    run = client.beta.threads.runs.retrieve(frames[0].json()["id"], thread_id=thread_id)
    assert run.to_dict() == frames[-2].json()
    error = {"code": "server_error", "message": "The connection to the upstream model failed."}
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.model_dump() == error
    assert_stamps(run, RUN_STAMPS, "started_at", "failed_at")
    assert run.usage is not None and run.usage.model_dump() == usage(0, 0)
    [step] = steps_of(client, run)
    assert (step.type, step.status, step.usage) == ("message_creation", "failed", None)
    assert step.last_error is not None and step.last_error.model_dump() == error
    assert_stamps(step, STEP_STAMPS, "failed_at")
    [message] = messages_of(client, run)
    assert message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "run_failed"
    assert_stamps(message, MESSAGE_STAMPS, "incomplete_at")
    assert message.content[0].text.value == "Hello"  # type: ignore[union-attr]
    assert step.to_dict() == data_of(frames, "thread.run.step.failed")
    assert message.to_dict() == data_of(frames, "thread.message.incomplete")
    assert len(script.requests) == 1
