"""Any API process serves any run: created and streamed through API A, read, submitted to and
cancelled through API B, executed by whichever of two worker processes claims it."""

import time

from tests.distributed.conftest import Cluster
from tests.distributed.helpers import (
    WEATHER_TOOL,
    LiveStream,
    check_event_log,
    eventually,
    new_thread,
    scripted,
    slow_text,
    stream_run,
)
from tests.support.upstream_script import Script, ToolCall


def test_run_streamed_through_a_is_read_through_b_at_once(running: Cluster, streams: list) -> None:
    reply = slow_text(30, 0.05)
    expected = "".join(reply.text)
    script = scripted(running.upstream, reply)
    a, b = running.client(running.a), running.client(running.b)
    assistant_id, thread_id = new_thread(a, script)

    stream = stream_run(running.a, thread_id, assistant_id, streams)
    stream.wait_count("thread.run.created", 1, 5)
    run_id = stream.run_id
    # B knows the run as soon as A has announced it.
    assert b.beta.threads.runs.retrieve(run_id, thread_id=thread_id).status in (
        "queued",
        "in_progress",
    )

    # While A streams, B shows the run in progress and the message growing.
    stream.wait_count("thread.message.delta", 5, 10)
    assert b.beta.threads.runs.retrieve(run_id, thread_id=thread_id).status == "in_progress"
    steps = b.beta.threads.runs.steps.list(run_id, thread_id=thread_id).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "in_progress")]
    (message,) = b.beta.threads.messages.list(thread_id, run_id=run_id).data
    assert message.status == "in_progress"
    partial = message.content[0].text.value if message.content else ""
    assert expected.startswith(partial) and len(partial) < len(expected), partial

    stream.join(15)
    assert stream.ended_with("thread.run.completed"), stream.names[-4:]
    assert stream.text == expected
    # Read through B right after A's stream ended: no polling needed, the status is durable.
    run = b.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    assert run.status == "completed"
    assert run.model_dump(mode="json") == stream.last("thread.run.completed")
    (message,) = b.beta.threads.messages.list(thread_id, run_id=run_id).data
    assert (message.status, message.content[0].text.value) == ("completed", expected)
    check_event_log(running.sql.events(run_id), "completed")
    assert len(script.requests) == 1


def test_submit_tool_outputs_through_b_for_a_run_streamed_through_a(
    running: Cluster, streams: list
) -> None:
    script = scripted(
        running.upstream,
        Script(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, fragments=4)]),
        Script(text=["It is ", "18C ", "in Paris."], chunk_delay=0.02),
    )
    a, b = running.client(running.a), running.client(running.b)
    assistant_id, thread_id = new_thread(a, script, tools=[WEATHER_TOOL])

    first = stream_run(running.a, thread_id, assistant_id, streams).join(15)
    assert first.ended_with("thread.run.requires_action"), first.names[-4:]
    run_id = first.run_id
    run = b.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    assert run.status == "requires_action" and run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Paris"}')
    assert first.arguments == {0: '{"city":"Paris"}'}

    second = LiveStream(
        running.b.url,
        f"/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": call.id, "output": "18C"}], "stream": True},
    )
    streams.append(second)
    second.start().join(15)
    assert second.names[:2] == ["thread.run.step.completed", "thread.run.queued"], second.names
    assert second.ended_with("thread.run.completed"), second.names[-4:]
    assert second.text == "It is 18C in Paris."

    assert a.beta.threads.runs.retrieve(run_id, thread_id=thread_id).status == "completed"
    steps = a.beta.threads.runs.steps.list(run_id, thread_id=thread_id, order="asc").data
    assert [(s.type, s.status) for s in steps] == [
        ("tool_calls", "completed"),
        ("message_creation", "completed"),
    ]
    assert steps[0].step_details.tool_calls[0].function.output == "18C"  # type: ignore[union-attr]
    tool_turns = [m for m in script.requests[1].body["messages"] if m["role"] == "tool"]
    assert tool_turns == [{"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    check_event_log(running.sql.events(run_id), "requires_action", "completed")


def test_cancel_through_b_stops_the_worker_streaming_through_a(
    running: Cluster, streams: list
) -> None:
    script = scripted(running.upstream, slow_text(60, 0.05))
    a, b = running.client(running.a), running.client(running.b)
    assistant_id, thread_id = new_thread(a, script)

    stream = stream_run(running.a, thread_id, assistant_id, streams)
    stream.wait_count("thread.message.delta", 5, 10)
    run_id = stream.run_id
    holder = running.holder(run_id)

    asked = time.monotonic()
    cancelled = b.beta.threads.runs.cancel(run_id, thread_id=thread_id)
    assert cancelled.status == "cancelling"
    stream.join(10)
    took = stream.first_at("thread.run.cancelled") - asked
    assert stream.ended_with("thread.run.cancelled"), stream.names[-4:]
    assert took < 2.0, f"cancelled {took:.2f}s after the cancel request"
    names = stream.names
    assert names.index("thread.run.cancelling") < names.index("thread.run.cancelled")
    assert "thread.run.completed" not in names

    run = b.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    assert run.status == "cancelled" and run.cancelled_at is not None
    steps = b.beta.threads.runs.steps.list(run_id, thread_id=thread_id).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "cancelled")]
    (message,) = b.beta.threads.messages.list(thread_id, run_id=run_id).data
    assert message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "run_cancelled"
    # What the client saw is what was recorded, and the model was not asked again.
    assert message.content[0].text.value == stream.text
    assert len(stream.text) < len("".join(f"w{i:02d} " for i in range(60)))
    assert len(script.requests) == 1

    # The worker let go of the run and writes nothing more for it, and it is still serving.
    eventually(lambda: running.sql.lease_owner(run_id) is None, 2, "the lease released")
    logged = running.sql.events(run_id)
    check_event_log(logged, "cancelled")
    time.sleep(0.3)
    assert running.sql.events(run_id) == logged
    assert holder.alive
