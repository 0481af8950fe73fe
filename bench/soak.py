"""Soak: mixed traffic for a bounded time in the distributed topology, with a worker killed
(SIGKILL) every minute and restarted; then, after a drain, every record is checked.

Processes on one machine: the scripted Chat Completions upstream (its own process), one
``runstep serve --no-worker`` API process and two ``runstep worker`` processes on a fresh
PostgreSQL database (created here, migrated with ``runstep migrate``, dropped at the end; kept
with the logs when a problem was found), and this load generator (one ``httpx.AsyncClient``).

* **Traffic**: ``clients`` concurrent clients loop over a shared, fixed rotation of scenarios
  (``MIX``), each run on a fresh thread with one user message: plain text (streamed, or polled
  through ``POST /v1/threads/runs``), a function call answered with ``submit_tool_outputs``
  (streamed or polled), ``file_search`` over a small vector store ingested before the soak, and
  ``code_interpreter`` running small code (``print(6 * 7)``) in the sandbox. Each assistant's
  model replies are scripted and chosen from the conversation itself, never from a queue, so a
  run resumed after a crash asks the model again and gets the same reply: the user message
  holds ``[[script:soak-KIND]]`` (the call, or the text reply), the tool's output holds
  ``[[script:soak-KIND-answer]]`` (the function output the client submits, the documents'
  passages, the code's printed line), which picks the final answer. Text arrives in 20 chunks
  ``chunk_delay`` apart, so kills land in the middle of streams. A client drives each run to a
  terminal status whatever happens: a broken stream falls back to polling, ``requires_action``
  is answered (again, if a submit was lost), and it gives up after ``run_deadline``.
* **Kills**: every ``kill_every`` seconds the second worker ("the victim") is sent SIGKILL,
  after recording which runs it held a lease on; a new worker process replaces it. The first
  worker lives through the whole soak, so its memory can be followed (the runs the victim held
  resume on either worker once their lease lapses).
* **Samples** every ``sample_every`` seconds: resident memory (VmRSS) of the API process, each
  worker and the upstream; the sandbox interpreters (processes in the soak's sandbox uid range)
  and their memory; PostgreSQL connections of the database; runs by status (the backlog); the
  load average.
* **Drain**: once the traffic window ends no new run starts, kills stop, clients finish their
  runs, and the database is watched until no run is left unfinished (up to ``drain_seconds``).
* **Checks**, for every run in the database (``check_run``): terminal (else stuck); completed;
  exactly the steps of its scenario (``[message_creation]``, or ``[tool_calls,
  message_creation]`` with the scripted call, its output and, for file_search, results), all
  completed; exactly one assistant message in the run and one user message in the thread, with
  the scripted text, the one the message_creation step names; the event log gapless (seq
  1..n = ``runs.last_seq``), with one terminal event, last, matching the run's status, one
  ``queued``/``in_progress`` per leg, one ``created``/``completed`` per step and message and
  no other ids than the records', message deltas adding up to the stored text, tool-call
  deltas to the scripted arguments/code; no lease left. And from the clients: every run a
  client created is in the database, and a client whose streams were never cut saw exactly
  the log (same events in order) and the scripted text.

The result: throughput (runs/s overall, per scenario, per minute), latency per scenario, the
kills (runs held by the victim at each kill, restart time), errors (client-side by operation,
runs not completed, ERROR lines in the processes' logs), memory trends (start/end/max, least
squares slope after a warm-up, growth over the window after it) and the problems found, each
with the run id and what its records show. The run length: ``BENCH_SOAK_SECONDS`` (default
1200; ``--quick``: about 30 s), or ``python -m bench.soak --seconds N``.
"""

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.code_interpreter import sandbox_python
from bench.common import (
    RunOptions,
    migrate_with_cli,
    postgres_admin,
    postgres_database,
    source_fingerprint,
    summarize,
    write_result,
)
from bench.load import (
    Upstream,
    auth_headers,
    client_limits,
    event_loop_runner,
    machine_ticks,
    ok,
    process_cpu_seconds,
    scripted_upstream,
)
from tests.support.processes import WorkerProcess
from tests.support.server import ServerProcess
from tests.support.upstream_script import Script, ToolCall

API_KEY = "sk-bench-soak"
HEADERS = auth_headers(API_KEY)
MODEL = "scripted-model"
UID_BASE = 1_720_000_000  # sandbox uids of the soak's workers (apart from tests' and benches')
MAX_SANDBOX_SLOTS = 65_536  # runstep.tools.code_interpreter.sandbox.MAX_SLOTS
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
STOPS = TERMINAL | {"requires_action"}  # where a run's stream ends
MIB = 1024 * 1024
POLL_SECONDS = 0.3
RETRY_SECONDS = 0.5
ANSWER_CHUNKS = 20
PROBLEM_DETAILS = 40  # runs whose records are written out in full
SECONDS_VARIABLE = "BENCH_SOAK_SECONDS"

KINDS = ("text", "function", "file_search", "code")
# The shared rotation of (kind, mode) the clients take their next run from: text 5/12, function
# 3/12, file_search 2/12, code_interpreter 2/12; streamed 7/12, polled 5/12.
MIX: tuple[tuple[str, str], ...] = (
    ("text", "stream"), ("function", "stream"), ("file_search", "stream"), ("text", "poll"),
    ("code", "stream"), ("function", "poll"), ("text", "stream"), ("file_search", "poll"),
    ("code", "poll"), ("text", "poll"), ("function", "stream"), ("text", "stream"),
)
THREAD_AND_RUN = frozenset({"text", "code"})  # polled: created by POST /v1/threads/runs

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}
FUNCTION_ARGUMENTS = {"city": "Oslo"}
FUNCTION_OUTPUT = "Sunny, 21 C. [[script:soak-function-answer]]"
SEARCH_QUERY = "what the sourdough starter needs"
CODE = "x = 6 * 7\nprint(x, '[[script:soak-code-answer]]')"
CODE_LOGS = "42 [[script:soak-code-answer]]\n"
DOCUMENTS = {  # the vector store: each passage carries the answer's script marker
    "sourdough.txt": "A sourdough starter needs flour and water, fed every day at room "
                     "temperature; it doubles in a few hours when it is active.",
    "jupiter.txt": "Jupiter's Great Red Spot is an anticyclonic storm wider than Earth that "
                   "has lasted for centuries.",
    "tomatoes.txt": "Tomatoes want full sun, deep watering twice a week and a stake or cage "
                    "once the plants are knee high.",
}
DOCUMENT_MARKER = " (reference: [[script:soak-file_search-answer]])"

NOTES = [
    "Every process shares one 2-core machine with other people's work (tests, other "
    "benchmarks): throughput and latency are those of a shared machine, not a capacity figure; "
    "load_average samples say how busy it was.",
    "The first worker lives through the whole soak (its memory is followed over the whole "
    "window); the second is killed with SIGKILL every kill_every seconds and replaced by a new "
    "process (its incarnations are listed). Runs the killed worker held resume on either "
    "worker once their lease lapses (RUNSTEP_LEASE_SECONDS).",
    "Memory trends: slope = least squares of VmRSS over the samples after the warm-up; "
    "growth_after_warmup = slope x the time after it; flat = that growth is below 5% of the "
    "RSS at the warm-up's end and below 16 MiB.",
    "A run's scenario comes from its assistant; every run is checked, including any a client "
    "lost track of. Problems are grouped: stuck (not terminal after the drain), "
    "not_completed (failed, expired, ...), lost (a step, message, event or run missing), "
    "duplicated (one too many), mismatch (content differs from the script), event_log "
    "(order, gaps, seq), lease (held after the end), client_stream (what a client streamed "
    "differs from the log).",
    "The API process runs with RUNSTEP_REQUESTS_PER_MINUTE=0 (the per-key limiter would "
    "refuse the polls) and RUNSTEP_EVENT_RETENTION_SECONDS=604800 (delta events are kept, so "
    "the logs can be checked whole); other settings are the defaults unless `settings` says.",
]


@dataclass(frozen=True)
class Plan:
    """How long and how hard."""

    seconds: float = 1200.0  # the traffic window
    kill_every: float = 60.0
    clients: int = 12
    sample_every: float = 5.0
    memory_warmup: float = 120.0  # memory trends leave out the first seconds
    drain_seconds: float = 240.0
    run_deadline: float = 300.0  # a client gives up on a run after this long
    chunk_delay: float = 0.02
    worker_concurrency: int = 64
    settings: Mapping[str, str] = field(default_factory=dict)  # RUNSTEP_* for every process
    keep_on_problems: bool = True  # keep the database and logs when a check failed


def full_plan(seconds: float | None = None) -> Plan:
    if seconds is None:
        seconds = float(os.environ.get(SECONDS_VARIABLE) or 1200)
    return Plan(seconds=seconds, memory_warmup=min(120.0, seconds / 4))


def quick_plan() -> Plan:
    """About 30 s of traffic, a kill every 10 s, short leases so the drain is short."""
    return Plan(seconds=30.0, kill_every=10.0, clients=6, sample_every=1.0, memory_warmup=7.5,
                drain_seconds=90.0, run_deadline=120.0,
                settings={"RUNSTEP_LEASE_SECONDS": "5", "RUNSTEP_SWEEP_SECONDS": "1"})


# --- scripts and scenarios -----------------------------------------------------------------------


def answer_text(kind: str) -> list[str]:
    return [f"{kind}-{i:02d} " for i in range(ANSWER_CHUNKS)]


def user_message(kind: str) -> str:
    return f"Soak: a {kind} run, please. [[script:soak-{kind}]]"


def scripts(chunk_delay: float) -> dict[str, list[Script]]:
    """Named scripts for the upstream (each one repeats): a run's first model request is
    picked by its user message's marker, the answer by the marker in the tool's output."""
    answer = {kind: Script(text=answer_text(kind), chunk_delay=chunk_delay) for kind in KINDS}
    return {
        "soak-text": [answer["text"]],
        "soak-function": [Script(tool_calls=[ToolCall("get_weather", FUNCTION_ARGUMENTS,
                                                      fragments=4)], chunk_delay=chunk_delay)],
        "soak-function-answer": [answer["function"]],
        "soak-file_search": [Script(tool_calls=[ToolCall("file_search",
                                                         {"queries": [SEARCH_QUERY]})])],
        "soak-file_search-answer": [answer["file_search"]],
        "soak-code": [Script(tool_calls=[ToolCall("code_interpreter", {"code": CODE},
                                                  fragments=4)], chunk_delay=chunk_delay)],
        "soak-code-answer": [answer["code"]],
    }


@dataclass(frozen=True)
class Expected:
    """What a completed run of a scenario records."""

    kind: str
    steps: tuple[str, ...]
    answer: str
    legs: int  # stretches of execution: 1 + the times it waits for tool outputs
    tool: str | None = None
    arguments: str | None = None  # a function call's, as streamed
    code: str | None = None


def expected(kind: str) -> Expected:
    answer = "".join(answer_text(kind))
    if kind == "text":
        return Expected(kind, ("message_creation",), answer, 1)
    tools = ("tool_calls", "message_creation")
    if kind == "function":
        return Expected(kind, tools, answer, 2, "function",
                        ToolCall("f", FUNCTION_ARGUMENTS).arguments_json())
    if kind == "file_search":
        return Expected(kind, tools, answer, 1, "file_search")
    return Expected(kind, tools, answer, 1, "code_interpreter", code=CODE)


# --- the cluster ---------------------------------------------------------------------------------


@dataclass
class SoakCluster:
    """The API process, the long-lived worker, the victim (replaced after each kill)."""

    directory: Path
    env: dict[str, str]
    worker_concurrency: int
    api: ServerProcess | None = None
    survivor: WorkerProcess | None = None
    victim: WorkerProcess | None = None
    retired: list[WorkerProcess] = field(default_factory=list)
    started: int = 0

    def new_worker(self) -> WorkerProcess:
        self.started += 1
        return WorkerProcess(env=self.env, log_path=self.directory / f"worker-{self.started}.log",
                             args=("--concurrency", str(self.worker_concurrency)))

    def start(self) -> None:
        self.api = ServerProcess(env={**self.env, "RUNSTEP_REQUESTS_PER_MINUTE": "0"},
                                 args=("--no-worker",), log_path=self.directory / "api.log")
        self.api.start()
        self.survivor, self.victim = self.new_worker().spawn(), self.new_worker().spawn()
        self.survivor.wait_ready(60)
        self.victim.wait_ready(60)

    def replace_victim(self) -> WorkerProcess:
        """Start the victim's successor (the dead one is retired)."""
        assert self.victim is not None
        self.retired.append(self.victim)
        self.victim = self.new_worker().start(60)
        return self.victim

    def stop(self) -> None:
        for worker in [self.victim, self.survivor, *self.retired]:
            if worker is not None:
                worker.stop()
        if self.api is not None:
            self.api.stop()

    def logs(self) -> list[Path]:
        return sorted(self.directory.glob("*.log"))


def _dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --- one run, as a client drives it --------------------------------------------------------------


@dataclass
class StreamSeen:
    """What one SSE response showed."""

    http_status: int | None = None
    names: list[str] = field(default_factory=list)  # events before ``done``
    run_id: str | None = None
    status: str | None = None  # the status of the event that ended it (terminal or action)
    run: dict[str, Any] | None = None
    text: str = ""
    done: bool = False
    error: str | None = None


@dataclass
class Outcome:
    """One run, from its client's side."""

    kind: str
    mode: str
    client: int
    started: float
    ended: float = 0.0
    thread_id: str | None = None
    run_id: str | None = None
    status: str | None = None  # the last status the client saw
    errors: list[str] = field(default_factory=list)
    streamed: list[str] = field(default_factory=list)  # event names over the run's streams
    streamed_text: str = ""
    stream_intact: bool = True  # no stream of the run broke after it started
    submits: int = 0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _error_label(operation: str, problem: httpx.Response | BaseException | str) -> str:
    if isinstance(problem, httpx.Response):
        return f"{operation}: HTTP {problem.status_code}"
    if isinstance(problem, BaseException):
        return f"{operation}: {type(problem).__name__}"
    return f"{operation}: {problem}"


class Client:
    """Drives runs of every scenario against the API, recording what it saw."""

    def __init__(self, http: httpx.AsyncClient, assistants: Mapping[str, str],
                 plan: Plan) -> None:
        self.http, self.assistants, self.plan = http, assistants, plan
        self.errors: Counter[str] = Counter()

    def _fail(self, outcome: Outcome, operation: str,
              problem: httpx.Response | BaseException | str) -> None:
        label = _error_label(operation, problem)
        self.errors[label] += 1
        outcome.errors.append(label)

    async def _post(self, outcome: Outcome, operation: str, path: str,
                    body: dict[str, Any]) -> httpx.Response | None:
        try:
            response = await self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            self._fail(outcome, operation, exc)
            return None
        if response.status_code >= 300:
            self._fail(outcome, operation, response)
        return response

    async def _stream(self, outcome: Outcome, operation: str, path: str,
                      body: dict[str, Any]) -> StreamSeen:
        seen = StreamSeen()
        try:
            async with self.http.stream("POST", path, json=body) as response:
                seen.http_status = response.status_code
                if response.status_code != 200:
                    await response.aread()
                    self._fail(outcome, operation, response)
                    return seen
                await _read_stream(response, seen)
        except httpx.HTTPError as exc:
            seen.error = _error_label(operation, exc)
        if seen.error is None and not seen.done:
            seen.error = _error_label(operation, "stream ended without done")
        if seen.error is not None:
            self.errors[seen.error] += 1
            outcome.errors.append(seen.error)
            outcome.stream_intact = False
        outcome.streamed.extend(seen.names)
        outcome.streamed_text += seen.text
        if seen.run_id is not None:
            outcome.run_id = seen.run_id
        return seen

    async def _poll(self, outcome: Outcome) -> tuple[str, dict[str, Any]]:
        """GET the run until it stops (terminal or requires_action)."""
        path = f"/v1/threads/{outcome.thread_id}/runs/{outcome.run_id}"
        while True:
            try:
                response = await self.http.get(path)
            except httpx.HTTPError as exc:
                self._fail(outcome, "poll", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if response.status_code != 200:
                self._fail(outcome, "poll", response)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            run = response.json()
            if run["status"] in STOPS:
                return run["status"], run
            await asyncio.sleep(POLL_SECONDS)

    async def _submit(self, outcome: Outcome, run: dict[str, Any]) -> StreamSeen | None:
        """Answer every pending call; the stream, if streamed (else None: the caller polls,
        and a lost submit is sent again)."""
        calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        outputs = [{"tool_call_id": call["id"], "output": FUNCTION_OUTPUT} for call in calls]
        path = f"/v1/threads/{outcome.thread_id}/runs/{outcome.run_id}/submit_tool_outputs"
        outcome.submits += 1
        if outcome.mode == "stream":
            seen = await self._stream(outcome, "submit_tool_outputs (stream)", path,
                                      {"tool_outputs": outputs, "stream": True})
            if seen.http_status != 200:
                await asyncio.sleep(RETRY_SECONDS)
            return seen
        response = await self._post(outcome, "submit_tool_outputs", path,
                                    {"tool_outputs": outputs})
        if response is None or response.status_code >= 300:
            await asyncio.sleep(RETRY_SECONDS)
        return None

    async def _create(self, outcome: Outcome) -> StreamSeen | None:
        """Create the thread and the run; its stream, if streamed."""
        assistant = self.assistants[outcome.kind]
        message = {"role": "user", "content": user_message(outcome.kind)}
        if outcome.mode == "poll" and outcome.kind in THREAD_AND_RUN:
            response = await self._post(outcome, "create_thread_and_run", "/v1/threads/runs",
                                        {"assistant_id": assistant,
                                         "thread": {"messages": [message]}})
            if response is None or response.status_code >= 300:
                return None
            run = response.json()
            outcome.thread_id, outcome.run_id = run["thread_id"], run["id"]
            return None
        response = await self._post(outcome, "create_thread", "/v1/threads",
                                    {"messages": [message]})
        if response is None or response.status_code >= 300:
            return None
        outcome.thread_id = response.json()["id"]
        path = f"/v1/threads/{outcome.thread_id}/runs"
        if outcome.mode == "stream":
            return await self._stream(outcome, "create_run (stream)", path,
                                      {"assistant_id": assistant, "stream": True})
        response = await self._post(outcome, "create_run", path, {"assistant_id": assistant})
        if response is not None and response.status_code < 300:
            outcome.run_id = response.json()["id"]
        return None

    async def _drive(self, outcome: Outcome) -> None:
        seen = await self._create(outcome)
        if outcome.run_id is None:
            return
        while True:
            if seen is not None and seen.error is None and seen.run is not None:
                status, run = seen.status, seen.run  # where its intact stream ended
            else:
                status, run = await self._poll(outcome)
            outcome.status = status
            if status != "requires_action":
                return
            seen = await self._submit(outcome, run)

    async def run(self, index: int, kind: str, mode: str) -> Outcome:
        outcome = Outcome(kind, mode, index, time.perf_counter())
        try:
            async with asyncio.timeout(self.plan.run_deadline):
                await self._drive(outcome)
        except TimeoutError:
            self._fail(outcome, "client", f"gave up after {self.plan.run_deadline:g} s")
        except Exception as exc:  # a harness bug must not end the soak: counted, reported
            self._fail(outcome, "client exception", repr(exc)[:200])
        outcome.ended = time.perf_counter()
        return outcome


async def _read_stream(response: httpx.Response, seen: StreamSeen) -> None:
    """Read SSE events to the end of the response into ``seen``."""
    event: str | None = None
    data: list[str] = []

    def dispatch() -> None:
        name, raw = event or "message", "\n".join(data)
        if name == "done":
            seen.done = True
            return
        seen.names.append(name)
        if name == "error":
            seen.error = f"error event: {raw[:160]}"
        elif name.startswith("thread.run.") and not name.startswith("thread.run.step."):
            run = json.loads(raw)
            if name == "thread.run.created":
                seen.run_id = run["id"]
            if run.get("status") in STOPS and name.removeprefix("thread.run.") in STOPS:
                seen.status, seen.run = run["status"], run
        elif name == "thread.message.delta":
            seen.text += _delta_text(json.loads(raw))

    async for line in response.aiter_lines():
        if not line:
            if event is not None or data:
                dispatch()
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if event is not None or data:
        dispatch()


def _delta_text(delta: Mapping[str, Any]) -> str:
    return "".join(part.get("text", {}).get("value") or ""
                   for part in delta.get("delta", {}).get("content") or ()
                   if part.get("type") == "text")


# --- setup through the API -----------------------------------------------------------------------


async def setup(http: httpx.AsyncClient, upstream: Upstream,
                plan: Plan) -> tuple[dict[str, str], dict[str, Any]]:
    """Register the scripts, ingest the vector store, create one assistant per scenario."""
    async with httpx.AsyncClient(base_url=upstream.root, timeout=30.0) as control:
        for name, named in scripts(plan.chunk_delay).items():
            ok(await control.post(f"/_control/register/{name}", json=[s.to_dict() for s in named]))
    started = time.perf_counter()
    file_ids = []
    for name, text in DOCUMENTS.items():
        files = {"file": (name, (text + DOCUMENT_MARKER).encode(), "text/plain")}
        uploaded = ok(await http.post("/v1/files", data={"purpose": "assistants"}, files=files))
        file_ids.append(uploaded["id"])
    store = ok(await http.post("/v1/vector_stores", json={"name": "soak", "file_ids": file_ids}))
    deadline = time.perf_counter() + 300
    while store["status"] == "in_progress" and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)
        store = ok(await http.get(f"/v1/vector_stores/{store['id']}"))
    if store["file_counts"]["completed"] != len(file_ids):
        raise RuntimeError(f"the vector store was not ingested: {store}")
    tools: dict[str, dict[str, Any]] = {
        "text": {},
        "function": {"tools": [WEATHER_TOOL]},
        "file_search": {"tools": [{"type": "file_search"}],
                        "tool_resources": {"file_search": {"vector_store_ids": [store["id"]]}}},
        "code": {"tools": [{"type": "code_interpreter"}]},
    }
    assistants = {}
    for kind, extra in tools.items():
        body = {"model": MODEL, "name": f"soak-{kind}", "instructions": "Be brief.", **extra}
        assistants[kind] = ok(await http.post("/v1/assistants", json=body))["id"]
    return assistants, {"vector_store_id": store["id"], "file_ids": file_ids,
                        "ingest_seconds": time.perf_counter() - started}


# --- sampling ------------------------------------------------------------------------------------


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sandbox_processes(uid_base: int = UID_BASE) -> tuple[int, float]:
    """How many processes run as a sandbox uid of the soak, and their resident memory (MiB)."""
    count, total = 0, 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            lines = Path(entry.path, "status").read_text().splitlines()
        except OSError:
            continue
        uid = next((int(line.split()[1]) for line in lines if line.startswith("Uid:")), -1)
        if uid_base <= uid < uid_base + MAX_SANDBOX_SLOTS:
            count += 1
            total += next((int(line.split()[1]) / 1024 for line in lines
                           if line.startswith("VmRSS:")), 0.0)
    return count, total


class Sampler:
    """Samples memory, connections and the backlog; one connection of its own."""

    def __init__(self, cluster: SoakCluster, upstream: Upstream, dsn: str, database: str,
                 started: float) -> None:
        self.cluster, self.upstream, self.database, self.started = (cluster, upstream, database,
                                                                    started)
        self.connection = psycopg.connect(dsn, autocommit=True)
        self.admin = postgres_admin()
        self.samples: list[dict[str, Any]] = []

    def take(self, completed: int) -> dict[str, Any]:
        cluster = self.cluster
        assert cluster.api is not None and cluster.api.process is not None
        assert cluster.survivor is not None and cluster.victim is not None
        statuses = dict(self.connection.execute(
            "SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        row = self.admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                 (self.database,)).fetchone()
        sandboxes, sandbox_mib = sandbox_processes()
        victim = cluster.victim.pid if cluster.victim.alive else None  # None: restarting
        sample = {
            "t": round(time.perf_counter() - self.started, 2),
            "rss_mib": {"api": rss_mib(cluster.api.process.pid),
                        "worker_1": rss_mib(cluster.survivor.pid),
                        "worker_2": rss_mib(victim), "upstream": rss_mib(self.upstream.pid)},
            "worker_2_pid": victim,
            "sandbox_processes": sandboxes, "sandbox_rss_mib": round(sandbox_mib, 1),
            "pg_connections": row[0] if row else None,
            "runs_by_status": statuses,
            "client_runs_finished": completed,
            "load_average_1m": os.getloadavg()[0],
        }
        self.samples.append(sample)
        return sample

    def close(self) -> None:
        self.connection.close()
        self.admin.close()


def trend(points: Sequence[tuple[float, float]], warmup: float) -> dict[str, Any] | None:
    """Memory over time (seconds, MiB): start, end, max, the least squares slope after
    ``warmup`` (MiB/hour), the growth it makes over that time, and whether that is flat."""
    points = [p for p in points if p[1] is not None]
    if not points:
        return None
    kept = [p for p in points if p[0] >= warmup] or points
    slope = _slope(kept)
    span = kept[-1][0] - kept[0][0]
    growth = slope * span / 3600
    half = [p for p in kept if p[0] >= kept[0][0] + span / 2]
    values = [v for _, v in points]
    return {
        "samples": len(points),
        "start_mib": round(points[0][1], 1), "after_warmup_mib": round(kept[0][1], 1),
        "end_mib": round(points[-1][1], 1), "max_mib": round(max(values), 1),
        "min_mib": round(min(values), 1),
        "slope_mib_per_hour": round(slope, 2),
        "second_half_slope_mib_per_hour": round(_slope(half), 2) if len(half) > 2 else None,
        "growth_after_warmup_mib": round(growth, 1),
        "flat": growth < min(16.0, 0.05 * kept[0][1]),
    }


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least squares slope in units per hour."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def memory_report(samples: Sequence[Mapping[str, Any]], kills: Sequence[Mapping[str, Any]],
                  warmup: float) -> dict[str, Any]:
    """Trends of the long-lived processes; each victim incarnation's memory."""
    report: dict[str, Any] = {}
    for name in ("api", "worker_1", "upstream"):
        report[name] = trend([(s["t"], s["rss_mib"][name]) for s in samples], warmup)
    report["sandbox_rss_mib"] = trend([(s["t"], s["sandbox_rss_mib"]) for s in samples], warmup)
    report["sandbox_processes_max"] = max((s["sandbox_processes"] for s in samples), default=0)
    report["pg_connections_max"] = max((s["pg_connections"] or 0 for s in samples), default=0)
    incarnations: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for sample in samples:
        if sample["worker_2_pid"] is not None and sample["rss_mib"]["worker_2"] is not None:
            incarnations[sample["worker_2_pid"]].append(
                (sample["t"], sample["rss_mib"]["worker_2"]))
    lives = []
    for pid, points in sorted(incarnations.items(), key=lambda item: item[1][0][0]):
        killed = next((k for k in kills if k["pid"] == pid), None)
        lives.append({"pid": pid, "first_t": points[0][0], "last_t": points[-1][0],
                      "first_mib": round(points[0][1], 1), "last_mib": round(points[-1][1], 1),
                      "max_mib": round(max(v for _, v in points), 1),
                      "killed": killed is not None})
    last = [(life["last_t"], life["last_mib"]) for life in lives if life["killed"]]
    report["worker_2_incarnations"] = lives
    report["worker_2_last_mib_slope_per_hour"] = round(_slope(last), 2) if len(last) > 2 else None
    return report


# --- checks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    seq: int
    name: str
    data: Mapping[str, Any]


def _text(message: Mapping[str, Any]) -> str:
    return "".join(part["text"]["value"] for part in message.get("content") or ()
                   if part.get("type") == "text")


def _ids_seen(events: Sequence[Event], prefix: str) -> dict[str, Counter[str]]:
    """For each object id, how many of each ``prefix``* event named it."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for event in events:
        if event.name.startswith(prefix) and not event.name.endswith(".delta"):
            seen[event.data.get("id", "?")][event.name.removeprefix(prefix)] += 1
    return seen


def _tool_delta(events: Sequence[Event], step_id: str, tool: str, key: str) -> str:
    """A tool call's ``key`` (arguments, input) as its step deltas streamed it."""
    parts = []
    for event in events:
        if event.name != "thread.run.step.delta" or event.data.get("id") != step_id:
            continue
        for call in event.data["delta"].get("step_details", {}).get("tool_calls") or ():
            parts.append((call.get(tool) or {}).get(key) or "")
    return "".join(parts)


def check_run(run: Mapping[str, Any], steps: Sequence[Mapping[str, Any]],
              messages: Sequence[Mapping[str, Any]], thread_messages: Sequence[Mapping[str, Any]],
              events: Sequence[Event], want: Expected | None) -> list[tuple[str, str]]:
    """Everything wrong with one run's records: (category, what), empty if nothing.

    ``run``: the runs row (id, status, lease_owner, last_seq, data); ``steps`` and ``messages``
    (wire objects, in insertion order) of the run; ``thread_messages``: every message of its
    thread; ``events``: its log in seq order; ``want``: its scenario (None: unknown)."""
    found: list[tuple[str, str]] = []
    status = run["status"]
    if want is None:
        return [("mismatch", f"unknown assistant {run['data'].get('assistant_id')}")]
    if status not in TERMINAL:
        found.append(("stuck", f"status {status} after the drain (lease_owner "
                               f"{run.get('lease_owner')}, last_seq {run.get('last_seq')}, "
                               f"last events {[e.name for e in events[-3:]]})"))
    elif status != "completed":
        found.append(("not_completed", f"ended {status}: last_error "
                                       f"{run['data'].get('last_error')}, incomplete_details "
                                       f"{run['data'].get('incomplete_details')}"))
    if run.get("lease_owner") is not None and status in TERMINAL:
        found.append(("lease", f"{status} but leased by {run['lease_owner']}"))

    # the event log
    names = [e.name for e in events]
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(events) + 1)):
        missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
        found.append(("lost", f"event seq not 1..n: {len(seqs)} events, missing {missing[:10]}"))
    if run.get("last_seq") is not None and run["last_seq"] != (seqs[-1] if seqs else 0):
        found.append(("event_log", f"runs.last_seq {run['last_seq']} but the log ends at "
                                   f"{seqs[-1] if seqs else 0}"))
    if names[:2] != ["thread.run.created", "thread.run.queued"]:
        found.append(("event_log", f"log starts {names[:2]}"))
    enders = [n for n in names if n.removeprefix("thread.run.") in TERMINAL]
    if status in TERMINAL:
        if len(enders) != 1:
            found.append(("duplicated" if len(enders) > 1 else "lost",
                          f"{len(enders)} terminal events: {enders}"))
        elif names[-1] != f"thread.run.{status}":
            found.append(("event_log", f"the log ends with {names[-1:]}, the run is {status}"))
    if status == "completed":
        actions = names.count("thread.run.requires_action")
        if actions != want.legs - 1:
            found.append(("duplicated" if actions > want.legs - 1 else "lost",
                          f"{actions} requires_action events, expected {want.legs - 1}"))
        for leg in ("queued", "in_progress"):
            count = names.count(f"thread.run.{leg}")
            if count != want.legs:
                found.append(("duplicated" if count > want.legs else "lost",
                              f"{count} thread.run.{leg} events, expected {want.legs}"))

    # steps: the records, their events
    step_ids = [s["id"] for s in steps]
    step_events = _ids_seen(events, "thread.run.step.")
    for step_id, counts in step_events.items():
        if step_id not in step_ids:
            found.append(("event_log", f"events of a step not recorded: {step_id} {dict(counts)}"))
    for step in steps:
        counts = step_events.get(step["id"], Counter())
        for what in ("created", step["status"]):
            if counts[what] != 1:
                found.append(("duplicated" if counts[what] > 1 else "lost",
                              f"{counts[what]} step.{what} events for {step['type']} step "
                              f"{step['id']}"))
    if status == "completed":
        types = tuple(s["type"] for s in steps)
        if types != want.steps:
            category = "duplicated" if len(types) > len(want.steps) else (
                "lost" if len(types) < len(want.steps) else "mismatch")
            found.append((category, f"steps {list(types)}, expected {list(want.steps)}"))
        for step in steps:
            if step["status"] != "completed":
                found.append(("mismatch", f"{step['type']} step {step['id']} is "
                                          f"{step['status']}: {step.get('last_error')}"))
        found.extend(_check_tool_step(steps, events, want))

    # messages: the records, their events, their text
    ours = [m for m in messages if m.get("role") == "assistant"]
    message_events = _ids_seen(events, "thread.message.")
    for message_id, counts in message_events.items():
        if message_id not in {m["id"] for m in messages}:
            found.append(("event_log",
                          f"events of a message not recorded: {message_id} {dict(counts)}"))
    for message in ours:
        counts = message_events.get(message["id"], Counter())
        for what in ("created", message["status"]):
            if counts[what] != 1:
                found.append(("duplicated" if counts[what] > 1 else "lost",
                              f"{counts[what]} message.{what} events for {message['id']}"))
        streamed = "".join(_delta_text(e.data) for e in events if e.name ==
                           "thread.message.delta" and e.data.get("id") == message["id"])
        if streamed != _text(message):
            found.append(("mismatch", f"message {message['id']}: deltas add up to "
                                      f"{streamed[:80]!r}..., stored {_text(message)[:80]!r}..."))
    if status == "completed":
        if len(ours) != 1:
            found.append(("duplicated" if len(ours) > 1 else "lost",
                          f"{len(ours)} assistant messages: {[m['id'] for m in ours]}"))
        for message in ours:
            if message["status"] != "completed" or _text(message) != want.answer:
                found.append(("mismatch", f"message {message['id']} {message['status']}: "
                                          f"{_text(message)[:120]!r}"))
        creation = [s for s in steps if s["type"] == "message_creation"]
        named = [s["step_details"]["message_creation"]["message_id"] for s in creation]
        if named != [m["id"] for m in ours]:
            found.append(("mismatch", f"message_creation steps name {named}, the run's "
                                      f"messages are {[m['id'] for m in ours]}"))
        users = [m for m in thread_messages if m.get("role") == "user"]
        answers = [m for m in thread_messages if m.get("role") == "assistant"]
        if len(users) != 1 or len(answers) != 1:
            found.append(("duplicated" if len(users) > 1 or len(answers) > 1 else "lost",
                          f"the thread holds {len(users)} user and {len(answers)} assistant "
                          f"messages (one run per thread)"))
    return found


def _check_tool_step(steps: Sequence[Mapping[str, Any]], events: Sequence[Event],
                     want: Expected) -> list[tuple[str, str]]:
    if want.tool is None:
        return []
    tool_steps = [s for s in steps if s["type"] == "tool_calls"]
    if len(tool_steps) != 1:
        return []  # already reported as a wrong step list
    step = tool_steps[0]
    calls = step["step_details"]["tool_calls"]
    if len(calls) != 1 or calls[0].get("type") != want.tool:
        return [("duplicated" if len(calls) > 1 else "mismatch",
                 f"tool step {step['id']} holds calls {[c.get('type') for c in calls]}")]
    call = calls[0]
    found: list[tuple[str, str]] = []
    if want.tool == "function":
        function = call["function"]
        if (function["name"], function["arguments"], function.get("output")) != (
                "get_weather", want.arguments, FUNCTION_OUTPUT):
            found.append(("mismatch", f"function call {function}"))
        streamed = _tool_delta(events, step["id"], "function", "arguments")
        if streamed != want.arguments:
            found.append(("mismatch", f"function arguments streamed as {streamed!r}"))
    elif want.tool == "code_interpreter":
        code = call["code_interpreter"]
        logs = [o.get("logs") for o in code.get("outputs") or () if o.get("type") == "logs"]
        if code.get("input") != want.code or logs != [CODE_LOGS]:
            found.append(("mismatch", f"code call input {code.get('input')!r}, logs {logs}"))
        streamed = _tool_delta(events, step["id"], "code_interpreter", "input")
        if streamed != want.code:
            found.append(("mismatch", f"code input streamed as {streamed!r}"))
    elif want.tool == "file_search" and not (call["file_search"].get("results")):
        found.append(("mismatch", f"file_search call {call['id']} found no results"))
    return found


def check_client(outcome: Outcome, run: Mapping[str, Any] | None,
                 events: Sequence[Event] | None) -> list[tuple[str, str]]:
    """What the client saw against the records."""
    if outcome.run_id is None:
        return []
    if run is None:
        return [("lost", f"the client created run {outcome.run_id} (thread "
                         f"{outcome.thread_id}); it is not in the database")]
    found: list[tuple[str, str]] = []
    if outcome.mode == "stream" and outcome.stream_intact and outcome.status in TERMINAL:
        logged = [e.name for e in events or ()]
        if outcome.streamed != logged:
            first = next((i for i, (a, b) in enumerate(zip(outcome.streamed, logged,
                                                           strict=False)) if a != b),
                         min(len(outcome.streamed), len(logged)))
            found.append(("client_stream",
                          f"the client streamed {len(outcome.streamed)} events, the log holds "
                          f"{len(logged)}; first difference at {first}: "
                          f"{outcome.streamed[first:first + 3]} vs {logged[first:first + 3]}"))
        if outcome.status == "completed" and outcome.streamed_text != "".join(
                answer_text(outcome.kind)):
            found.append(("client_stream",
                          f"the client streamed the text {outcome.streamed_text[:120]!r}"))
    return found


def _records(dsn: str) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, list[Any]],
                                dict[str, list[Any]]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        runs = {row[0]: {"id": row[0], "thread_id": row[1], "status": row[2],
                         "lease_owner": row[3], "lease_expires_at": row[4], "last_seq": row[5],
                         "data": _json(row[6])}
                for row in conn.execute("SELECT id, thread_id, status, lease_owner, "
                                        "lease_expires_at, last_seq, data FROM runs ORDER BY pk")}
        steps: dict[str, list[Any]] = defaultdict(list)
        for run_id, data in conn.execute("SELECT run_id, data FROM run_steps ORDER BY pk"):
            steps[run_id].append(_json(data))
        by_run: dict[str, list[Any]] = defaultdict(list)
        by_thread: dict[str, list[Any]] = defaultdict(list)
        for thread_id, run_id, data in conn.execute(
                "SELECT thread_id, run_id, data FROM messages ORDER BY pk"):
            message = _json(data)
            by_thread[thread_id].append(message)
            if run_id is not None:
                by_run[run_id].append(message)
    return runs, steps, by_run, by_thread


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _events(dsn: str) -> Iterator[tuple[str, list[Event]]]:
    """Each run's log, run by run (a server-side cursor: the logs are large)."""
    with psycopg.connect(dsn) as conn, conn.cursor(name="soak_events") as cursor:
        cursor.itersize = 5000
        cursor.execute("SELECT run_id, seq, event, data FROM run_events ORDER BY run_id, seq")
        for run_id, rows in itertools.groupby(cursor, key=lambda row: row[0]):
            yield run_id, [Event(seq, name, json.loads(data)) for _, seq, name, data in rows]


def verify(dsn: str, assistants: Mapping[str, str], outcomes: Sequence[Outcome],
           held: Iterable[str]) -> dict[str, Any]:
    """Check every run in the database, and what the clients saw; a report. Logs are read
    run by run; only the problem runs' event names are kept."""
    runs, steps, messages, thread_messages = _records(dsn)
    kinds = {assistant: kind for kind, assistant in assistants.items()}
    wants = {kind: expected(kind) for kind in KINDS}
    by_client = {o.run_id: o for o in outcomes if o.run_id is not None}
    problems: dict[str, list[tuple[str, str]]] = {}
    names: dict[str, list[str]] = {}  # the problem runs' logs, without deltas

    def check(run_id: str, events: list[Event]) -> None:
        run = runs[run_id]
        want = wants.get(kinds.get(run["data"].get("assistant_id"), ""))
        found = check_run(run, steps.get(run_id, []), messages.get(run_id, []),
                          thread_messages.get(run["thread_id"], []), events, want)
        if run_id in by_client:
            found += check_client(by_client[run_id], run, events)
        if found:
            problems[run_id] = found
            names[run_id] = [f"{e.seq}:{e.name}" for e in events if not e.name.endswith(".delta")]

    checked: set[str] = set()
    for run_id, events in _events(dsn):
        if run_id not in runs:
            problems[run_id] = [("event_log", f"{len(events)} events of a run not recorded")]
            continue
        check(run_id, events)
        checked.add(run_id)
    for run_id in runs.keys() - checked:  # runs without a single event
        check(run_id, [])
        checked.add(run_id)
    for outcome in outcomes:
        if outcome.run_id is not None and outcome.run_id not in runs:
            problems[outcome.run_id] = check_client(outcome, None, None)

    categories: Counter[str] = Counter()
    for found in problems.values():
        categories.update({category for category, _ in found})
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for run in runs.values():
        by_kind[kinds.get(run["data"].get("assistant_id"), "unknown")][run["status"]] += 1
    interrupted = sorted(set(held))
    details = []
    for run_id in sorted(problems, key=lambda r: (r not in interrupted, r))[:PROBLEM_DETAILS]:
        run = runs.get(run_id)
        outcome = by_client.get(run_id)
        details.append({
            "run_id": run_id,
            "kind": kinds.get(run["data"].get("assistant_id")) if run else None,
            "problems": [f"{category}: {what}" for category, what in problems[run_id]],
            "interrupted_by_a_kill": run_id in interrupted,
            "run": None if run is None else {
                **{k: v for k, v in run.items() if k != "data"},
                "last_error": run["data"].get("last_error")},
            "steps": [(s["id"], s["type"], s["status"]) for s in steps.get(run_id, [])],
            "messages": [(m["id"], m["role"], m["status"], _text(m)[:200])
                         for m in messages.get(run_id, [])],
            "events": names.get(run_id, []),
            "client": None if outcome is None else {
                "mode": outcome.mode, "status": outcome.status, "errors": outcome.errors,
                "stream_intact": outcome.stream_intact, "seconds": round(outcome.seconds, 2),
                "streamed": [n for n in outcome.streamed if not n.endswith(".delta")]},
        })
    return {
        "runs_in_database": len(runs),
        "runs_checked": len(checked),
        "runs_by_status": dict(Counter(run["status"] for run in runs.values())),
        "runs_by_kind_and_status": {kind: dict(c) for kind, c in sorted(by_kind.items())},
        "client_runs": len(outcomes),
        "client_runs_without_id": sum(1 for o in outcomes if o.run_id is None),
        "interrupted_runs": len(interrupted),
        "interrupted_runs_completed": sum(1 for r in interrupted
                                          if runs.get(r, {}).get("status") == "completed"),
        "interrupted_runs_with_problems": sum(1 for r in interrupted if r in problems),
        "runs_with_problems": len(problems),
        "problems_by_category": dict(categories),
        "stuck_runs": sorted(r for r, found in problems.items()
                             if any(c == "stuck" for c, _ in found)),
        "problem_runs": sorted(problems),
        "problem_details": details,
    }


def log_errors(paths: Iterable[Path]) -> dict[str, Any]:
    """ERROR/CRITICAL/Traceback lines in the processes' logs: counts and a few distinct ones."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        process = path.stem.split("-")[0]
        for line in lines:
            if "ERROR" in line or "CRITICAL" in line or line.startswith("Traceback"):
                counts[process] += 1
                seen = examples.setdefault(process, [])
                short = line[:300]
                if short not in seen and len(seen) < 8:
                    seen.append(short)
    return {"lines": dict(counts), "examples": examples}


# --- the soak ------------------------------------------------------------------------------------


@dataclass
class Soak:
    """The moving parts of one soak, run on one event loop."""

    plan: Plan
    cluster: SoakCluster
    upstream: Upstream
    dsn: str
    database: str
    options: RunOptions
    outcomes: list[Outcome] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0

    async def traffic(self, client: Client, index: int, mix: Iterator[tuple[str, str]],
                      until: float) -> None:
        while time.perf_counter() < until:
            kind, mode = next(mix)
            self.outcomes.append(await client.run(index, kind, mode))

    async def killer(self, until: float) -> None:
        number = 0
        while True:
            number += 1
            at = self.started + number * self.plan.kill_every
            if at >= until:
                return
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            await self.kill_victim()

    async def kill_victim(self) -> None:
        victim = self.cluster.victim
        assert victim is not None and victim.owner is not None
        held = await asyncio.to_thread(self._held, victim.owner)
        killed_at = time.perf_counter() - self.started
        victim.signal(signal.SIGKILL)
        returncode = await asyncio.to_thread(victim.wait_exit, 10)
        restart = time.perf_counter()
        fresh = await asyncio.to_thread(self.cluster.replace_victim)
        self.kills.append({
            "t": round(killed_at, 2), "pid": victim.pid,
            "returncode": returncode, "runs_held": len(held), "held": held,
            "restart_seconds": round(time.perf_counter() - restart, 2), "new_pid": fresh.pid,
        })

    def _held(self, owner: str) -> list[str]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT id FROM runs WHERE lease_owner = %s", (owner,))
            return [row[0] for row in rows.fetchall()]

    async def sample(self, sampler: Sampler, stop: asyncio.Event, task: Any) -> None:
        while True:
            sample = await asyncio.to_thread(sampler.take, len(self.outcomes))
            self.options.progress.update(task, completed=min(sample["t"], self.plan.seconds))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.plan.sample_every)
            if stop.is_set():
                return

    async def drained(self, deadline: float) -> float:
        """Wait until no run is unfinished (or ``deadline``); how long it took."""
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            left = await asyncio.to_thread(self._unfinished)
            if left == 0:
                break
            await asyncio.sleep(1.0)
        return time.perf_counter() - started

    def _unfinished(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM runs WHERE status NOT IN "
                               "('completed', 'failed', 'cancelled', 'expired', 'incomplete')"
                               ).fetchone()
            return int(row[0]) if row else 0

    async def main(self, assistants: Mapping[str, str]) -> dict[str, Any]:
        plan = self.plan
        limits = client_limits(2 * plan.clients)
        assert self.cluster.api is not None
        async with httpx.AsyncClient(base_url=self.cluster.api.url, headers=HEADERS,
                                     timeout=httpx.Timeout(60.0, connect=10.0),
                                     limits=limits) as http:
            client = Client(http, assistants, plan)
            sampler = Sampler(self.cluster, self.upstream, self.dsn, self.database,
                              time.perf_counter())
            task = self.options.progress.add_task("soak", total=plan.seconds)
            stop = asyncio.Event()
            cpu_before = self._cpu()
            self.started = sampler.started
            until = self.started + plan.seconds
            try:
                sampling = asyncio.create_task(self.sample(sampler, stop, task))
                killing = asyncio.create_task(self.killer(until))
                mix = itertools.cycle(MIX)
                clients = [asyncio.create_task(self.traffic(client, i, mix, until))
                           for i in range(plan.clients)]
                await killing
                await asyncio.sleep(max(0.0, until - time.perf_counter()))
                traffic_end = time.perf_counter()
                cpu_after = self._cpu()
                drain_deadline = until + plan.drain_seconds
                _, pending = await asyncio.wait(
                    clients, timeout=max(1.0, drain_deadline - time.perf_counter()))
                for late in pending:
                    late.cancel()
                clients_done = time.perf_counter()
                drain = await self.drained(drain_deadline)
                stop.set()
                await sampling
            finally:
                stop.set()
                self.options.progress.remove_task(task)
                sampler.close()
            return {
                "traffic_seconds": round(traffic_end - self.started, 2),
                "clients_finished_after_seconds": round(clients_done - traffic_end, 2),
                "drain_seconds": round(clients_done - traffic_end + drain, 2),
                "clients_cancelled": len(pending),
                "client_errors": dict(client.errors.most_common()),
                "samples": sampler.samples,
                "cpu": _cpu_usage(cpu_before, cpu_after),
            }

    def _cpu(self) -> dict[str, Any]:
        cluster = self.cluster
        assert cluster.api is not None and cluster.api.process is not None
        assert cluster.survivor is not None
        busy, total = machine_ticks()
        return {"wall": time.perf_counter(), "machine": (busy, total),
                "api": process_cpu_seconds(cluster.api.process.pid),
                "worker_1": process_cpu_seconds(cluster.survivor.pid),
                "upstream": process_cpu_seconds(self.upstream.pid)}


def _cpu_usage(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    wall = after["wall"] - before["wall"]
    ticks = after["machine"][1] - before["machine"][1]
    busy = (after["machine"][0] - before["machine"][0]) / ticks if ticks else None
    cores = {name: round((after[name] - before[name]) / wall, 3)
             for name in ("api", "worker_1", "upstream")}
    return {"window_seconds": round(wall, 1), "cores": cores,
            "machine_busy_cores": None if busy is None else round(busy * (os.cpu_count() or 1), 3)}


# --- summaries -----------------------------------------------------------------------------------


def throughput(outcomes: Sequence[Outcome], started: float,
               seconds: float) -> dict[str, Any]:
    done = [o for o in outcomes if o.status == "completed"]
    per_minute: Counter[int] = Counter(int((o.ended - started) // 60) for o in done)
    minutes = [per_minute.get(m, 0) for m in range(max(1, int(seconds // 60)))]
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[f"{outcome.kind}/{outcome.mode}"].append(outcome)
    scenarios: dict[str, Any] = {}
    for name, group in sorted(groups.items()):
        completed = [o for o in group if o.status == "completed"]
        scenarios[name] = {
            "runs": len(group), "completed": len(completed),
            "other": dict(Counter(str(o.status) for o in group if o.status != "completed")),
            "total": summarize([o.seconds for o in completed]) if completed else None,
        }
    return {
        "client_runs": len(outcomes), "completed": len(done),
        "completed_per_second": round(len(done) / seconds, 3) if seconds else None,
        "completed_per_minute": minutes if seconds >= 60 else None,
        "scenarios": scenarios,
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def tables(payload: Mapping[str, Any]) -> list[Table]:
    verdict = payload["verification"]
    plan = payload["parameters"]
    flow = payload["throughput"]
    head = Table("", "value", title=f"Soak: {plan['seconds']:g} s of traffic, "
                                    f"{plan['clients']} clients, a worker killed every "
                                    f"{plan['kill_every']:g} s")
    head.add_row("runs (database)", str(verdict["runs_in_database"]))
    head.add_row("completed runs/s", _fmt(flow["completed_per_second"], 2))
    head.add_row("kills (runs held by the victim)",
                 f"{len(payload['kills'])} ({sum(k['runs_held'] for k in payload['kills'])})")
    head.add_row("interrupted runs completed",
                 f"{verdict['interrupted_runs_completed']} / {verdict['interrupted_runs']}")
    head.add_row("runs not terminal (stuck)", str(len(verdict["stuck_runs"])))
    head.add_row("runs with problems", str(verdict["runs_with_problems"]))
    head.add_row("problems by category", json.dumps(verdict["problems_by_category"]))
    head.add_row("client errors", json.dumps(payload["client_errors"])[:300])
    head.add_row("log error lines", json.dumps(payload["log_errors"]["lines"]))
    scenarios = Table("scenario", "runs", "completed", "other", "p50 s", "p99 s", "max s",
                      title="Runs by scenario (client side)")
    for name, seen in flow["scenarios"].items():
        total = seen["total"] or {}
        scenarios.add_row(name, str(seen["runs"]), str(seen["completed"]),
                          json.dumps(seen["other"]) if seen["other"] else "",
                          *(_fmt(total[k] / 1000, 2) if k in total else "-"
                            for k in ("p50_ms", "p99_ms", "max_ms")))
    memory = Table("process", "start", "after warm-up", "end", "max", "slope MiB/h",
                   "growth after warm-up", "flat", title="Resident memory (MiB)")
    for name in ("api", "worker_1", "upstream", "sandbox_rss_mib"):
        seen = payload["memory"].get(name)
        if seen:
            memory.add_row(name, _fmt(seen["start_mib"]), _fmt(seen["after_warmup_mib"]),
                           _fmt(seen["end_mib"]), _fmt(seen["max_mib"]),
                           _fmt(seen["slope_mib_per_hour"]), _fmt(seen["growth_after_warmup_mib"]),
                           str(seen["flat"]))
    lives = payload["memory"]["worker_2_incarnations"]
    if lives:
        last = [life["last_mib"] for life in lives]
        memory.add_row(f"worker_2 ({len(lives)} lives)", _fmt(lives[0]["first_mib"]), "",
                       f"{min(last):.0f}-{max(last):.0f}",
                       _fmt(max(life["max_mib"] for life in lives)),
                       _fmt(payload["memory"]["worker_2_last_mib_slope_per_hour"]), "", "")
    return [head, scenarios, memory]


# --- running it ----------------------------------------------------------------------------------


def measure(plan: Plan, options: RunOptions) -> dict[str, Any]:
    """Run the soak of ``plan``; print its tables; the result payload."""
    source = source_fingerprint()
    keep = [False]
    directory = Path(tempfile.mkdtemp(prefix="runstep-bench-soak-"))
    try:
        with ExitStack() as stack:
            upstream = stack.enter_context(scripted_upstream())
            stack.callback(lambda: upstream.process.stdout and upstream.process.stdout.close())
            url = stack.enter_context(postgres_database(migrate_with_cli, keep))
            database = sa.make_url(url).database
            assert database is not None
            env = {"RUNSTEP_DATA_DIR": str(directory), "RUNSTEP_DATABASE_URL": url,
                   "RUNSTEP_API_KEYS": API_KEY, "RUNSTEP_UPSTREAM_BASE_URL": upstream.base_url,
                   "RUNSTEP_UPSTREAM_API_KEY": "sk-upstream",
                   "RUNSTEP_EVENT_RETENTION_SECONDS": "604800",
                   "RUNSTEP_CODE_INTERPRETER_PYTHON": str(sandbox_python()),
                   "RUNSTEP_CODE_INTERPRETER_UID_BASE": str(UID_BASE), **plan.settings}
            cluster = SoakCluster(directory, env, plan.worker_concurrency)
            stack.callback(cluster.stop)
            cluster.start()
            soak = Soak(plan, cluster, upstream, _dsn(url), database, options)
            load_before = list(os.getloadavg())
            payload = event_loop_runner()(_soak(soak))
            verification = verify(soak.dsn, payload["assistants"], soak.outcomes,
                                  [run for kill in soak.kills for run in kill["held"]])
            cluster.stop()
            sandboxes_left, _ = sandbox_processes()
            sessions = directory / "code-interpreter" / "sessions"
            payload.update({
                "throughput": throughput(soak.outcomes, soak.started, plan.seconds),
                "kills": soak.kills,
                "verification": verification,
                "memory": memory_report(payload["samples"], soak.kills, plan.memory_warmup),
                "log_errors": log_errors(cluster.logs()),
                "after_stop": {"sandbox_processes_left": sandboxes_left,
                               "session_directories_left": len(list(sessions.iterdir()))
                               if sessions.is_dir() else 0},
                "load_average_before": load_before,
            })
            if verification["runs_with_problems"] and plan.keep_on_problems:
                keep[0] = True
                payload["kept"] = {"database": database, "logs": str(directory)}
                options.console.print(f"[red]problems found: database {database} and logs in "
                                      f"{directory} are kept[/red]")
    finally:
        if not keep[0]:
            shutil.rmtree(directory, ignore_errors=True)
    result = {
        "parameters": {
            **{k: v for k, v in plan.__dict__.items() if k != "settings"},
            "settings": dict(plan.settings), "mix": [f"{k}/{m}" for k, m in MIX],
            "answer_chunks": ANSWER_CHUNKS, "topology": "1 API (serve --no-worker), 2 workers "
            "(the second killed with SIGKILL every kill_every s and restarted), fresh "
            "PostgreSQL database, scripted upstream in its own process"},
        "runstep_source": {"at_start": source, "at_end": source_fingerprint()},
        "notes": NOTES,
        **payload,
    }
    for table in tables(result):
        options.console.print(table)
    return result


async def _soak(soak: Soak) -> dict[str, Any]:
    assert soak.cluster.api is not None
    async with httpx.AsyncClient(base_url=soak.cluster.api.url, headers=HEADERS,
                                 timeout=60.0) as http:
        assistants, store = await setup(http, soak.upstream, soak.plan)
    result = await soak.main(assistants)
    return {"assistants": assistants, "vector_store": store, **result}


def run(options: RunOptions) -> dict[str, Any]:
    """``python -m bench soak``: ``BENCH_SOAK_SECONDS`` of traffic (default 1200), or about 30 s
    with ``--quick``."""
    return measure(quick_plan() if options.quick else full_plan(), options)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.soak [--seconds N] [--quick]``: run it and write
    ``bench/results/soak.json`` (as ``python -m bench soak`` does)."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--seconds", type=float, help="traffic window (default 1200)")
    parser.add_argument("--quick", action="store_true", help="about 30 s")
    args = parser.parse_args(argv)
    plan = quick_plan() if args.quick else full_plan(args.seconds)
    if args.quick and args.seconds:
        plan = replace(plan, seconds=args.seconds)
    console = Console()
    with Progress(console=console) as progress:
        options = RunOptions(quick=args.quick, progress=progress, console=console)
        started = time.perf_counter()
        payload = measure(plan, options)
    path = write_result("soak", {"quick": args.quick,
                                 "duration_seconds": round(time.perf_counter() - started, 3),
                                 **payload})
    console.print(f"soak -> {path}")
    return 1 if payload["verification"]["runs_with_problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
