"""Operations: ``/metrics`` of an API process, per-key request limits, the bound on open
streams, and compaction of finished runs' delta events.

The limits and compaction run on their own ``runstep serve`` (with its in-process worker) on a
fresh database, in open mode: every bearer token from loopback is accepted, in one project,
and each token has its own request budget (so each request here can use a fresh one)."""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.distributed.conftest import TIMINGS, Cluster, cluster_env, fresh_postgres
from tests.distributed.helpers import (
    HEADERS,
    LiveStream,
    Sql,
    eventually,
    new_thread,
    scripted,
    slow_text,
    stream_run,
)
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.server import ServerProcess
from tests.support.validating_client import validate_body

DELTAS = ("thread.message.delta", "thread.run.step.delta")
LIMITED = {
    "RUNSTEP_REQUESTS_PER_MINUTE": "5",
    "RUNSTEP_MAX_STREAMS": "1",
    "RUNSTEP_EVENT_RETENTION_SECONDS": "1",
    "RUNSTEP_SWEEP_SECONDS": "0.3",
}


def metrics(api: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, labels): value}."""
    response = httpx.get(f"{api.url}/metrics", timeout=5)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def gauge(values: dict, name: str, **labels: str) -> float:
    return values[(name, tuple(sorted(labels.items())))]


def test_metrics_of_an_api_process(running: Cluster, streams: list) -> None:
    a = running.client(running.a)
    before = metrics(running.a)
    for status in ("queued", "in_progress", "requires_action", "completed", "cancelled"):
        assert ("runstep_runs", (("status", status),)) in before
    assert gauge(before, "runstep_oldest_lease_seconds") == 0  # nothing running
    assert gauge(before, "runstep_queue_depth") == 0

    # While a run streams through A: A counts the stream, every API sees the running run.
    assistant_id, thread_id = new_thread(a, scripted(running.upstream, slow_text(30, 0.05)))
    stream = stream_run(running.a, thread_id, assistant_id, streams)
    stream.wait_count("thread.message.delta", 3, 10)
    during, on_b = metrics(running.a), metrics(running.b)
    streams_before = gauge(before, "runstep_active_streams")
    assert gauge(during, "runstep_active_streams") == streams_before + 1
    assert gauge(on_b, "runstep_runs", status="in_progress") == 1
    lease_age = gauge(during, "runstep_oldest_lease_seconds")
    assert 0 <= lease_age < float(TIMINGS["RUNSTEP_LEASE_SECONDS"]), lease_age
    stream.join(10)
    eventually(
        lambda: gauge(metrics(running.a), "runstep_active_streams") == streams_before,
        3,
        "the stream no longer counted",
    )

    # Runs waiting for a worker are the queue.
    for worker in running.workers:
        worker.pause()
    try:
        queued = [
            a.beta.threads.create_and_run(
                assistant_id=assistant_id,
                thread={"messages": [{"role": "user", "content": "Hi"}]},
            ).id
            for _ in range(3)
        ]
        paused = metrics(running.b)
        assert gauge(paused, "runstep_queue_depth") == 3
        assert gauge(paused, "runstep_runs", status="queued") == 3
    finally:
        for worker in running.workers:
            worker.resume()
    eventually(
        lambda: all(running.sql.status(run_id) == "completed" for run_id in queued),
        5,
        "the queued runs done",
    )
    after = metrics(running.a)
    assert gauge(after, "runstep_queue_depth") == 0
    assert (
        gauge(after, "runstep_runs", status="completed")
        == gauge(before, "runstep_runs", status="completed") + 4
    )


# -- a server with tight limits ----------------------------------------------------------------


@dataclass
class Limited:
    process: ServerProcess
    sql: Sql

    def headers(self) -> dict[str, str]:
        """Headers with a fresh bearer token: a request budget of its own."""
        return {**HEADERS, "Authorization": f"Bearer sk-{uuid.uuid4().hex}"}

    def call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(
            method, f"{self.process.base_url}{path}", json=body, headers=self.headers(), timeout=5
        )


@pytest.fixture(scope="module")
def limited(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
) -> Iterator[Limited]:
    directory: Path = tmp_path_factory.mktemp("limited")
    url = fresh_postgres(request)
    env = {**cluster_env(url, directory, upstream), **LIMITED}
    process = ServerProcess(env=env, log_path=directory / "server.log").start()
    yield Limited(process, Sql(url))
    process.stop()


def check_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    validate_body(body)
    assert body["error"]["code"] == "rate_limit_exceeded", body


def test_the_sixth_quick_request_of_a_key_is_refused(limited: Limited) -> None:
    key = limited.headers()
    with httpx.Client(base_url=limited.process.base_url, timeout=5) as http:
        codes = [http.get("/assistants", headers=key).status_code for _ in range(5)]
        assert codes == [200] * 5
        check_rate_limited(http.get("/assistants", headers=key))
        assert http.get("/assistants", headers=limited.headers()).status_code == 200
        check_rate_limited(http.get("/assistants", headers=key))


def test_a_second_concurrent_stream_is_refused_without_creating_a_run(
    limited: Limited, upstream: ScriptedUpstream, streams: list
) -> None:
    slow = scripted(upstream, slow_text(30, 0.05))
    assistant_id = limited.call("POST", "/assistants", {"model": "scripted-model"}).json()["id"]
    first_thread, second_thread = (
        limited.call(
            "POST", "/threads", {"messages": [{"role": "user", "content": slow.say()}]}
        ).json()["id"]
        for _ in range(2)
    )
    first = LiveStream(
        limited.process.url,
        f"/v1/threads/{first_thread}/runs",
        {"assistant_id": assistant_id, "stream": True},
        headers=limited.headers(),
    )
    streams.append(first)
    first.start().wait_count("thread.message.delta", 1, 10)

    body = {"assistant_id": assistant_id, "stream": True}
    check_rate_limited(limited.call("POST", f"/threads/{second_thread}/runs", body))
    check_rate_limited(limited.call("POST", "/threads/runs", body))
    runs = limited.call("GET", f"/threads/{second_thread}/runs").json()
    assert runs["data"] == []
    assert limited.sql.value("SELECT count(*) FROM runs") == 1

    first.join(10)
    assert first.ended_with("thread.run.completed")
    # The slot is free again once the first stream ended.
    second = LiveStream(
        limited.process.url,
        f"/v1/threads/{second_thread}/runs",
        body,
        headers=limited.headers(),
    )
    streams.append(second)
    second.start().join(10)
    assert second.status_code == 200 and second.ended_with("thread.run.completed")


def test_finished_runs_lose_their_delta_events_and_keep_the_rest(
    limited: Limited, upstream: ScriptedUpstream
) -> None:
    quick, slow = slow_text(10, 0.01), slow_text(80, 0.05)
    assistant_id = limited.call("POST", "/assistants", {"model": "scripted-model"}).json()["id"]
    run_ids = []
    for reply in (quick, slow):
        script = scripted(upstream, reply)
        thread = {"messages": [{"role": "user", "content": script.say()}]}
        body = {"assistant_id": assistant_id, "thread": thread}
        run_ids.append(limited.call("POST", "/threads/runs", body).json()["id"])
    quick_id, slow_id = run_ids

    eventually(lambda: limited.sql.status(quick_id) == "completed", 5, "the quick run done")
    logged = limited.sql.events(quick_id)
    kept = [(seq, name) for seq, name in logged if name not in DELTAS]
    assert len(kept) < len(logged), "no delta events right after the run finished"

    eventually(lambda: limited.sql.events(quick_id) == kept, 5, "the delta events compacted")
    # Objects keep everything.
    thread_id = limited.sql.value("SELECT thread_id FROM runs WHERE id = %s", quick_id)
    messages = limited.call("GET", f"/threads/{thread_id}/messages?run_id={quick_id}").json()
    assert [m["content"][0]["text"]["value"] for m in messages["data"]] == ["".join(quick.text)]
    steps = limited.call("GET", f"/threads/{thread_id}/runs/{quick_id}/steps").json()
    assert [(s["type"], s["status"]) for s in steps["data"]] == [("message_creation", "completed")]
    # A run still executing keeps its deltas, however old: let two sweeps pass after its first
    # deltas became old enough to go.
    oldest = limited.sql.value(
        "SELECT min(created_at) FROM run_events WHERE run_id = %s AND event = %s",
        slow_id,
        "thread.message.delta",
    )
    eventually(
        lambda: limited.sql.value("SELECT extract(epoch FROM now())::bigint") - oldest >= 2,
        3,
        "the slow run's first deltas past the retention",
    )
    time.sleep(2 * float(LIMITED["RUNSTEP_SWEEP_SECONDS"]) + 0.1)
    assert limited.sql.status(slow_id) == "in_progress"
    still = limited.sql.value(
        "SELECT min(created_at) FROM run_events WHERE run_id = %s AND event = %s",
        slow_id,
        "thread.message.delta",
    )
    assert still == oldest
