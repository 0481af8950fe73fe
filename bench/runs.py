"""Overhead: streamed runs through Runstep versus the same completions fetched straight from
the upstream, and versus the floor (a minimal FastAPI/uvicorn relay, ``bench.floor``), at
concurrency 1, 16, 64 and 256.

Processes on one machine: the scripted Chat Completions upstream (20 text chunks a reply, no
delay), a ``runstep serve`` on SQLite pointed at it (default settings, but no per-key rate
limit), the floor pointed at it too, and this load generator (one ``httpx.AsyncClient`` per
target, N concurrent clients). Three scenarios:

* ``text``: the model answers at once (one completion);
* ``function``: the model calls a function (``get_weather``); the client answers with
  ``submit_tool_outputs`` (streamed) and the model answers (two completions, two requests from
  the client);
* ``file_search``: the model calls ``file_search`` on a vector store of one small file
  (ingested beforehand with the local embedding model); Runstep embeds the query, searches
  and sends the passages back to the model (two completions, one request from the client).

The upstream picks each scenario's replies by a ``[[script:NAME]]`` marker: in the user
message (the call), in the function's output or in the file_search query (the answer). At
each concurrency level, each mode:

* ``direct``: each client streams the chat completion(s) Runstep sends for one run (captured
  from the upstream's request log after a probe run) straight from the upstream, one after the
  other; time to the first content chunk and to the last ``data: [DONE]``;
* ``floor`` (``text`` only): each client streams a run from the floor, which relays the same
  completion; time to the first ``thread.message.delta`` and to ``event: done``;
* ``runstep``: each client loops ``POST /v1/threads/{id}/runs`` with ``stream: true`` (and
  ``submit_tool_outputs`` when the run requires action), reading each SSE stream to ``event:
  done``; time to the first ``thread.message.delta`` (TTFT) and to the last ``event: done``;
  a run counts as completed when ``thread.run.completed`` arrived. While first warming up
  each client reuses its own thread; after that each run gets a fresh one-message thread made
  beforehand (see ``bench.load.Threads``), so every measured run asks the same of the upstream
  as ``direct`` does.

Each phase warms up first (twice: a drained warm-up gives the rate the fresh-thread pool is
sized by, then the clients run on without a pause into the window), then is measured over a
fixed window (``--quick``: a fixed number of runs, after drained warm-up runs). Throughput
counts the runs that ended inside the window; latencies are of the runs that started in it.
The CPU time of the server, the floor, the upstream and this process (from ``/proc/PID/stat``
and ``os.times``) and of the whole machine (``/proc/stat``) is taken at both ends of the
window, with the resident memory of each server at the end; ``bottleneck`` names what limited
each phase. The load machinery is ``bench.load``, shared with ``distributed`` and ``streams``.
"""

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.table import Table

from bench.common import RunOptions, running_server
from bench.floor import Floor, floor_server
from bench.load import (
    CHUNKS,
    CLIENT_TIMEOUT,
    DISTURBED_CORES,
    FRESH_THREADS,
    MIB,
    Budget,
    Meter,
    Sample,
    Scripts,
    Threads,
    Upstream,
    Workload,
    auth_headers,
    bottleneck,
    calls_on,
    client_limits,
    direct_turns,
    event_loop_runner,
    function_run,
    least_disturbed,
    measure,
    memory_bytes,
    new_thread,
    ok,
    process_meter,
    runstep_run,
    scripted_upstream,
    summarize_phase,
)
from tests.support.server import ServerProcess

API_KEY = "sk-bench-runs"
LEVELS = (1, 16, 64, 256)
QUICK_LEVELS = (1, 4)
WARMUP_SECONDS = 2.0
SECONDS = 10.0
QUICK_WARMUP_RUNS = 4
QUICK_RUNS = 20
MAX_ATTEMPTS = 2  # a phase disturbed by other load is measured again, up to this many times
QUIET_WAIT_SECONDS = 10.0  # before a phase, wait this long at most for a quiet machine
MODES = ("direct", "floor", "runstep")
SERVER_ENV = {"RUNSTEP_REQUESTS_PER_MINUTE": "0"}  # measure runs, not the rate limiter
HEADERS = auth_headers(API_KEY)
ANSWER = {"text": ["Echo:"] + [" sunny"] * (CHUNKS - 1)}
FUNCTION_OUTPUT = "18 degrees and sunny [[script:runs_function_answer]]"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
SCRIPTS = Scripts({
    "runs_function_call": [{"tool_calls": [{"name": "get_weather",
                                            "arguments": {"city": "Paris"}}]}],
    "runs_function_answer": [ANSWER],
    "runs_file_search_call": [{"tool_calls": [{"name": "file_search", "arguments": {
        "queries": ["the else clause of a for loop [[script:runs_file_search_answer]]"]}}]}],
    "runs_file_search_answer": [ANSWER],
})
FILE_TOPICS = ("for", "while", "break", "continue")  # pydoc_data.topics: the searched file
TARGETS = {
    "added_ttft_p50_ms": ("<", 10.0),
    "added_ttft_p99_ms": ("<", 50.0),
    "runs_per_second_c16": (">=", 100.0),
}
NOTES = [
    "All processes (scripted upstream, runstep serve, the floor and this load generator) share "
    "the same machine; the load generator's own CPU use (client cores) competes with the "
    "server and the upstream, so absolute throughput is a lower bound of what the server alone "
    "could do. Compare the cores each process used against the machine's cpu_available.",
    "At high concurrency the direct phase is bounded by this load generator (its client cores "
    "near 1): direct numbers there are a floor for the upstream, not its limit.",
    "direct replays, verbatim, the chat completion request bodies Runstep sent the upstream "
    "for one run (captured from the upstream's request log), so both modes ask for the same "
    "replies; for function and file_search, two completions one after the other.",
    "added_* = runstep (or floor) percentile - direct percentile at the same concurrency (a "
    "difference of percentiles, not a percentile of paired differences). At concurrency above "
    "the server's RUNSTEP_WORKER_CONCURRENCY (64 by default) runs wait in the queue for a "
    "slot: added time there is mostly queueing behind a saturated server.",
    "function: added time includes the client's submit_tool_outputs round trip (a second "
    "request and stream) that calling the upstream directly does not have; file_search: it "
    "includes embedding the query with the local model and the search (one file, a few "
    "chunks: see the file_search benchmark for search at scale).",
    "The first (drained) warm-up reuses one thread per client; after it every run, measured "
    "or not, gets a fresh thread holding one user message (made beforehand, a pool sized from "
    "the first warm-up's rate), because on a reused thread every run adds messages and the "
    "next run's context grows with it (and in the tool scenarios the upstream would answer "
    "at once): that would measure thread length, not per-run overhead.",
    "Throughput counts runs that ended inside the measured window; latency summaries are of "
    "runs that started inside it.",
    "cpu.other_processes_cores = machine busy cores (from /proc/stat) minus the processes "
    "above: anything else running on the machine meanwhile; when it is well above zero the "
    "numbers of that phase are disturbed.",
    "bottleneck: a process at >= 0.85 cores is limited by its one event loop; a machine at "
    ">= 90% of its cores is saturated as a whole.",
    "The machine is shared: before each phase the benchmark waits (up to "
    f"{QUIET_WAIT_SECONDS:g} s) for it to be quiet, and a phase during which other processes "
    f"used more than {DISTURBED_CORES:g} cores is measured again (up to {MAX_ATTEMPTS} "
    "attempts; the least disturbed is kept, `disturbed` says whether it still was; "
    "`attempts` lists them all).",
]


# --- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    user_message: str
    tools: tuple[dict[str, Any], ...] = ()
    turns: int = 1  # chat completions per run
    floor: bool = False  # measured against the floor too


SCENARIOS = {
    "text": Scenario("text", "text answer", "Hello from the runs benchmark: please say "
                     "something short.", floor=True),
    "function": Scenario("function", "one function call (submit_tool_outputs)",
                         "What is the weather in Paris? [[script:runs_function_call]]",
                         (WEATHER_TOOL,), turns=2),
    "file_search": Scenario("file_search", "one file_search call",
                            "What does else do after a for loop? "
                            "[[script:runs_file_search_call]]",
                            ({"type": "file_search"},), turns=2),
}


@dataclass(frozen=True)
class Plan:
    scenarios: tuple[str, ...]
    levels: tuple[int, ...]
    budget: Budget
    floor: bool = True
    attempts: int = 1  # a phase disturbed by other load is measured again, up to this many times
    quiet_seconds: float = 0.0  # before a phase, wait this long at most for a quiet machine


def full_plan() -> Plan:
    return Plan(tuple(SCENARIOS), LEVELS, Budget(warmup_seconds=WARMUP_SECONDS, seconds=SECONDS),
                attempts=MAX_ATTEMPTS, quiet_seconds=QUIET_WAIT_SECONDS)


def quick_plan() -> Plan:
    return Plan(tuple(SCENARIOS), QUICK_LEVELS,
                Budget(warmup_runs=QUICK_WARMUP_RUNS, runs=QUICK_RUNS))


# --- setting a scenario up ----------------------------------------------------------------------


def searched_text() -> str:
    """The file the file_search scenario searches: a few language reference topics."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in FILE_TOPICS)


async def _vector_store(client: httpx.AsyncClient) -> str:
    """A vector store of one file, ingested (the server's worker embeds it)."""
    files = {"file": ("loops.txt", searched_text().encode(), "text/plain")}
    file_id = ok(await client.post("/v1/files", data={"purpose": "assistants"},
                                   files=files))["id"]
    store_id: str = ok(await client.post("/v1/vector_stores", json={
        "name": "bench-runs", "file_ids": [file_id]}))["id"]
    for _ in range(1200):
        counts = ok(await client.get(f"/v1/vector_stores/{store_id}"))["file_counts"]
        if counts["in_progress"] == 0:
            if counts["completed"] != 1:
                raise RuntimeError(f"the searched file was not ingested: {counts}")
            return store_id
        await asyncio.sleep(0.1)
    raise TimeoutError("the searched file is still being ingested after 120 s")


async def _assistant(client: httpx.AsyncClient, scenario: Scenario) -> str:
    body: dict[str, Any] = {"model": "scripted-model", "name": f"bench-runs-{scenario.key}",
                            "instructions": "Be brief.", "tools": list(scenario.tools)}
    if scenario.key == "file_search":
        body["tool_resources"] = {"file_search": {
            "vector_store_ids": [await _vector_store(client)]}}
    assistant_id: str = ok(await client.post("/v1/assistants", json=body))["id"]
    return assistant_id


def _runstep_call(scenario: Scenario, client: httpx.AsyncClient,
                  assistant_id: str) -> Callable[[str], Awaitable[Sample]]:
    if scenario.key == "function":
        return lambda thread: function_run(client, thread, assistant_id, FUNCTION_OUTPUT)
    return lambda thread: runstep_run(client, thread, assistant_id)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Targets:
    """The processes measured and the clients talking to them."""

    server: ServerProcess
    upstream: Upstream
    floor: Floor | None
    runstep: httpx.AsyncClient
    direct: httpx.AsyncClient
    control: httpx.AsyncClient
    floor_client: httpx.AsyncClient | None
    meter: Meter = field(init=False)

    def __post_init__(self) -> None:
        pids = {"server": self.server.process.pid if self.server.process else 0,
                "upstream": self.upstream.pid}
        if self.floor is not None:
            pids["floor"] = self.floor.pid
        self.meter = process_meter(pids)


async def _probe(targets: Targets, scenario: Scenario,
                 call: Callable[[str], Awaitable[Sample]]) -> list[dict[str, Any]]:
    """One run on a fresh thread: check the path works; the chat completion bodies it sent."""
    await SCRIPTS.reset(targets.control)
    probe = await call(await new_thread(targets.runstep, scenario.user_message))
    if not probe.completed:
        raise RuntimeError(f"{scenario.key}: a probe run did not complete: {probe.error}")
    recorded = ok(await targets.control.get("/_control/requests"))
    bodies = [request["body"] for request in recorded]
    if len(bodies) != scenario.turns:
        raise RuntimeError(f"{scenario.key}: a probe run made {len(bodies)} upstream requests, "
                           f"not {scenario.turns}")
    return bodies


async def _measure_scenario(targets: Targets, scenario: Scenario, plan: Plan,
                            options: RunOptions) -> dict[str, Any]:
    assistant_id = await _assistant(targets.runstep, scenario)
    call = _runstep_call(scenario, targets.runstep, assistant_id)
    bodies = await _probe(targets, scenario, call)
    floor = targets.floor_client if scenario.floor and plan.floor else None
    if floor is not None:
        ok(await floor.put("/_floor/chat", json=bodies[0]))
    modes = [mode for mode in MODES if mode != "floor" or floor is not None]
    levels: dict[str, Any] = {}
    for concurrency in plan.levels:
        level: dict[str, Any] = {}
        for mode in modes:
            label = f"runs: {scenario.key}, {mode} at concurrency {concurrency}"

            async def attempt(mode: str = mode, concurrency: int = concurrency,
                              label: str = label) -> dict[str, Any]:
                threads = None
                if mode == "direct":
                    workload = Workload(lambda i: direct_turns(targets.direct, bodies),
                                        lambda i: direct_turns(targets.direct, bodies))
                elif mode == "floor":
                    assert floor is not None
                    workload = Workload(lambda i: runstep_run(floor, "thread", "asst"),
                                        lambda i: runstep_run(floor, "thread", "asst"))
                else:
                    threads = await Threads.make(targets.runstep, concurrency,
                                                 scenario.user_message)
                    workload = calls_on(threads, call)
                await SCRIPTS.reset(targets.control)
                task = options.progress.add_task(label, total=plan.budget.progress_total)
                try:
                    phase = await measure(concurrency, workload, plan.budget, targets.meter,
                                          lambda task=task: options.progress.advance(task))
                finally:
                    options.progress.remove_task(task)
                summary = summarize_phase(phase)
                summary["bottleneck"] = bottleneck(summary["cpu"])
                if threads is not None:
                    summary["threads"] = threads.describe()
                return summary

            level[mode] = await least_disturbed(
                attempt, plan.attempts, plan.quiet_seconds,
                lambda text: options.console.print(f"[yellow]{text}[/yellow]"), label)
        level["added"] = {mode: added(level[mode], level["direct"])
                          for mode in ("floor", "runstep") if mode in level}
        if "floor" in level and level["floor"]["per_second"]:
            level["runstep_throughput_ratio_to_floor"] = (level["runstep"]["per_second"]
                                                          / level["floor"]["per_second"])
        levels[str(concurrency)] = level
    return {"label": scenario.label, "user_message": scenario.user_message,
            "tools": list(scenario.tools), "chat_request_bodies": bodies, "levels": levels}


def added(mine: dict[str, Any], direct: dict[str, Any]) -> dict[str, float | None]:
    """What ``mine`` adds to ``direct``: differences of their percentiles (ms)."""
    result: dict[str, float | None] = {}
    for metric in ("ttft", "total"):
        for p in ("p50_ms", "p99_ms"):
            a, b = mine[metric], direct[metric]
            result[f"{metric}_{p}"] = None if a is None or b is None else float(a[p] - b[p])
    return result


async def _measure(server: ServerProcess, upstream: Upstream, floor: Floor | None, plan: Plan,
                   options: RunOptions) -> dict[str, Any]:
    top = max(plan.levels)
    runstep = httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=CLIENT_TIMEOUT,
                                limits=client_limits(top))
    direct = httpx.AsyncClient(base_url=upstream.base_url, timeout=CLIENT_TIMEOUT,
                               headers={"Authorization": "Bearer sk-upstream"},
                               limits=client_limits(top))
    control = httpx.AsyncClient(base_url=upstream.root, timeout=30.0)
    floor_client = (None if floor is None else httpx.AsyncClient(
        base_url=floor.url, timeout=CLIENT_TIMEOUT, limits=client_limits(top)))
    async with runstep, direct, control:
        try:
            targets = Targets(server, upstream, floor, runstep, direct, control, floor_client)
            return {key: await _measure_scenario(targets, SCENARIOS[key], plan, options)
                    for key in plan.scenarios}
        finally:
            if floor_client is not None:
                await floor_client.aclose()


# --- reporting ----------------------------------------------------------------------------------


def comparison(scenarios: dict[str, Any]) -> dict[str, Any]:
    """The targets, pass or fail (never asserted): added TTFT of a text run at concurrency 1,
    and completed text runs per second at concurrency 16."""
    text = scenarios.get("text", {}).get("levels", {})
    one = text.get("1", {}).get("added", {}).get("runstep", {})
    measured: dict[str, float | None] = {
        "added_ttft_p50_ms": one.get("ttft_p50_ms"),
        "added_ttft_p99_ms": one.get("ttft_p99_ms"),
        "runs_per_second_c16": text["16"]["runstep"]["per_second"] if "16" in text else None,
    }
    targets = {}
    for name, (op, bound) in TARGETS.items():
        value = measured[name]
        passed = None if value is None else (value < bound if op == "<" else value >= bound)
        targets[name] = {"target": f"{op} {bound:g}", "value": value, "pass": passed}
    return {"targets": targets}


def _ms(summary: dict[str, Any] | None, key: str) -> str:
    return "-" if summary is None else f"{summary[key]:.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cores(cpu: dict[str, Any], name: str) -> str:
    return f"{cpu[name]['cores']:.2f}" if name in cpu else "-"


def _tables(scenarios: dict[str, Any], compared: dict[str, Any], budget: Budget) -> list[Table]:
    latency = Table("scenario", "conc.", "mode", "done/s", "TTFT p50", "TTFT p99", "total p50",
                    "total p99", "n", "not done",
                    title=f"Streamed runs vs direct upstream and the floor: {CHUNKS} chunks a "
                          f"reply, {budget.window()}; ms")
    extra = Table("scenario", "conc.", "mode", "+TTFT p50", "+TTFT p99", "+total p50",
                  "+total p99", title="Added to calling the upstream directly; ms")
    cpu = Table("scenario", "conc.", "mode", "server", "floor", "upstream", "client", "other",
                "server MiB", "limit",
                title="CPU over the window (cores = CPU s / wall s); resident memory of the "
                      "server at its end; what limited it (see bottleneck in the result)")
    for key, scenario in scenarios.items():
        for concurrency, level in scenario["levels"].items():
            for mode in MODES:
                if mode not in level:
                    continue
                s = level[mode]
                usage = s["cpu"]
                latency.add_row(key, concurrency,
                                mode + (" [red](disturbed)[/red]" if s.get("disturbed") else ""),
                                _num(s["per_second"]),
                                _ms(s["ttft"], "p50_ms"), _ms(s["ttft"], "p99_ms"),
                                _ms(s["total"], "p50_ms"), _ms(s["total"], "p99_ms"),
                                str(s["total"]["n"] if s["total"] else 0), str(s["not_completed"]))
                target = {"floor": "floor", "runstep": "server"}.get(mode)
                cpu.add_row(key, concurrency, mode, *(_cores(usage, name) for name in (
                    "server", "floor", "upstream", "client")),
                    f"{usage.get('other_processes_cores', 0.0):.2f}",
                    _num(usage[target]["rss_mib"], 0) if target else "-",
                    s["bottleneck"]["limit"] or "-")
                if mode in level["added"]:
                    a = level["added"][mode]
                    extra.add_row(key, concurrency, mode, *(_num(a[f"{m}_{p}"]) for m in (
                        "ttft", "total") for p in ("p50_ms", "p99_ms")))
            latency.add_section()
            cpu.add_section()
        extra.add_section()
    targets = Table("metric", "value (ms or /s)", "target", "result",
                    title="Targets, text runs (reported, not asserted)")
    verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "n/a"}
    for name, target in compared["targets"].items():
        targets.add_row(name, _num(target["value"], 2), target["target"], verdict[target["pass"]])
    return [latency, extra, cpu, targets]


def measure_plan(plan: Plan, options: RunOptions) -> dict[str, Any]:
    """Measure ``plan``; print tables; return the result payload."""
    with scripted_upstream() as upstream:
        env = {"RUNSTEP_UPSTREAM_BASE_URL": upstream.base_url,
               "RUNSTEP_UPSTREAM_API_KEY": "sk-upstream", **SERVER_ENV}
        with (running_server("sqlite", [API_KEY], env=env) as server,
              floor_server(upstream.base_url) if plan.floor else nullcontext() as floor):
            idle = {"server": _idle_rss(server.process.pid if server.process else 0)}
            if floor is not None:
                idle["floor"] = _idle_rss(floor.pid)
            scenarios = event_loop_runner()(_measure(server, upstream, floor, plan, options))
    compared = comparison(scenarios)
    for table in _tables(scenarios, compared, plan.budget):
        options.console.print(table)
    for key, scenario in scenarios.items():
        for concurrency, level in scenario["levels"].items():
            options.console.print(f"{key} at concurrency {concurrency}, runstep: "
                                  f"{level['runstep']['bottleneck']['text']}")
    return {
        "parameters": {
            "store": "sqlite", "server_env": SERVER_ENV, "chunks_per_reply": CHUNKS,
            "chunk_delay_seconds": 0, "scenarios": list(plan.scenarios),
            "concurrency_levels": list(plan.levels), **plan.budget.describe(),
            "client": "one httpx.AsyncClient per target, keep-alive, SSE read line by line"
                      f"{' on uvloop' if event_loop_runner() is not asyncio.run else ''}",
            "threads": "first warm-up: one thread per client, reused; then: "
                       + ("a fresh one-message thread per run" if FRESH_THREADS
                          else "the same thread per client, reused"),
            "floor": "bench.floor: FastAPI StreamingResponse relaying the upstream"
                     if plan.floor else None,
            "searched_file_bytes": len(searched_text().encode()),
            "attempts": plan.attempts, "quiet_wait_seconds": plan.quiet_seconds,
            "disturbed_other_cores": DISTURBED_CORES,
            "targets": {k: f"{o} {b:g}" for k, (o, b) in TARGETS.items()},
        },
        "notes": NOTES,
        "idle_memory_mib": idle,
        "comparison": compared,
        "scenarios": scenarios,
    }


def _idle_rss(pid: int) -> float:
    return memory_bytes(pid)["rss"] / MIB


def run(options: RunOptions) -> dict[str, Any]:
    """The full plan (``--quick``: two low levels, a fixed number of runs)."""
    return measure_plan(quick_plan() if options.quick else full_plan(), options)


def tiny_plan() -> Plan:
    """For the smoke test: every scenario and mode, a handful of runs."""
    return Plan(tuple(SCENARIOS), (1, 2), Budget(warmup_runs=1, runs=4))
