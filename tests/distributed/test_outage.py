"""PostgreSQL connection loss (every connection of the test database terminated, as a failover
or a restart would): requests succeed or fail with 503 and the error envelope, never 500 or a
hang; everything recovers within seconds without restarting anything, LISTEN included."""

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.distributed.conftest import Cluster
from tests.distributed.helpers import (
    HEADERS,
    Sql,
    check_event_log,
    eventually,
    new_thread,
    run_records,
    scripted,
    slow_text,
    stream_run,
)
from tests.support.validating_client import validate_body

RECOVERY_SECONDS = 5.0


@pytest.fixture
def http(running: Cluster) -> Iterator[list[httpx.Client]]:
    """Raw clients on API A and B (a hang shows up as a timeout)."""
    clients = [
        httpx.Client(base_url=api.base_url, headers=HEADERS, timeout=5.0) for api in running.apis
    ]
    yield clients
    for client in clients:
        client.close()


def probe(client: httpx.Client, assistant_id: str) -> list[int]:
    """A read, a write and a list; each answer must be a success or a proper 503."""
    codes = []
    for method, path, body in (
        ("GET", f"/assistants/{assistant_id}", None),
        ("POST", "/threads", {"metadata": {"probe": "1"}}),
        ("GET", "/assistants?limit=2", None),
    ):
        response = client.request(method, path, json=body)
        codes.append(response.status_code)
        assert response.status_code in (200, 503), (path, response.status_code, response.text)
        validate_body(response.json())
        if response.status_code == 503:
            error = response.json()["error"]
            assert error["type"] == "server_error", error
    return codes


class Terminator:
    """Terminates the test database's connections ``times`` times, ``interval`` apart, in a
    background thread (``done`` is set when it has finished)."""

    def __init__(self, sql: Sql, times: int, interval: float) -> None:
        self.sql, self.times, self.interval = sql, times, interval
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Terminator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(10)

    def _run(self) -> None:
        try:
            for _ in range(self.times):
                time.sleep(self.interval)
                self.sql.terminate_backends()
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.done.set()


def test_requests_recover_after_the_connections_are_terminated(
    running: Cluster, http: list[httpx.Client], streams: list
) -> None:
    a = running.client(running.a)
    assistant_id = a.beta.assistants.create(model="scripted-model").id
    for client in http:  # connections in every pool
        probe(client, assistant_id)
    # An extra worker that polls only every 30 s: it claims promptly only if woken by NOTIFY.
    sleepy = running.add_worker(RUNSTEP_WORKER_POLL_SECONDS="30")
    eventually(lambda: running.sql.listeners() == 5, 5, "a LISTEN connection per process")

    killed = running.sql.terminate_backends()
    assert killed >= 5
    codes: Counter[int] = Counter()
    # Right after, and while connections keep being cut (requests in flight included)...
    with Terminator(running.sql, times=6, interval=0.15) as terminator:
        while not terminator.done.is_set():
            codes.update(code for client in http for code in probe(client, assistant_id))
    assert terminator.error is None, terminator.error
    # ...then, within a few seconds, every request succeeds again.
    outage_over = time.monotonic()
    healthy_rounds = 0
    while healthy_rounds < 3:
        assert time.monotonic() - outage_over < RECOVERY_SECONDS, f"not recovered: {codes}"
        round_codes = [code for client in http for code in probe(client, assistant_id)]
        codes.update(round_codes)
        healthy_rounds = healthy_rounds + 1 if set(round_codes) == {200} else 0
    # Every process listens again.
    eventually(lambda: running.sql.listeners() == 5, RECOVERY_SECONDS, "LISTEN reconnected")

    # A run started now is claimed at once by the sleepy worker: NOTIFY reached it.
    others = [w for w in running.workers if w is not sleepy]
    for worker in others:
        worker.pause()
    try:
        reply = slow_text(5, 0.02)
        script = scripted(running.upstream, reply)
        assistant_id, thread_id = new_thread(a, script)
        created = time.monotonic()
        stream = stream_run(running.a, thread_id, assistant_id, streams)
        stream.wait_count("thread.run.in_progress", 1, 10)
        claimed = stream.first_at("thread.run.in_progress") - created
        stream.join(10)
    finally:
        for worker in others:
            worker.resume()
    assert claimed < 2.0, f"claimed {claimed:.1f}s after creation (its poll interval is 30 s)"
    assert stream.ended_with("thread.run.completed")
    assert stream.text == "".join(reply.text)
    running.retire(sleepy)
    assert all(p.alive for p in running.workers) and all(
        p.process is not None and p.process.poll() is None for p in running.apis
    )
    print(f"answers during the outage: {dict(codes)}")


def test_a_run_streaming_through_the_outage_completes(running: Cluster, streams: list) -> None:
    reply = slow_text(60, 0.05)
    script = scripted(running.upstream, reply)
    a, b = running.client(running.a), running.client(running.b)
    assistant_id, thread_id = new_thread(a, script)
    stream = stream_run(running.a, thread_id, assistant_id, streams)
    stream.wait_count("thread.message.delta", 10, 10)
    assert running.sql.terminate_backends() >= 4

    stream.join(20)
    assert "error" not in stream.names, stream.last("error")
    assert stream.ended_with("thread.run.completed"), stream.names[-4:]
    assert stream.text == "".join(reply.text)
    run_id = stream.run_id
    events = running.sql.events(run_id)
    assert stream.names == [name for _, name in events] + ["done"]
    check_event_log(events, "completed")
    records: dict[str, Any] = run_records(b, thread_id, run_id)
    assert records["steps"] == [("message_creation", "completed")]
    assert records["messages"] == [("assistant", "completed", ["".join(reply.text)])]
