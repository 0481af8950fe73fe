"""Helpers for the distributed tests: live SSE streams read in a background thread, SQL against
the shared PostgreSQL database, lease sampling, scripted replies, and polling with deadlines."""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import httpx
import psycopg
import sqlalchemy as sa

from tests.conformance import spec_available, validate_event
from tests.support.runs import Scripted, scripted  # noqa: F401  (re-exported for tests)
from tests.support.upstream_script import Script

T = TypeVar("T")
TOKEN = "sk-distributed-test"  # the cluster runs in open mode: any bearer token from loopback
HEADERS = {"Authorization": f"Bearer {TOKEN}", "OpenAI-Beta": "assistants=v2"}
TERMINAL = ("completed", "failed", "cancelled", "expired", "incomplete")
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "detail": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def eventually(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Call ``probe`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(interval)


# -- scripted upstream -------------------------------------------------------------------------


def slow_text(chunks: int, delay: float, tag: str = "w") -> Script:
    """``chunks`` distinct text pieces, ``delay`` seconds apart."""
    return Script(text=[f"{tag}{i:02d} " for i in range(chunks)], chunk_delay=delay)


# -- SQL ---------------------------------------------------------------------------------------


class Sql:
    """Short-lived connections to the test database (an outage test terminates the others)."""

    def __init__(self, sqlalchemy_url: str) -> None:
        url = sa.make_url(sqlalchemy_url)
        self.name = url.database
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def execute(self, statement: str, *params: Any) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def value(self, query: str, *params: Any) -> Any:
        found = self.rows(query, *params)
        return found[0][0] if found else None

    def lease_owner(self, run_id: str) -> str | None:
        owner: str | None = self.value("SELECT lease_owner FROM runs WHERE id = %s", run_id)
        return owner

    def status(self, run_id: str) -> str | None:
        status: str | None = self.value("SELECT status FROM runs WHERE id = %s", run_id)
        return status

    def events(self, run_id: str) -> list[tuple[int, str]]:
        """(seq, event) of the run's persisted log, in order."""
        return [
            (seq, event)
            for seq, event in self.rows(
                "SELECT seq, event FROM run_events WHERE run_id = %s ORDER BY seq", run_id
            )
        ]

    def terminate_backends(self) -> int:
        """Kill every other connection to the test database, as a failover or restart would."""
        killed = self.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            self.name,
        )
        return len(killed)

    def listeners(self) -> int:
        """Connections of the test database whose last statement was a LISTEN (one per bus)."""
        count: int = self.value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND query LIKE 'LISTEN runstep_work%%'",
            self.name,
        )
        return count


def check_event_log(events: list[tuple[int, str]], *ends: str) -> None:
    """One gap-free log: seq 1..n, and ``ends`` (statuses) are the events that ended a stream,
    in order, the last one last; the run was queued and moved to in_progress once per leg
    (one more than the times it waited for tool outputs)."""
    seqs = [seq for seq, _ in events]
    names = [name for _, name in events]
    assert seqs == list(range(1, len(events) + 1)), f"seq not 1..n without gaps: {seqs}"
    assert names[:2] == ["thread.run.created", "thread.run.queued"], names[:3]
    enders = [n for n in names if n.removeprefix("thread.run.") in (*TERMINAL, "requires_action")]
    assert enders == [f"thread.run.{end}" for end in ends], enders
    assert names[-1] == f"thread.run.{ends[-1]}", names[-3:]
    legs = 1 + ends[:-1].count("requires_action") if ends[-1] in TERMINAL else len(ends)
    assert names.count("thread.run.queued") == legs, names
    assert names.count("thread.run.in_progress") == legs, names


class SqlWatch:
    """Runs ``sample`` on its own connection every ``interval`` seconds in a background thread
    while the ``with`` block runs, until ``sample`` returns False. A failure is kept in
    ``error`` for the test to report (never raised as a thread warning)."""

    def __init__(self, sql: Sql, interval: float) -> None:
        self.sql, self.interval = sql, interval
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self, conn: psycopg.Connection) -> bool:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            with psycopg.connect(self.sql.dsn, autocommit=True) as conn:
                while not self._stop.is_set() and self.sample(conn):
                    self._stop.wait(self.interval)
        except BaseException as error:
            self.error = error


class LeaseSampler(SqlWatch):
    """Reads every held lease every few milliseconds while it runs: for each run, the distinct
    owners in the order they were seen (a run that two workers held at once, or that changed
    hands without a crash, shows up here)."""

    def __init__(self, sql: Sql, interval: float = 0.02) -> None:
        super().__init__(sql, interval)
        self.owners: dict[str, list[str]] = {}
        self.samples = 0

    def sample(self, conn: psycopg.Connection) -> bool:
        held = conn.execute("SELECT id, lease_owner FROM runs WHERE lease_owner IS NOT NULL")
        for run_id, owner in held.fetchall():
            seen = self.owners.setdefault(run_id, [])
            if not seen or seen[-1] != owner:
                seen.append(owner)
        self.samples += 1
        return True


# -- live streams ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() on arrival
    event: str
    data: Any  # parsed JSON, or the raw text ("[DONE]")


@dataclass
class LiveStream:
    """POST a streaming request and read its events in a background thread, as they arrive.

    Every event's data is validated against the spec on arrival (problems are collected in
    ``invalid``)."""

    base_url: str  # http://127.0.0.1:PORT
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: dict(HEADERS))
    events: list[Received] = field(default_factory=list)
    status_code: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    error_body: Any = None
    error: BaseException | None = None
    invalid: list[str] = field(default_factory=list)
    finished: bool = False

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=httpx.Timeout(20.0)
        )

    def start(self) -> "LiveStream":
        self._thread.start()
        return self

    def _add(self, event: str, data_lines: list[str]) -> None:
        raw = "\n".join(data_lines)
        data = raw if raw == "[DONE]" else json.loads(raw)
        if spec_available():
            try:
                validate_event(event, data)
            except AssertionError as problem:
                self.invalid.append(str(problem))
        with self._changed:
            self.events.append(Received(time.monotonic(), event, data))
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            with self._http.stream("POST", self.path, json=self.body) as response:
                self.status_code = response.status_code
                self.response_headers = dict(response.headers)
                if response.status_code != 200:
                    self.error_body = json.loads(response.read())
                    return
                event, data = "", []
                for line in response.iter_lines():
                    if not line:
                        if event or data:
                            self._add(event or "message", data)
                        event, data = "", []
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
        except BaseException as error:  # reported by the test, never as a thread warning
            self.error = error
        finally:
            self._http.close()
            with self._changed:
                self.finished = True
                self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[["LiveStream"], bool], timeout: float, what: str
    ) -> None:
        with self._changed:
            self._changed.wait_for(lambda: predicate(self) or self.finished, timeout)
        if not predicate(self):
            raise AssertionError(
                f"stream: {what} not within {timeout}s; error={self.error!r}, "
                f"status={self.status_code}, events={self.names[-8:]}"
            )

    def wait_count(self, event: str, count: int, timeout: float) -> None:
        self.wait_for(lambda s: s.names.count(event) >= count, timeout, f"{count}× {event}")

    def join(self, timeout: float) -> "LiveStream":
        """Wait for the stream to end; fail on a transport error or a spec violation."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"stream still open after {timeout}s: {self.names[-8:]}")
        if self.error is not None:
            raise AssertionError(f"stream broke: {self.error!r}; events: {self.names[-8:]}")
        assert not self.invalid, self.invalid[:3]
        return self

    def close(self) -> None:
        """Give up on the stream (teardown): close the client; the thread is a daemon and ends
        when its read fails or the server goes away."""
        self._http.close()
        self._thread.join(1)

    @property
    def names(self) -> list[str]:
        return [e.event for e in list(self.events)]

    def first(self, event: str) -> Any:
        return next(e.data for e in list(self.events) if e.event == event)

    def first_at(self, event: str) -> float:
        """When the first ``event`` arrived (time.monotonic())."""
        return next(e.at for e in list(self.events) if e.event == event)

    def last(self, event: str) -> Any:
        return [e.data for e in list(self.events) if e.event == event][-1]

    @property
    def run_id(self) -> str:
        return str(self.first("thread.run.created")["id"])

    @property
    def text(self) -> str:
        """The concatenated text of every message delta, as a client assembles it."""
        parts = []
        for e in list(self.events):
            if e.event == "thread.message.delta":
                for part in e.data["delta"]["content"]:
                    parts.append(part["text"]["value"])
        return "".join(parts)

    @property
    def arguments(self) -> dict[int, str]:
        """Each tool call's concatenated argument fragments, by call index."""
        calls: dict[int, str] = {}
        for e in list(self.events):
            if e.event != "thread.run.step.delta":
                continue
            for call in e.data["delta"]["step_details"]["tool_calls"]:
                fragment = call.get("function", {}).get("arguments") or ""
                calls[call["index"]] = calls.get(call["index"], "") + fragment
        return calls

    def ended_with(self, final: str) -> bool:
        return self.names[-2:] == [final, "done"]


def new_thread(client: Any, script: Scripted, **assistant: Any) -> tuple[str, str]:
    """(assistant id, thread id) for a new thread whose user message selects ``script``."""
    assistant_id = client.beta.assistants.create(model="scripted-model", **assistant).id
    thread = client.beta.threads.create(messages=[{"role": "user", "content": script.say()}])
    return assistant_id, thread.id


def stream_run(
    api: Any, thread_id: str, assistant_id: str, opened: list[Any] | None = None
) -> LiveStream:
    """Create a run on ``api`` (a ServerProcess) with ``stream: true`` and start reading it;
    the stream is added to ``opened`` (closed at teardown)."""
    stream = LiveStream(
        api.url, f"/v1/threads/{thread_id}/runs", {"assistant_id": assistant_id, "stream": True}
    )
    if opened is not None:
        opened.append(stream)
    return stream.start()


def run_records(client: Any, thread_id: str, run_id: str) -> dict[str, Any]:
    """What a run recorded, read through the API: the run, its steps and its messages (oldest
    first), reduced to what does not differ between two equal runs (ids, times, usage)."""
    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id, order="asc").data
    messages = client.beta.threads.messages.list(thread_id, run_id=run_id, order="asc").data
    return {
        "status": run.status,
        "run_errors": (run.last_error, run.incomplete_details),
        "steps": [(s.type, s.status) for s in steps],
        "step_errors": [s.last_error for s in steps],
        "messages": [
            (m.role, m.status, [c.text.value for c in m.content if c.type == "text"])
            for m in messages
        ],
        "message_details": [
            (m.incomplete_details, m.assistant_id, m.attachments) for m in messages
        ],
    }
