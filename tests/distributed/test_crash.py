"""``kill -9`` of the worker executing a streamed run: the run resumes on the other worker once
the lease lapses, and nobody can tell from the result (or the client's stream) that it did.

Each scenario runs once (a module fixture) and the tests check its observations: a reply of
60 text chunks 0.05 s apart, killed after 15 chunks reached the client, compared with the same
reply run without a crash; and a function call whose arguments stream in 40 fragments.
Last, a worker that stalls (SIGSTOP) past its lease and then wakes up must not write again."""

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.distributed.conftest import Cluster
from tests.distributed.helpers import (
    WEATHER_TOOL,
    LeaseSampler,
    LiveStream,
    Scripted,
    Sql,
    SqlWatch,
    check_event_log,
    eventually,
    new_thread,
    run_records,
    scripted,
    slow_text,
    stream_run,
)
from tests.support.processes import WorkerProcess
from tests.support.upstream_script import Script, ToolCall

REPLY = slow_text(60, 0.05)
ARGUMENTS = {"city": "Reykjavik", "detail": "hourly forecast with wind, rain and visibility"}
CALL = Script(tool_calls=[ToolCall("get_weather", ARGUMENTS, fragments=40)], chunk_delay=0.05)
ARGUMENTS_JSON = CALL.tool_calls[0].arguments_json()


@dataclass
class Crash:
    """What one crashed run looked like, from the client, the API and the database."""

    script: Scripted
    thread_id: str
    stream: LiveStream
    killed: WorkerProcess
    survivor: WorkerProcess
    owners: list[str]  # the run's lease owners, in the order they were seen
    records: dict[str, Any]
    events: list[tuple[int, str]]
    reference: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return self.stream.run_id


def crash(cluster: Cluster, script: Scripted, assistant_id: str, delta: str) -> Crash:
    """Stream a run through API A, ``kill -9`` its worker once 15 ``delta`` events reached the
    client, and follow the run to its end."""
    a, b = cluster.client(cluster.a), cluster.client(cluster.b)
    thread_id = a.beta.threads.create(messages=[{"role": "user", "content": script.say()}]).id
    stream = stream_run(cluster.a, thread_id, assistant_id)
    try:
        with LeaseSampler(cluster.sql) as sampler:
            stream.wait_count(delta, 15, 10)
            killed = cluster.holder(stream.run_id)
            (survivor,) = [w for w in cluster.workers if w is not killed]
            killed.kill()
            stream.join(20)
    finally:
        stream.close()
    assert sampler.error is None, sampler.error
    return Crash(
        script=script,
        thread_id=thread_id,
        stream=stream,
        killed=killed,
        survivor=survivor,
        owners=sampler.owners.get(stream.run_id, []),
        records=run_records(b, thread_id, stream.run_id),
        events=cluster.sql.events(stream.run_id),
    )


@pytest.fixture(scope="module")
def message_crash(cluster: Cluster) -> Iterator[Crash]:
    cluster.ensure_workers()
    a, b = cluster.client(cluster.a), cluster.client(cluster.b)
    # The reference: the same reply (its own script name, so requests are told apart), no crash.
    reference_script = scripted(cluster.upstream, REPLY)
    assistant_id, reference_thread = new_thread(a, reference_script)
    reference = stream_run(cluster.a, reference_thread, assistant_id)
    try:
        reference.join(15)
    finally:
        reference.close()
    assert reference.ended_with("thread.run.completed"), reference.names[-4:]

    script = scripted(cluster.upstream, REPLY)
    crashed = crash(cluster, script, assistant_id, "thread.message.delta")
    crashed.reference = run_records(b, reference_thread, reference.run_id)
    yield crashed


@pytest.fixture(scope="module")
def call_crash(cluster: Cluster) -> Iterator[Crash]:
    cluster.ensure_workers()
    # The call twice (the original request and the resumed one), then the reply to its output.
    script = scripted(cluster.upstream, CALL, CALL, Script(text=["Windy ", "in Reykjavik."]))
    a = cluster.client(cluster.a)
    assistant_id = a.beta.assistants.create(model="scripted-model", tools=[WEATHER_TOOL]).id
    yield crash(cluster, script, assistant_id, "thread.run.step.delta")


# -- a message being streamed --------------------------------------------------------------------


def test_the_run_completes_on_the_other_worker(message_crash: Crash) -> None:
    assert message_crash.records["status"] == "completed"
    assert message_crash.owners == [message_crash.killed.owner, message_crash.survivor.owner]
    assert message_crash.killed.returncode == -9


def test_the_clients_stream_continues_without_duplicated_text(message_crash: Crash) -> None:
    stream = message_crash.stream
    assert stream.ended_with("thread.run.completed"), stream.names[-4:]
    (message,) = message_crash.records["messages"]
    assert message == ("assistant", "completed", ["".join(REPLY.text)])
    assert stream.text == "".join(REPLY.text)
    # Every delta, before and after the crash, belongs to the one message.
    message_id = stream.last("thread.message.completed")["id"]
    assert {e.data["id"] for e in stream.events if e.event == "thread.message.delta"} == {
        message_id
    }
    # The client saw the run's log exactly: every event once, in order, none missing.
    assert stream.names == [name for _, name in message_crash.events] + ["done"]


def test_it_records_what_a_run_without_a_crash_records(message_crash: Crash) -> None:
    assert message_crash.records == message_crash.reference
    assert message_crash.records["steps"] == [("message_creation", "completed")]


def test_the_event_log_has_one_completion(message_crash: Crash) -> None:
    check_event_log(message_crash.events, "completed")


def test_the_resumed_model_request_repeats_the_original(message_crash: Crash) -> None:
    """Regenerating the open message only reproduces it if the model is asked the same thing:
    the partial text the dead worker recorded must not be sent as an assistant turn."""
    original, resumed = (r.body["messages"] for r in message_crash.script.requests)
    assert resumed == original


# -- a function call's arguments being streamed ----------------------------------------------


def test_the_call_reaches_requires_action_with_complete_arguments(call_crash: Crash) -> None:
    assert call_crash.owners == [call_crash.killed.owner, call_crash.survivor.owner]
    assert call_crash.records["status"] == "requires_action"
    assert call_crash.records["steps"] == [("tool_calls", "in_progress")]
    stream = call_crash.stream
    assert stream.ended_with("thread.run.requires_action"), stream.names[-4:]
    run = stream.last("thread.run.requires_action")
    (call,) = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": ARGUMENTS_JSON}
    # The client assembled the same arguments from its fragments, for the same call id.
    assert stream.arguments == {0: ARGUMENTS_JSON}
    first = stream.first("thread.run.step.delta")["delta"]["step_details"]["tool_calls"][0]
    assert first["id"] == call["id"]
    assert stream.names == [name for _, name in call_crash.events] + ["done"]
    check_event_log(call_crash.events, "requires_action")


def test_the_call_step_holds_exactly_one_call(call_crash: Crash, cluster: Cluster) -> None:
    b = cluster.client(cluster.b)
    (step,) = b.beta.threads.runs.steps.list(call_crash.run_id, thread_id=call_crash.thread_id).data
    calls = step.to_dict(mode="json")["step_details"]["tool_calls"]
    assert [(c["type"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("function", "get_weather", ARGUMENTS_JSON)
    ]


def test_the_resumed_call_request_repeats_the_original(call_crash: Crash) -> None:
    """The half-streamed call must not be sent back to the model as a finished call with an
    empty output."""
    original, resumed = (r.body["messages"] for r in call_crash.script.requests[:2])
    assert resumed == original


def test_the_call_run_completes_after_its_output(call_crash: Crash, cluster: Cluster) -> None:
    cluster.ensure_workers()
    b = cluster.client(cluster.b)
    run = b.beta.threads.runs.retrieve(call_crash.run_id, thread_id=call_crash.thread_id)
    assert run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    run = b.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=call_crash.thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": "45 km/h"}],
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    records = run_records(b, call_crash.thread_id, run.id)
    assert records["steps"] == [("tool_calls", "completed"), ("message_creation", "completed")]
    assert records["messages"] == [("assistant", "completed", ["Windy in Reykjavik."])]
    check_event_log(cluster.sql.events(run.id), "requires_action", "completed")


# -- a worker that stalls past its lease -------------------------------------------------------


def test_a_stalled_worker_loses_the_run_and_writes_nothing_more(
    running: Cluster, streams: list
) -> None:
    reply = slow_text(40, 0.05)
    a, b = running.client(running.a), running.client(running.b)
    assistant_id, thread_id = new_thread(a, scripted(running.upstream, reply))
    stream = stream_run(running.a, thread_id, assistant_id, streams)
    with LeaseSampler(running.sql) as sampler:
        stream.wait_count("thread.message.delta", 10, 10)
        run_id = stream.run_id
        stalled = running.holder(run_id)
        (other,) = [w for w in running.workers if w is not stalled]
        stalled.pause()  # like a long GC pause or a frozen VM: it still believes it holds the run
        try:
            eventually(
                lambda: running.sql.lease_owner(run_id) == other.owner, 5, "the run taken over"
            )
            seen = stream.names.count("thread.message.delta")
            stream.wait_count("thread.message.delta", seen + 5, 10)
        finally:
            stalled.resume()  # it wakes up mid-run, with model output buffered for it
        stream.join(20)
    assert sampler.owners[run_id] == [stalled.owner, other.owner]
    assert stream.ended_with("thread.run.completed"), stream.names[-4:]
    assert stream.text == "".join(reply.text)
    events = running.sql.events(run_id)
    assert stream.names == [name for _, name in events] + ["done"]
    check_event_log(events, "completed")
    records = run_records(b, thread_id, run_id)
    assert records["messages"] == [("assistant", "completed", ["".join(reply.text)])]
    assert stalled.alive
    eventually(lambda: "abandoning" in stalled.log(), 5, "the stalled worker noticing")


# -- the log's high-water mark -----------------------------------------------------------------


class SeqWatch(SqlWatch):
    """Checks, every 2 ms, that each running run's ``last_seq`` equals the newest seq in its
    persisted log (one statement: one snapshot). On the first mismatch it ``kill -9``s
    ``worker``: a crash at that moment makes the next holder start from that ``last_seq``."""

    QUERY = (
        "SELECT id, last_seq, (SELECT max(seq) FROM run_events e WHERE e.run_id = r.id) "
        "FROM runs r WHERE status = 'in_progress'"
    )

    def __init__(self, sql: Sql, worker: WorkerProcess) -> None:
        super().__init__(sql, 0.002)
        self.worker = worker
        self.mismatches: list[tuple[str, int, int]] = []

    def sample(self, conn: psycopg.Connection) -> bool:
        for run_id, last_seq, newest in conn.execute(self.QUERY).fetchall():
            if newest is not None and last_seq != newest:
                self.worker.signal(signal.SIGKILL)
                self.mismatches.append((run_id, last_seq, newest))
                return False
        return True


def test_last_seq_never_falls_behind_the_log(running: Cluster, streams: list) -> None:
    """``runs.last_seq`` is where a resumed run continues its log, so it must never be behind
    what is persisted, not even for a moment. A worker renewing its lease every 0.1 s while
    it flushes deltas every 0.02 s gives any race between the two many chances; if the
    watcher sees ``last_seq`` behind, it kills the worker right then, and the run must still
    resume cleanly (else the resumed worker writes seqs that exist already)."""
    eager = running.add_worker(RUNSTEP_LEASE_SECONDS="0.3", RUNSTEP_DELTA_FLUSH_SECONDS="0.02")
    others = [w for w in running.workers if w is not eager]
    reply = slow_text(80, 0.03)
    a = running.client(running.a)
    assistant_id, thread_id = new_thread(a, scripted(running.upstream, reply))
    for worker in others:
        worker.pause()
    try:
        with SeqWatch(running.sql, eager) as watch:
            stream = stream_run(running.a, thread_id, assistant_id, streams)
            stream.wait_count("thread.run.in_progress", 1, 10)
            assert running.holder(stream.run_id) is eager
            eventually(lambda: watch.mismatches or stream.finished, 10, "a mismatch or the end")
    finally:
        for worker in others:
            worker.resume()
    run_id = stream.run_id
    try:
        assert watch.error is None, watch.error
        stream.join(6)
        assert stream.ended_with("thread.run.completed"), stream.names[-4:]
        assert stream.text == "".join(reply.text)
        check_event_log(running.sql.events(run_id), "completed")
        behind = watch.mismatches  # (run id, last_seq, newest seq in the log)
        assert not behind, f"runs.last_seq behind the persisted log: {behind}"
    finally:
        running.retire(eager)
        unstick(running, run_id)


def test_a_run_that_keeps_losing_its_worker_fails(running: Cluster, streams: list[Any]) -> None:
    """The worker executing the run is killed mid-stream twice in a row: the next worker to
    claim it (past ``RUNSTEP_RUN_MAX_CLAIMS``, 2 here) fails it, saying why, instead of
    retrying a run that may crash every worker until it expires."""
    a = running.client(running.a)
    assistant_id, thread_id = new_thread(a, scripted(running.upstream, slow_text(400, 0.05)))
    stream = stream_run(running.a, thread_id, assistant_id, streams)
    for _ in range(2):
        seen = stream.names.count("thread.message.delta") + 5
        stream.wait_count("thread.message.delta", seen, 20)  # a live worker is streaming it
        holder = running.holder(stream.run_id)
        assert holder.alive
        holder.kill()
        running.ensure_workers()
    stream.join(20)
    assert stream.ended_with("thread.run.failed"), stream.names[-4:]
    run = a.beta.threads.runs.retrieve(stream.run_id, thread_id=thread_id)
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "server_error"
    assert "interrupted 2 times in a row" in run.last_error.message
    (message,) = a.beta.threads.messages.list(thread_id, run_id=run.id).data
    assert message.status == "incomplete"  # what was streamed before the crashes stays
    check_event_log(running.sql.events(run.id), "failed")
    assert running.sql.value("SELECT claims FROM runs WHERE id = %s", run.id) == 0
    assert running.sql.lease_owner(run.id) is None


def unstick(cluster: Cluster, run_id: str) -> None:
    """Teardown for a run left stuck behind a stale ``last_seq`` (every resumption fails on a
    duplicate seq and keeps its lease until it lapses): end it in the database, unleased, so
    that later tests find no run in progress. Any attempt still running is fenced out."""
    if cluster.sql.status(run_id) in ("completed", "cancelled", "failed"):
        return
    cluster.sql.execute(
        "UPDATE runs SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, "
        "data = jsonb_set(data::jsonb, '{status}', '\"failed\"')::json WHERE id = %s",
        run_id,
    )
