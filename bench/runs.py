"""Streamed runs through Runstep versus the same completions fetched straight from the upstream.

Three processes on one machine: the scripted Chat Completions upstream (20 text chunks a reply,
no delay), a ``runstep serve`` on SQLite pointed at it, and this load generator (one
``httpx.AsyncClient``, N concurrent clients). At each concurrency level:

* ``direct``: each client streams the chat completion Runstep sends for a run (captured from
  the upstream's request log) straight from the upstream; time to the first content chunk and
  to ``data: [DONE]``.
* ``runstep``: each client loops ``POST /v1/threads/{id}/runs`` with ``stream: true``, reading
  the SSE stream until ``event: done``; time to the first ``thread.message.delta`` (TTFT) and
  to ``event: done``; a run counts as completed when ``thread.run.completed`` arrived. While
  first warming up each client reuses its own thread; after that each run gets a fresh
  one-message thread made beforehand (see ``Threads``), so every measured run asks the same of
  the upstream as ``direct`` does.

Each phase warms up first (twice: a drained warm-up gives the rate the fresh-thread pool is
sized by, then the clients run on without a pause into the window), then is measured over a
fixed window (``--quick``: a fixed number of runs, after drained warm-up runs). Throughput
counts the runs that ended inside the window; latencies are of the runs that started in it.
The CPU time of the server, the upstream and this process (from ``/proc/PID/stat`` and
``os.times``) and of the whole machine (``/proc/stat``) is taken at both ends of the window.
The load machinery (upstream process, streamed runs, warm-up and window, CPU accounting, the
fresh-thread pool) is ``bench.load``, shared with the ``distributed`` benchmark.
"""

import asyncio
import json
import time
from typing import Any

import httpx
from rich.table import Table

from bench.common import RunOptions, running_server
from bench.load import (
    CHUNKS,
    CLIENT_TIMEOUT,
    FRESH_THREADS,
    Budget,
    Sample,
    Threads,
    Upstream,
    Workload,
    auth_headers,
    client_limits,
    event_loop_runner,
    measure,
    new_thread,
    ok,
    process_meter,
    runs_on,
    runstep_run,
    scripted_upstream,
    summarize_phase,
    transport_errors,
)
from tests.support.server import ServerProcess

API_KEY = "sk-bench-runs"
LEVELS = (1, 16, 64)
QUICK_LEVELS = (1, 4)
WARMUP_SECONDS = 2.0
SECONDS = 10.0
QUICK_WARMUP_RUNS = 4
QUICK_RUNS = 20
ASSISTANT_BODY = {"model": "scripted-model", "name": "bench-runs", "instructions": "Be brief."}
USER_MESSAGE = "Hello from the runs benchmark: please say something short."
SERVER_ENV = {"RUNSTEP_REQUESTS_PER_MINUTE": "0"}  # measure runs, not the rate limiter
HEADERS = auth_headers(API_KEY)
TARGETS = {
    "added_ttft_p50_ms": ("<", 10.0),
    "added_ttft_p99_ms": ("<", 50.0),
    "runs_per_second_c16": (">=", 100.0),
}
NOTES = [
    "All three processes (scripted upstream, runstep serve, and this load generator) share "
    "the same machine; the load generator's own CPU use (client_cpu) competes with the server "
    "and the upstream, so absolute throughput is a lower bound of what the server alone could "
    "do. Compare the cpu cores each process used against the machine's cpu_available.",
    "At concurrency 16 and 64 the direct phase is bounded by this load generator (its "
    "client cores near 1): direct numbers there are a floor for the upstream, not its limit.",
    "direct replays, verbatim, the chat completion request body Runstep sent the upstream for "
    "a run (captured from the upstream's request log), so both modes ask for the same reply.",
    "added_* = runstep percentile - direct percentile at concurrency 1 (a difference of "
    "percentiles, not a percentile of paired differences).",
    "The first (drained) warm-up reuses one thread per client; after it every run, measured "
    "or not, gets a fresh thread holding one user message (made beforehand, a pool sized from "
    "the first warm-up's rate), because on a reused thread every run "
    "adds a message and the next run's context (database reads, the SDK's request "
    "transformation, the upstream prompt) grows with it: at ~20 runs/s a thread reaches "
    "hundreds of messages within the window, which would measure thread length, not "
    "per-run overhead, and would no longer match the direct baseline's request.",
    "Throughput counts runs that ended inside the measured window; latency summaries are of "
    "runs that started inside it.",
    "cpu.other_processes_cores = machine busy cores (from /proc/stat) minus the three "
    "processes above: anything else running on the machine meanwhile; when it is well above "
    "zero the numbers of that phase are disturbed.",
    "The server runs with RUNSTEP_REQUESTS_PER_MINUTE=0 (no per-key rate limit) so the "
    "benchmark measures the run path, not the limiter.",
]


# --- the direct baseline ------------------------------------------------------------------------


@transport_errors
async def direct_completion(client: httpx.AsyncClient, body: dict[str, Any]) -> Sample:
    """Stream one chat completion from the upstream, reading it to ``data: [DONE]``."""
    started = time.perf_counter()
    ttft: float | None = None
    ended: float | None = None
    async with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            text = (await response.aread())[:300].decode(errors="replace")
            return Sample(started, time.perf_counter(), None, False,
                          f"HTTP {response.status_code}: {text}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                ended = time.perf_counter()
            elif ttft is None:
                chunk = json.loads(data)
                if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
                    ttft = time.perf_counter() - started
    if ended is None:
        return Sample(started, time.perf_counter(), ttft, False, "stream ended without [DONE]")
    return Sample(started, ended, ttft, ttft is not None)


# --- the benchmark ------------------------------------------------------------------------------


async def _run_levels(server: ServerProcess, upstream: Upstream, levels: tuple[int, ...],
                      budget: Budget, options: RunOptions) -> dict[str, Any]:
    meter = process_meter({"server": server.process.pid if server.process else 0,
                           "upstream": upstream.pid})
    top = max(levels)
    runstep = httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=CLIENT_TIMEOUT,
                                limits=client_limits(top))
    direct = httpx.AsyncClient(base_url=upstream.base_url, timeout=CLIENT_TIMEOUT,
                               headers={"Authorization": "Bearer sk-upstream"},
                               limits=client_limits(top))
    control = httpx.AsyncClient(base_url=upstream.root, timeout=30.0)
    async with runstep, direct, control:
        assistant_id: str = ok(await runstep.post("/v1/assistants", json=ASSISTANT_BODY))["id"]
        # One run on a fresh thread: check the path works, and capture what it asks upstream.
        ok(await control.post("/_control/reset"))
        probe = await runstep_run(runstep, await new_thread(runstep, USER_MESSAGE), assistant_id)
        if not probe.completed:
            raise RuntimeError(f"a probe run did not complete: {probe.error}")
        recorded = ok(await control.get("/_control/requests"))
        chat_body: dict[str, Any] = recorded[-1]["body"]

        results: dict[str, Any] = {}
        for concurrency in levels:
            threads = await Threads.make(runstep, concurrency, USER_MESSAGE)
            level: dict[str, Any] = {}
            workloads = {
                "direct": Workload(lambda i: direct_completion(direct, chat_body),
                                   lambda i: direct_completion(direct, chat_body)),
                "runstep": runs_on(runstep, threads, assistant_id),
            }
            for mode, workload in workloads.items():
                ok(await control.post("/_control/reset"))  # keep the upstream's log small
                task = options.progress.add_task(f"runs: {mode} at concurrency {concurrency}",
                                                 total=budget.progress_total)
                try:
                    phase = await measure(concurrency, workload, budget, meter,
                                          lambda task=task: options.progress.advance(task))
                finally:
                    options.progress.remove_task(task)
                level[mode] = summarize_phase(phase)
            level["runstep"]["threads"] = threads.describe()
            results[str(concurrency)] = level
        return {"chat_request_body": chat_body, "levels": results}


def _diff(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    if a is None or b is None:
        return None
    return float(a[key] - b[key])


def comparison(levels: dict[str, Any]) -> dict[str, Any]:
    """Added latency at concurrency 1 and the targets, pass or fail (never asserted)."""
    one = levels.get("1")
    added: dict[str, float | None] = {}
    if one is not None:
        for metric in ("ttft", "total"):
            for p in ("p50_ms", "p99_ms"):
                added[f"added_{metric}_{p}"] = _diff(one["runstep"][metric],
                                                     one["direct"][metric], p)
    measured: dict[str, float | None] = {
        "added_ttft_p50_ms": added.get("added_ttft_p50_ms"),
        "added_ttft_p99_ms": added.get("added_ttft_p99_ms"),
        "runs_per_second_c16": levels["16"]["runstep"]["per_second"] if "16" in levels else None,
    }
    targets = {}
    for name, (op, bound) in TARGETS.items():
        value = measured[name]
        passed = None if value is None else (value < bound if op == "<" else value >= bound)
        targets[name] = {"target": f"{op} {bound:g}", "value": value, "pass": passed}
    return {"added_at_concurrency_1": added, "targets": targets}


def _ms(summary: dict[str, Any] | None, key: str) -> str:
    return "-" if summary is None else f"{summary[key]:.1f}"


def _cores(cpu: dict[str, Any], name: str) -> str:
    return f"{cpu[name]['cores']:.2f}"


def _per_run(cpu: dict[str, Any], name: str) -> str:
    value = cpu[name]["cpu_ms_per_run"]
    return "-" if value is None else f"{value:.1f}"


def _tables(levels: dict[str, Any], compared: dict[str, Any], budget: Budget) -> list[Table]:
    window = budget.window()
    latency = Table("conc.", "mode", "done/s", "TTFT p50", "TTFT p99", "total p50", "total p99",
                    "n", "not done",
                    title=f"Streamed runs vs direct upstream: {CHUNKS} chunks a reply, {window}; "
                          "ms")
    cpu = Table("conc.", "mode", "server cores", "server ms/run", "upstream cores",
                "upstream ms/run", "client cores", "client ms/run", "other cores",
                title="CPU over the measured window (cores = CPU s / wall s; ms/run = CPU ms per "
                      "completed request)")
    for concurrency, level in levels.items():
        for mode in ("direct", "runstep"):
            s = level[mode]
            usage = s["cpu"]
            latency.add_row(concurrency, mode, f"{s['per_second']:.1f}", _ms(s["ttft"], "p50_ms"),
                            _ms(s["ttft"], "p99_ms"), _ms(s["total"], "p50_ms"),
                            _ms(s["total"], "p99_ms"), str(s["total"]["n"] if s["total"] else 0),
                            str(s["not_completed"]))
            cpu.add_row(concurrency, mode, *(
                cell for name in ("server", "upstream", "client")
                for cell in (_cores(usage, name), _per_run(usage, name))),
                f"{usage.get('other_processes_cores', 0.0):.2f}")
        latency.add_section()
        cpu.add_section()
    targets = Table("metric", "value (ms or /s)", "target", "result",
                    title="Added by Runstep at concurrency 1, and targets (reported, not asserted)")
    for name, value in compared["added_at_concurrency_1"].items():
        if name not in TARGETS:
            targets.add_row(name, "-" if value is None else f"{value:.2f}", "", "")
    for name, target in compared["targets"].items():
        value = target["value"]
        verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "n/a"}
        targets.add_row(name, "-" if value is None else f"{value:.2f}", target["target"],
                        verdict[target["pass"]])
    return [latency, cpu, targets]


def run(options: RunOptions) -> dict[str, Any]:
    """Measure every level in both modes; print tables; return the result payload."""
    if options.quick:
        levels, budget = QUICK_LEVELS, Budget(warmup_runs=QUICK_WARMUP_RUNS, runs=QUICK_RUNS)
    else:
        levels, budget = LEVELS, Budget(warmup_seconds=WARMUP_SECONDS, seconds=SECONDS)
    with scripted_upstream() as upstream:
        env = {"RUNSTEP_UPSTREAM_BASE_URL": upstream.base_url,
               "RUNSTEP_UPSTREAM_API_KEY": "sk-upstream", **SERVER_ENV}
        with running_server("sqlite", [API_KEY], env=env) as server:
            measured = event_loop_runner()(_run_levels(server, upstream, levels, budget, options))
    compared = comparison(measured["levels"])
    for table in _tables(measured["levels"], compared, budget):
        options.console.print(table)
    return {
        "parameters": {
            "store": "sqlite", "server_env": SERVER_ENV, "chunks_per_reply": CHUNKS,
            "chunk_delay_seconds": 0,
            "concurrency_levels": list(levels), **budget.describe(),
            "client": "one httpx.AsyncClient per target, keep-alive, SSE read line by line"
                      f"{' on uvloop' if event_loop_runner() is not asyncio.run else ''}",
            "threads": "first warm-up: one thread per client, reused; then: "
                       + ("a fresh one-message thread per run" if FRESH_THREADS
                          else "the same thread per client, reused"),
            "assistant": ASSISTANT_BODY,
            "user_message": USER_MESSAGE, "targets": {k: f"{o} {b:g}" for k, (o, b) in
                                                      TARGETS.items()},
        },
        "notes": NOTES,
        "chat_request_body": measured["chat_request_body"],
        "comparison": compared,
        "levels": measured["levels"],
    }
