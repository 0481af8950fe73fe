"""Streams held, event relay and memory: how many open streaming runs one Runstep process
holds, how fast one run streams, and what memory that costs, against the floor (a minimal
FastAPI/uvicorn relay of the same upstream, ``bench.floor``).

For each target (``runstep``: one ``runstep serve`` on SQLite, its worker in process, so that
one process both executes the runs and serves their streams; ``floor``), on a scripted upstream
of its own in its own process:

1. **Idle memory**: the target's resident memory (``VmRSS``) after a few warm-up runs.
2. **Event relay**: one streamed run whose upstream reply is ``RELAY_CHUNKS`` text chunks sent
   as fast as it can; deltas per second = the ``thread.message.delta`` events received between
   the first and the last, over that time. Warm-up runs, then repeated runs (the median is
   reported). The same reply read straight from the upstream (``direct``) is the upstream's
   (and this client's) own limit.
3. **Streams held**: the upstream sends each stream's reply one chunk per second
   (``HOLD_TOKENS`` chunks, longer than the benchmark). Streams are opened
   (``POST /v1/threads/runs``, ``stream: true``, a new thread each; ``OPENERS`` requests in
   flight at once) in steps up to ``STEPS``; at each step, once every stream has had its
   first token (or ``FIRST_TOKEN_TIMEOUT``), after ``SETTLE_SECONDS``, a window of
   ``WINDOW_SECONDS``: the gaps between consecutive deltas of each stream that arrive in it
   (inter-token latency: 1 s of the upstream's pacing plus what the path adds; the target is
   on what it adds), streams holding (first token seen, not ended) and stalled (no token in
   the window), CPU of every process over the window, and the target's resident memory at
   its end: memory per stream = (that - idle) / streams holding, and the marginal cost
   between steps. Runstep runs with ``RUNSTEP_MAX_STREAMS``, ``RUNSTEP_MAX_STREAMS_PER_KEY``
   and ``RUNSTEP_WORKER_CONCURRENCY`` raised above the top step, the open-file limit is raised
   for every process, and the per-key rate limit is off.

The streams are read by this one load generator (httpx, uvloop); its CPU is reported.
"""

import asyncio
import bisect
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.table import Table

from bench.common import RunOptions, raise_file_limit, running_server, summarize
from bench.floor import floor_server
from bench.load import (
    CLIENT_TIMEOUT,
    MIB,
    QUIET_CORES,
    Meter,
    Scripts,
    auth_headers,
    bottleneck,
    client_limits,
    cpu_usage,
    event_loop_runner,
    memory_bytes,
    ok,
    process_meter,
    read_run_stream,
    scripted_upstream,
    wait_for_quiet,
)

API_KEY = "sk-bench-streams"
HEADERS = auth_headers(API_KEY)
TARGETS = ("runstep", "floor")
HELD_MESSAGE = "Hold this stream open. [[script:streams_held]]"
RELAY_MESSAGE = "Stream as fast as you can. [[script:streams_relay]]"
PACING_SECONDS = 1.0  # the upstream's delay between a held stream's chunks
WARMUP_RUNS = 5
OPENERS = 32
FIRST_TOKEN_TIMEOUT = 30.0
FILE_LIMIT = 65536
GOALS = {"streams": 2000, "kib_per_stream": 50.0, "added_inter_token_p99_ms": 100.0}
NOTES = [
    "runstep is one `runstep serve` process on SQLite: it executes the runs (its in-process "
    "worker, holding one upstream connection per run) and serves their streams, so memory "
    "and CPU per stream include executing the run (recording each token in the run's event "
    "log). In the distributed mode the API process only relays.",
    "Inter-token latency is the gap between consecutive thread.message.delta events of one "
    "stream at this client; the upstream paces them 1 s apart, so added = gap - 1000 ms "
    "(percentiles of the gaps, minus 1000). The floor's figures include the upstream's and "
    "this client's own jitter under the same load.",
    "Memory per stream = (resident memory at the end of a step's window - idle resident "
    "memory) / streams holding; marginal = the change between two steps over the change in "
    "streams. Resident memory includes everything the process allocated for the streams, "
    "runs and connections (a client connection and an upstream connection each).",
    "Runstep's upstream client is the openai SDK's, whose default connection pool allows "
    "1,000 connections to one upstream: streams beyond that wait for a connection (their "
    "first token does not come until another stream ends), which shows as streams not "
    "holding.",
    "Event relay: deltas per second over one run from its first delta to its last, the "
    "median of the repeats; runstep persists every delta in the run's event log (batched).",
]


@dataclass(frozen=True)
class Plan:
    steps: tuple[int, ...] = (250, 500, 1000, 1500, 2000)
    hold_tokens: int = 600  # each held stream's reply: one chunk a second, for 10 minutes
    settle_seconds: float = 3.0
    window_seconds: float = 10.0
    relay_chunks: int = 10_000
    relay_runs: int = 5
    relay_warmup: int = 1
    targets: tuple[str, ...] = TARGETS
    quiet_seconds: float = 20.0  # before relay and before holding: wait for a quiet machine


def full_plan() -> Plan:
    return Plan()


def quick_plan() -> Plan:
    return Plan(steps=(20, 50), hold_tokens=40, settle_seconds=1.0, window_seconds=3.0,
                relay_chunks=1000, relay_runs=2, relay_warmup=1, quiet_seconds=0.0)


def tiny_plan() -> Plan:
    """For the smoke test."""
    return Plan(steps=(4,), hold_tokens=10, settle_seconds=0.5, window_seconds=1.5,
                relay_chunks=200, relay_runs=1, relay_warmup=1, quiet_seconds=0.0)


def scripts(plan: Plan) -> Scripts:
    return Scripts({
        "streams_held": [{"text": ["Echo:"] + [" tok"] * (plan.hold_tokens - 1),
                          "chunk_delay": PACING_SECONDS}],
        "streams_relay": [{"text": ["Echo:"] + [" tok"] * (plan.relay_chunks - 1)}],
    })


# --- a target ------------------------------------------------------------------------------------


@dataclass
class Target:
    """A server streaming runs (Runstep or the floor) and the upstream it relays."""

    name: str
    url: str
    pid: int
    upstream_pid: int
    upstream_url: str  # .../v1
    control: httpx.AsyncClient
    client: httpx.AsyncClient = field(init=False)
    run_body: dict[str, Any] = field(default_factory=dict)
    meter: Meter = field(init=False)

    def __post_init__(self) -> None:
        self.meter = process_meter({self.name: self.pid, "upstream": self.upstream_pid})

    def rss_mib(self) -> float:
        return memory_bytes(self.pid)["rss"] / MIB

    async def use(self, message: str) -> None:
        """Make the next runs ask the upstream with ``message`` (and its script marker)."""
        if self.name == "floor":
            ok(await self.client.put("/_floor/chat", json={
                "model": "scripted-model", "messages": [{"role": "user", "content": message}]}))
        self.run_body = {"assistant_id": self.run_body["assistant_id"], "stream": True,
                         "thread": {"messages": [{"role": "user", "content": message}]}}


@contextmanager
def target_processes(name: str, plan: Plan) -> Iterator[tuple[str, int, int, str]]:
    """The upstream and the target; yields the target's URL and pid, the upstream's pid and
    base URL."""
    with scripted_upstream() as upstream:
        if name == "floor":
            with floor_server(upstream.base_url) as floor:
                yield floor.url, floor.pid, upstream.pid, upstream.base_url
            return
        room = str(max(plan.steps) + 64)
        env = {"RUNSTEP_UPSTREAM_BASE_URL": upstream.base_url,
               "RUNSTEP_UPSTREAM_API_KEY": "sk-upstream", "RUNSTEP_REQUESTS_PER_MINUTE": "0",
               "RUNSTEP_MAX_STREAMS": room, "RUNSTEP_MAX_STREAMS_PER_KEY": room,
               "RUNSTEP_WORKER_CONCURRENCY": room,
               "RUNSTEP_SHUTDOWN_SECONDS": "1"}
        with running_server("sqlite", [API_KEY], env=env) as server:
            assert server.process is not None
            yield server.url, server.process.pid, upstream.pid, upstream.base_url


async def _one_run(target: Target) -> tuple[float, Any]:
    started = time.perf_counter()
    async with target.client.stream("POST", "/v1/threads/runs", json=target.run_body) as response:
        seen = await read_run_stream(response)
    if not seen.completed:
        raise RuntimeError(f"{target.name}: a run did not complete: {seen.error}")
    return started, seen


# --- event relay ---------------------------------------------------------------------------------


async def _direct_relay(target: Target, message: str) -> dict[str, Any]:
    """The relay reply read straight from the upstream: content chunks and their times."""
    body = {"model": "scripted-model", "stream": True,
            "messages": [{"role": "user", "content": message}]}
    first = last = None
    chunks = 0
    async with httpx.AsyncClient(base_url=target.upstream_url, timeout=CLIENT_TIMEOUT) as client:
        started = time.perf_counter()
        async with client.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"content":"' in line \
                        and '"content":""' not in line:
                    now = time.perf_counter()
                    first = first if first is not None else now
                    last, chunks = now, chunks + 1
        done = time.perf_counter()
    assert first is not None and last is not None
    return _relay_result(chunks, first, last, started, done)


def _relay_result(deltas: int, first: float, last: float, started: float,
                  done: float) -> dict[str, Any]:
    return {"deltas": deltas, "seconds": last - first, "total_seconds": done - started,
            "deltas_per_second": (deltas - 1) / (last - first) if last > first else None}


async def relay(target: Target, plan: Plan, tick: Callable[[], None],
                direct: bool) -> dict[str, Any]:
    """Warm-up runs, then repeated runs of the relay reply; their deltas per second."""
    await target.use(RELAY_MESSAGE)
    results: dict[str, Any] = {}
    modes = ["direct", target.name] if direct else [target.name]
    for mode in modes:
        repeats: list[dict[str, Any]] = []
        for attempt in range(plan.relay_warmup + plan.relay_runs):
            if mode == "direct":
                result = await _direct_relay(target, RELAY_MESSAGE)
            else:
                started, seen = await _one_run(target)
                result = _relay_result(seen.deltas, seen.first_delta, seen.last_delta, started,
                                       seen.done)
            if result["deltas"] != plan.relay_chunks:
                raise RuntimeError(f"{mode}: {result['deltas']} deltas of a "
                                   f"{plan.relay_chunks}-chunk reply")
            if attempt >= plan.relay_warmup:
                repeats.append(result)
            tick()
        rates = [r["deltas_per_second"] for r in repeats if r["deltas_per_second"]]
        results[mode] = {"median_deltas_per_second": statistics.median(rates),
                         "min": min(rates), "max": max(rates), "runs": repeats}
    return results


# --- streams held --------------------------------------------------------------------------------


@dataclass
class Held:
    """One held stream, as this client sees it."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    first: asyncio.Event = field(default_factory=asyncio.Event)
    arrivals: list[float] = field(default_factory=list)
    error: str | None = None
    ended: float | None = None

    def arrived(self, now: float) -> None:
        self.arrivals.append(now)
        self.first.set()

    @property
    def holding(self) -> bool:
        return bool(self.arrivals) and self.ended is None


async def _hold(target: Target, stream: Held) -> None:
    try:
        async with target.client.stream("POST", "/v1/threads/runs",
                                        json=target.run_body) as response:
            stream.opened.set()
            seen = await read_run_stream(response, stream.arrived)
            stream.error = seen.error
    except httpx.HTTPError as exc:
        stream.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        stream.ended = time.perf_counter()
        stream.opened.set()
        stream.first.set()


async def _open(target: Target, count: int, streams: list[Held], tasks: list[asyncio.Task[None]],
                tick: Callable[[], None]) -> float:
    """Open ``count`` more streams, ``OPENERS`` requests in flight at once; then wait for
    their first tokens. The seconds it took to open them (response headers received)."""
    gate = asyncio.Semaphore(OPENERS)
    fresh: list[Held] = []

    async def one() -> None:
        async with gate:
            stream = Held()
            fresh.append(stream)
            tasks.append(asyncio.create_task(_hold(target, stream)))
            await stream.opened.wait()
            tick()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    opened = time.perf_counter() - started
    streams.extend(fresh)
    waiting = [asyncio.create_task(s.first.wait()) for s in fresh]
    await asyncio.wait(waiting, timeout=FIRST_TOKEN_TIMEOUT)
    for task in waiting:
        task.cancel()
    return opened


def window_gaps(streams: list[Held], start: float, end: float) -> tuple[list[float], int]:
    """The gaps between consecutive deltas of each stream whose later delta arrived in
    ``(start, end]``; and how many holding streams had none arrive in it (stalled)."""
    gaps: list[float] = []
    stalled = 0
    for stream in streams:
        arrivals = stream.arrivals
        index = max(1, bisect.bisect_right(arrivals, start))
        found = 0
        while index < len(arrivals) and arrivals[index] <= end:
            gaps.append(arrivals[index] - arrivals[index - 1])
            index += 1
            found += 1
        if found == 0 and (stream.ended is None or stream.ended > end) and stream.arrivals:
            stalled += 1
    return gaps, stalled


async def held(target: Target, plan: Plan, idle_mib: float, options: RunOptions,
               ) -> list[dict[str, Any]]:
    """Open streams step by step; measure each step's window."""
    await target.use(HELD_MESSAGE)
    streams: list[Held] = []
    tasks: list[asyncio.Task[None]] = []
    steps: list[dict[str, Any]] = []
    task = options.progress.add_task(f"streams: {target.name} holding", total=max(plan.steps))
    try:
        for step in plan.steps:
            opened = await _open(target, step - len(streams), streams, tasks,
                                 lambda: options.progress.advance(task))
            await asyncio.sleep(plan.settle_seconds)
            before = target.meter()
            await asyncio.sleep(plan.window_seconds)
            after = target.meter()
            gaps, stalled = window_gaps(streams, before.wall, after.wall)
            holding = sum(1 for s in streams if s.holding)
            cpu = cpu_usage(before, after, 0)
            rss = cpu[target.name]["rss_mib"]
            summary = summarize(gaps) if gaps else None
            errors: dict[str, int] = {}
            for stream in streams:
                if stream.error is not None:
                    errors[stream.error[:120]] = errors.get(stream.error[:120], 0) + 1
            result: dict[str, Any] = {
                "streams_opened": len(streams), "streams_holding": holding,
                "streams_stalled": stalled, "never_started": sum(1 for s in streams
                                                                 if not s.arrivals),
                "ended_or_failed": sum(1 for s in streams if s.ended is not None),
                "errors": errors, "open_seconds": opened,
                "inter_token": summary,
                "added_inter_token_p50_ms": None if summary is None
                else summary["p50_ms"] - 1000 * PACING_SECONDS,
                "added_inter_token_p99_ms": None if summary is None
                else summary["p99_ms"] - 1000 * PACING_SECONDS,
                "rss_mib": rss,
                "kib_per_stream": (rss - idle_mib) * 1024 / holding if holding else None,
                "cpu": cpu, "bottleneck": bottleneck(cpu),
            }
            if steps and holding != steps[-1]["streams_holding"]:
                result["marginal_kib_per_stream"] = ((rss - steps[-1]["rss_mib"]) * 1024
                                                     / (holding - steps[-1]["streams_holding"]))
            steps.append(result)
    finally:
        options.progress.remove_task(task)
        for pending in tasks:
            pending.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return steps


def goals_met(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The most streams held at a step meeting every goal (all streams holding, none stalled,
    added inter-token p99 and memory per stream under their bounds)."""
    met = [s for s in steps if s["streams_holding"] == s["streams_opened"]
           and s["streams_stalled"] == 0 and s["added_inter_token_p99_ms"] is not None
           and s["added_inter_token_p99_ms"] < GOALS["added_inter_token_p99_ms"]
           and s["kib_per_stream"] is not None
           and s["kib_per_stream"] < GOALS["kib_per_stream"]]
    most = max((s["streams_holding"] for s in met), default=0)
    return {"most_streams_meeting_goals": most, "goal_streams": GOALS["streams"],
            "pass": most >= GOALS["streams"]}


# --- the benchmark -------------------------------------------------------------------------------


async def _measure_target(name: str, url: str, pid: int, upstream: tuple[int, str], plan: Plan,
                          options: RunOptions) -> dict[str, Any]:
    top = max(plan.steps)
    limits = client_limits(top)
    control = httpx.AsyncClient(base_url=upstream[1].removesuffix("/v1"), timeout=30.0)
    target = Target(name, url, pid, upstream[0], upstream[1], control)
    target.client = httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits,
                                      timeout=httpx.Timeout(CLIENT_TIMEOUT, pool=None))
    async with control, target.client:
        await scripts(plan).reset(control)
        assistant_id = "asst_floor"
        if name == "runstep":
            assistant_id = ok(await target.client.post("/v1/assistants", json={
                "model": "scripted-model", "name": "bench-streams"}))["id"]
        target.run_body = {"assistant_id": assistant_id}
        await target.use("Warm up, please.")
        for _ in range(WARMUP_RUNS):
            await _one_run(target)
        await asyncio.sleep(1.0)
        idle = target.rss_mib()
        quiet = {"before_relay": await wait_for_quiet(QUIET_CORES, plan.quiet_seconds)}
        total = (plan.relay_warmup + plan.relay_runs) * (2 if name == TARGETS[0] else 1)
        task = options.progress.add_task(f"streams: {name} relay", total=total)
        try:
            relayed = await relay(target, plan, lambda: options.progress.advance(task),
                                  direct=name == TARGETS[0])
        finally:
            options.progress.remove_task(task)
        await scripts(plan).reset(control)
        quiet["before_held"] = await wait_for_quiet(QUIET_CORES, plan.quiet_seconds)
        steps = await held(target, plan, idle, options)
    return {"idle_rss_mib": idle, "relay": relayed, "held": steps, "goals": goals_met(steps),
            "quiet_wait": quiet}


def measure(plan: Plan, options: RunOptions) -> dict[str, Any]:
    limit = raise_file_limit(FILE_LIMIT)
    results: dict[str, Any] = {}
    for name in plan.targets:
        with target_processes(name, plan) as (url, pid, upstream_pid, upstream_url):
            results[name] = event_loop_runner()(
                _measure_target(name, url, pid, (upstream_pid, upstream_url), plan, options))
    for table in _tables(results, plan):
        options.console.print(table)
    for name, result in results.items():
        for step in result["held"]:
            options.console.print(f"{name} holding {step['streams_holding']}: "
                                  f"{step['bottleneck']['text']}")
    return {
        "parameters": {
            "steps": list(plan.steps), "pacing_seconds": PACING_SECONDS,
            "hold_tokens": plan.hold_tokens, "openers": OPENERS,
            "first_token_timeout_seconds": FIRST_TOKEN_TIMEOUT,
            "settle_seconds": plan.settle_seconds, "window_seconds": plan.window_seconds,
            "relay_chunks": plan.relay_chunks, "relay_runs": plan.relay_runs,
            "relay_warmup": plan.relay_warmup, "warmup_runs": WARMUP_RUNS,
            "file_limit": limit, "goals": GOALS, "quiet_wait_seconds": plan.quiet_seconds,
            "runstep_env": {"RUNSTEP_MAX_STREAMS": max(plan.steps) + 64,
                            "RUNSTEP_MAX_STREAMS_PER_KEY": max(plan.steps) + 64,
                            "RUNSTEP_WORKER_CONCURRENCY": max(plan.steps) + 64,
                            "RUNSTEP_REQUESTS_PER_MINUTE": 0, "store": "sqlite"},
        },
        "notes": NOTES,
        "targets": results,
    }


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _tables(results: dict[str, Any], plan: Plan) -> list[Table]:
    relay_table = Table("target", "deltas/s (median)", "min", "max", "idle MiB",
                        title=f"Event relay: one run, {plan.relay_chunks} chunks as fast as the "
                              f"upstream sends them ({plan.relay_runs} runs)")
    held_table = Table("target", "opened", "holding", "stalled", "gap p50", "gap p99",
                       "+p99", "MiB", "KiB/stream", "marginal", "cores", "upstream", "client",
                       "limit",
                       title=f"Streams held: one token a second each; {plan.window_seconds:g} s "
                             "window; gaps between deltas, ms")
    for name, result in results.items():
        for mode, relayed in result["relay"].items():
            relay_table.add_row(mode, _num(relayed["median_deltas_per_second"], 0),
                                _num(relayed["min"], 0), _num(relayed["max"], 0),
                                _num(result["idle_rss_mib"]) if mode == name else "-")
        for step in result["held"]:
            gaps = step["inter_token"] or {}
            cpu = step["cpu"]
            held_table.add_row(name, str(step["streams_opened"]), str(step["streams_holding"]),
                               str(step["streams_stalled"]), _num(gaps.get("p50_ms")),
                               _num(gaps.get("p99_ms")), _num(step["added_inter_token_p99_ms"]),
                               _num(step["rss_mib"]), _num(step["kib_per_stream"]),
                               _num(step.get("marginal_kib_per_stream")),
                               _num(cpu[name]["cores"], 2), _num(cpu["upstream"]["cores"], 2),
                               _num(cpu["client"]["cores"], 2),
                               step["bottleneck"]["limit"] or "-")
        held_table.add_section()
    return [relay_table, held_table]


def run(options: RunOptions) -> dict[str, Any]:
    return measure(quick_plan() if options.quick else full_plan(), options)
