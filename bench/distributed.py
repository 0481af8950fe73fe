"""Streamed runs in the distributed mode (PostgreSQL, API and worker processes apart) versus
the embedded mode (one ``runstep serve`` on SQLite executing runs in process).

Processes on one machine: the scripted Chat Completions upstream (20 text chunks a reply, no
delay), the Runstep processes of a topology, PostgreSQL (local, shared with whoever else uses
it) and this load generator (one ``httpx.AsyncClient``, N concurrent clients). Topologies, in
this order:

* ``embedded``: ``runstep serve`` on SQLite, its worker in process (the baseline);
* ``api_1_worker``: on a fresh PostgreSQL database (made here, migrated with
  ``runstep migrate``, dropped at the end), one ``runstep serve --no-worker`` API process and
  one ``runstep worker`` process;
* ``api_2_workers``: the same API process and database, plus a second worker process.

Each topology is measured at concurrency 1, 16, 64 and 256: TTFT at 1, completed runs/s at
each (throughput versus concurrency: where it saturates, and what limits it, named from the
CPU meters by ``bench.load.bottleneck``), with the machinery of the ``runs`` benchmark
(``bench.load``): every client loops streamed runs
(``POST /v1/threads/{id}/runs``, ``stream: true``) on fresh one-message threads, a drained
warm-up, a second warm-up straight into a fixed window; throughput counts runs that ended in
the window, latencies the runs that started in it. CPU is taken at both ends of the window for
the API process, each worker, the upstream, this load generator, PostgreSQL (the backends of
the benchmark's database, the shared postmaster and background processes, and other
databases' backends apart: see ``bench.load.PostgresCpu``) and the whole machine; what the
machine used beyond that is other people's load (the machine is shared). Before each phase the
benchmark waits (a while) for the machine to be quiet, and a phase disturbed by other load is
measured again (the least disturbed attempt is kept; every attempt is recorded).
"""

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from rich.table import Table

from bench.common import (
    RunOptions,
    migrate_with_cli,
    postgres_admin,
    postgres_database,
    source_fingerprint,
)
from bench.load import (
    CHUNKS,
    CLIENT_TIMEOUT,
    DISTURBED_CORES,
    QUIET_CORES,
    Budget,
    CpuSnapshot,
    Meter,
    PostgresCpu,
    Threads,
    Upstream,
    auth_headers,
    bottleneck,
    client_limits,
    event_loop_runner,
    least_disturbed,
    measure,
    new_thread,
    ok,
    other_cores,
    process_meter,
    runs_on,
    runstep_run,
    scripted_upstream,
    summarize_phase,
)
from tests.support import databases
from tests.support.processes import WorkerProcess
from tests.support.server import ServerProcess

API_KEY = "sk-bench-distributed"
HEADERS = auth_headers(API_KEY)
TTFT_CONCURRENCY = 1
RATE_CONCURRENCY = 64  # the throughput target's
LEVELS = (TTFT_CONCURRENCY, 16, RATE_CONCURRENCY, 256)
QUICK_LEVELS = (TTFT_CONCURRENCY, 4)
SATURATED = 0.9  # a topology saturates at the lowest concurrency reaching this much of its peak
WORKER_CONCURRENCY = 64  # runs each worker process executes at once (`runstep worker`'s default)
WARMUP_SECONDS = 2.0
SECONDS = 10.0
TTFT_SECONDS = 20.0  # longer at concurrency 1: its p99 needs samples
QUICK_WARMUP_RUNS = 2
QUICK_RUNS = 8
MAX_ATTEMPTS = 3  # a phase disturbed by other load is measured again, up to this many times
QUIET_WAIT_SECONDS = 30.0  # before a phase, wait this long at most for a quiet machine
ASSISTANT_BODY = {"model": "scripted-model", "name": "bench-distributed",
                  "instructions": "Be brief."}
USER_MESSAGE = "Hello from the distributed benchmark: please say something short."
API_ENV = {"RUNSTEP_REQUESTS_PER_MINUTE": "0"}  # the per-key limiter would cap the benchmark
TARGETS = {  # name: (topology, metric, op, bound)
    "runs_per_second (api + 1 worker)": ("api_1_worker", "runs_per_second", ">=", 150.0),
    "added_ttft_p99_ms (api + 1 worker)": ("api_1_worker", "added_ttft_p99_ms", "<", 100.0),
    "added_ttft_p99_ms (api + 2 workers)": ("api_2_workers", "added_ttft_p99_ms", "<", 100.0),
}
PG_STATS = ("xact_commit", "xact_rollback", "tup_fetched", "tup_inserted", "tup_updated",
            "tup_deleted", "sessions")
NOTES = [
    "Every process shares one 2-core machine: the upstream, the Runstep processes, PostgreSQL "
    "and this load generator compete for the same cores, so throughput is that of the whole "
    "set on this machine, not of Runstep alone. cpu.*.cores = CPU seconds / wall seconds over "
    "the window; a single Python process (API, worker) cannot use much more than 1 core.",
    "cpu.api is `runstep serve` (in the embedded topology it also executes the runs); "
    "cpu.worker_N are `runstep worker` processes. PostgreSQL (bench.load.PostgresCpu): "
    "cpu.postgres = backends connected to the benchmark's database; "
    "cpu.postgres_unattributed = what backends used after their last 50 ms sample before they "
    "exited, or backends shorter than that (counted as ours: mostly Runstep's pool overflow "
    "connections, see connections_opened_in_window); cpu.postgres_postmaster = the "
    "postmaster (it forks every new connection); cpu.postgres_background = WAL writer, "
    "checkpointer and other background processes (shared, but driven by our writes); "
    "cpu.postgres_other_databases = other databases' backends (other people's load, so "
    "part of other_processes_cores). Tables: pg (db) = postgres + postgres_unattributed, "
    "pg shared = postgres_postmaster + postgres_background.",
    "cpu.other_processes_cores = machine busy cores (/proc/stat) minus every process of ours "
    "listed; well above zero means the phase was disturbed. A phase above "
    f"{DISTURBED_CORES:g} cores is measured again (up to {MAX_ATTEMPTS} attempts; the least "
    "disturbed is kept; `attempts` lists them all), and before each attempt the benchmark "
    f"waits up to {QUIET_WAIT_SECONDS:g} s for the machine to be quiet.",
    "postgres_stats_per_run: pg_stat_database counters of the benchmark's database over the "
    "window, per completed run (PostgreSQL publishes them with up to ~1 s delay, so they are "
    "approximate); connections_opened_in_window counts new backends of that database seen "
    "by the sampler (pool churn).",
    "added_* = distributed percentile - embedded percentile at concurrency 1 (a difference "
    "of percentiles, not a percentile of paired differences).",
    "bottleneck (each level) and saturation (each topology): a process at >= 0.85 cores is "
    "limited by its one event loop, a machine at >= 90% of its cores is saturated as a whole "
    "(bench.load.bottleneck); a topology saturates at the lowest concurrency reaching "
    f"{SATURATED:.0%} of its peak runs/s.",
    "Every run after the first (drained) warm-up gets a fresh thread holding one user message "
    "(as in the runs benchmark), so all runs ask the upstream the same.",
    "With no delay between the upstream's chunks a worker receives a whole reply before its "
    "first delta flush is due (RUNSTEP_DELTA_FLUSH_SECONDS, 0.1 s by default), so in the "
    "distributed topologies the first delta reaches the API with the run's last commit (TTFT "
    "close to total), while the embedded server streams it from memory at once. An upstream "
    "whose tokens trickle in (not measured here) adds up to that flush interval to TTFT.",
    "All RUNSTEP_* settings are the defaults (worker concurrency 64, delta flush 0.1 s, "
    "SQLAlchemy pool 10 + 20 overflow per process), except that "
    "the API process runs with RUNSTEP_REQUESTS_PER_MINUTE=0: the per-key limiter (6000/min "
    "by default) would otherwise cap the benchmark at 100 requests/s.",
]


@dataclass(frozen=True)
class Topology:
    key: str
    label: str
    store: str
    workers: int  # `runstep worker` processes (0: the API process executes runs itself)


TOPOLOGIES = (
    Topology("embedded", "embedded: serve on SQLite, worker in process", "sqlite", 0),
    Topology("api_1_worker", "PostgreSQL: serve --no-worker + 1 worker process", "postgresql", 1),
    Topology("api_2_workers", "PostgreSQL: serve --no-worker + 2 worker processes",
             "postgresql", 2),
)


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The Runstep processes of a topology, sharing one store and one data directory."""

    directory: Path
    env: dict[str, str]
    api: ServerProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_api(self, worker_in_process: bool) -> ServerProcess:
        args = () if worker_in_process else ("--no-worker",)
        self.api = ServerProcess(env={**self.env, **API_ENV}, args=args,
                                 log_path=self.directory / "api.log")
        return self.api.start()

    def add_workers(self, count: int) -> None:
        """Start ``count`` more worker processes (in parallel) and wait until they are ready."""
        fresh = [WorkerProcess(env=self.env, args=("--concurrency", str(WORKER_CONCURRENCY)),
                               log_path=self.directory / f"worker-{len(self.workers) + i + 1}.log")
                 for i in range(count)]
        self.workers.extend(fresh)
        for worker in fresh:
            worker.spawn()
        for worker in fresh:
            worker.wait_ready()

    def pids(self) -> dict[str, int]:
        assert self.api is not None and self.api.process is not None
        named = {"api": self.api.process.pid}
        named.update({f"worker_{i + 1}": worker.pid for i, worker in enumerate(self.workers)})
        return named

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()


@contextmanager
def cluster(database_url: str | None, upstream: Upstream) -> Iterator[Cluster]:
    """Runstep processes (started by the caller) on ``database_url`` (None: SQLite in their
    data directory), stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="runstep-bench-distributed-") as tmp:
        url = database_url or databases.sqlite_url(Path(tmp))
        env = {"RUNSTEP_DATA_DIR": tmp, "RUNSTEP_DATABASE_URL": url,
               "RUNSTEP_API_KEYS": API_KEY, "RUNSTEP_UPSTREAM_BASE_URL": upstream.base_url,
               "RUNSTEP_UPSTREAM_API_KEY": "sk-upstream"}
        processes = Cluster(Path(tmp), env)
        try:
            yield processes
        finally:
            processes.stop()


# --- measuring ------------------------------------------------------------------------------------


class PostgresStats:
    """pg_stat_database counters of one database, read with a connection of its own."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.connection = postgres_admin()

    def read(self) -> dict[str, int]:
        columns = ", ".join(PG_STATS)
        row = self.connection.execute(
            f"SELECT {columns} FROM pg_stat_database WHERE datname = %s",
            (self.database,)).fetchone()
        return dict(zip(PG_STATS, row or (0,) * len(PG_STATS), strict=True))

    def close(self) -> None:
        self.connection.close()


class ClusterMeter:
    """CPU snapshots of a topology's processes (``bench.load.process_meter``), plus, on
    PostgreSQL, its CPU split (``PostgresCpu``), new connections and pg_stat_database counters
    at the same moments; ``measure`` takes exactly two snapshots, the window's ends."""

    def __init__(self, pids: dict[str, int], postgres: PostgresCpu | None = None,
                 stats: PostgresStats | None = None) -> None:
        self.postgres, self.stats = postgres, stats
        self._meter: Meter = (process_meter(pids, postgres.read) if postgres is not None
                              else process_meter(pids))
        self.marks: list[dict[str, int]] = []

    def __call__(self) -> CpuSnapshot:
        snapshot = self._meter()
        mark: dict[str, int] = {}
        if self.postgres is not None:
            mark["connections_opened"] = self.postgres.backends_started
        if self.stats is not None:
            mark.update(self.stats.read())
        self.marks.append(mark)
        return snapshot

    def window(self, completed: int) -> dict[str, Any]:
        """What the last two snapshots' extra counters say about the window."""
        if len(self.marks) < 2 or not self.marks[-1]:
            return {}
        before, after = self.marks[-2], self.marks[-1]
        report: dict[str, Any] = {}
        if "connections_opened" in after:
            report["connections_opened_in_window"] = (after["connections_opened"]
                                                      - before["connections_opened"])
        if self.stats is not None:
            report["postgres_stats_per_run"] = {
                name: (after[name] - before[name]) / completed if completed else None
                for name in PG_STATS}
        return report


@dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...]
    budgets: dict[int, Budget]
    attempts: int
    quiet_seconds: float


async def _measure_topology(topology: Topology, server: ServerProcess, meter: ClusterMeter,
                            upstream: Upstream, plan: Plan,
                            options: RunOptions) -> dict[str, Any]:
    client = httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=CLIENT_TIMEOUT,
                               limits=client_limits(max(plan.levels)))
    control = httpx.AsyncClient(base_url=upstream.root, timeout=30.0)
    async with client, control:
        assistant_id: str = ok(await client.post("/v1/assistants", json=ASSISTANT_BODY))["id"]
        probe = await runstep_run(client, await new_thread(client, USER_MESSAGE), assistant_id)
        if not probe.completed:
            raise RuntimeError(f"{topology.key}: a probe run did not complete: {probe.error}")
        levels: dict[str, Any] = {}
        for concurrency in plan.levels:
            budget = plan.budgets[concurrency]
            label = f"distributed: {topology.key} at concurrency {concurrency}"

            async def attempt(concurrency: int = concurrency, budget: Budget = budget,
                              label: str = label) -> dict[str, Any]:
                ok(await control.post("/_control/reset"))  # keep the upstream's log small
                threads = await Threads.make(client, concurrency, USER_MESSAGE)
                task = options.progress.add_task(label, total=budget.progress_total)
                try:
                    phase = await measure(concurrency, runs_on(client, threads, assistant_id),
                                          budget, meter,
                                          lambda task=task: options.progress.advance(task))
                finally:
                    options.progress.remove_task(task)
                summary = summarize_phase(phase)
                summary["bottleneck"] = bottleneck(summary["cpu"])
                summary.update(meter.window(summary["completed_in_window"]))
                summary["threads"] = threads.describe()
                return summary

            level = await least_disturbed(
                attempt, plan.attempts, plan.quiet_seconds,
                lambda text: options.console.print(f"[yellow]{text}[/yellow]"), label)
            levels[str(concurrency)] = level
        return levels


def _run_embedded(upstream: Upstream, plan: Plan, options: RunOptions) -> dict[str, Any]:
    topology = TOPOLOGIES[0]
    with cluster(None, upstream) as processes:
        server = processes.start_api(worker_in_process=True)
        meter = ClusterMeter({**processes.pids(), "upstream": upstream.pid})
        levels = event_loop_runner()(
            _measure_topology(topology, server, meter, upstream, plan, options))
    return {"label": topology.label, "store": "sqlite", "worker_processes": 0, "levels": levels}


def _run_distributed(upstream: Upstream, plan: Plan, options: RunOptions) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database(migrate=migrate_with_cli))
        name = sa.make_url(url).database
        assert name is not None
        stats = PostgresStats(name)
        stack.callback(stats.close)
        postmaster = _postmaster_pid()
        processes = stack.enter_context(cluster(url, upstream))
        server = processes.start_api(worker_in_process=False)
        for topology in TOPOLOGIES[1:]:
            processes.add_workers(topology.workers - len(processes.workers))
            with (PostgresCpu(postmaster, name) if postmaster else nullcontext()) as postgres:
                meter = ClusterMeter({**processes.pids(), "upstream": upstream.pid}, postgres,
                                     stats)
                levels = event_loop_runner()(
                    _measure_topology(topology, server, meter, upstream, plan, options))
            results[topology.key] = {"label": topology.label, "store": "postgresql",
                                     "worker_processes": topology.workers,
                                     "worker_concurrency": WORKER_CONCURRENCY, "levels": levels}
    return results


def _postmaster_pid() -> int | None:
    """The local PostgreSQL server's postmaster (the parent of a backend of ours); None if
    its processes cannot be seen (not on this machine): PostgreSQL's CPU is then not taken."""
    with postgres_admin() as admin:
        row = admin.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
    try:
        fields = Path(f"/proc/{row[0]}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1])  # ppid


# --- reporting ------------------------------------------------------------------------------------


def _pick(summary: dict[str, Any] | None, key: str) -> float | None:
    return None if summary is None else float(summary[key])


def _rate_level(plan: Plan) -> str:
    """Where the throughput target is read: concurrency 64, or the highest level measured."""
    return str(RATE_CONCURRENCY if RATE_CONCURRENCY in plan.levels else max(plan.levels))


def comparison(topologies: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Added latency of each distributed topology over the embedded one at concurrency 1, the
    throughput at concurrency 64, and the targets, pass or fail (never asserted)."""
    low, high = str(min(plan.levels)), _rate_level(plan)
    embedded = topologies["embedded"]["levels"][low]
    measured: dict[str, dict[str, float | None]] = {}
    for key, topology in topologies.items():
        mine = topology["levels"]
        values: dict[str, float | None] = {"runs_per_second": mine[high]["per_second"]}
        for metric in ("ttft", "total"):
            for p in ("p50_ms", "p99_ms"):
                values[f"{metric}_{p}"] = _pick(mine[low][metric], p)
                if key != "embedded":
                    ours, base = _pick(mine[low][metric], p), _pick(embedded[metric], p)
                    values[f"added_{metric}_{p}"] = (None if ours is None or base is None
                                                     else ours - base)
        measured[key] = values
    targets = {}
    for name, (key, metric, op, bound) in TARGETS.items():
        value = measured.get(key, {}).get(metric)
        passed = None if value is None else (value < bound if op == "<" else value >= bound)
        targets[name] = {"target": f"{op} {bound:g}", "value": value, "pass": passed,
                         "at_concurrency": int(high if metric == "runs_per_second" else low)}
    return {"ttft_concurrency": int(low), "rate_concurrency": int(high), "measured": measured,
            "targets": targets}


def saturation(topologies: dict[str, Any]) -> dict[str, Any]:
    """For each topology: its throughput at each concurrency, its peak, the lowest concurrency
    reaching ``SATURATED`` of that peak, and what limited it there and at its peak (from the
    CPU meters, ``bench.load.bottleneck``)."""
    found: dict[str, Any] = {}
    for key, topology in topologies.items():
        levels = topology["levels"]
        rates = {int(c): level["per_second"] or 0.0 for c, level in levels.items()}
        peak_at = max(rates, key=lambda c: rates[c])
        saturates_at = min(c for c, rate in rates.items() if rate >= SATURATED * rates[peak_at])
        found[key] = {
            "runs_per_second": {str(c): rate for c, rate in sorted(rates.items())},
            "peak_runs_per_second": rates[peak_at], "peak_at_concurrency": peak_at,
            "saturates_at_concurrency": saturates_at,
            "bottleneck_at_saturation": levels[str(saturates_at)]["bottleneck"],
            "bottleneck_at_peak": levels[str(peak_at)]["bottleneck"],
        }
    return found


CPU_COLUMNS = (  # label: the processes it adds up
    ("api", ("api",)), ("worker 1", ("worker_1",)), ("worker 2", ("worker_2",)),
    ("upstream", ("upstream",)), ("pg (db)", ("postgres", "postgres_unattributed")),
    ("pg shared", ("postgres_postmaster", "postgres_background")), ("client", ("client",)))


def _ms(summary: dict[str, Any] | None, key: str) -> str:
    return "-" if summary is None else f"{summary[key]:.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cpu_cell(cpu: dict[str, Any], names: tuple[str, ...]) -> str:
    usages = [cpu[name] for name in names if isinstance(cpu.get(name), dict)]
    if not usages:
        return "-"
    cores = sum(usage["cores"] or 0.0 for usage in usages)
    per_run = [usage["cpu_ms_per_run"] for usage in usages]
    return f"{cores:.2f}" + ("" if None in per_run else f"\n{sum(per_run):.1f} ms")


def _tables(topologies: dict[str, Any], compared: dict[str, Any], plan: Plan) -> list[Table]:
    windows = ", ".join(f"c{c}: {plan.budgets[c].window()}" for c in plan.levels)
    latency = Table("topology", "conc.", "done/s", "TTFT p50", "TTFT p99", "total p50",
                    "total p99", "n", "not done", "other cores", "attempt",
                    title=f"Streamed runs, {CHUNKS} chunks a reply ({windows}); ms")
    cpu = Table("topology", "conc.", *(label for label, _ in CPU_COLUMNS), "other", "machine",
                "conns /run", "xacts /run", "limit",
                title="CPU over the window: cores, and CPU ms per completed run; other = other "
                      "people's load; machine = busy cores of all; conns = new PostgreSQL "
                      "connections (sessions), xacts = transactions, committed or rolled back "
                      "(pg_stat_database)")
    for key, topology in topologies.items():
        for concurrency, s in topology["levels"].items():
            usage = s["cpu"]
            latency.add_row(key, concurrency, _num(s["per_second"]), _ms(s["ttft"], "p50_ms"),
                            _ms(s["ttft"], "p99_ms"), _ms(s["total"], "p50_ms"),
                            _ms(s["total"], "p99_ms"), str(s["total"]["n"] if s["total"] else 0),
                            str(s["not_completed"]), f"{other_cores(s):.2f}",
                            f"{s['attempt_kept']}/{len(s['attempts'])}"
                            + (" [red]disturbed[/red]" if s["disturbed"] else ""))
            busy = usage.get("machine_busy_fraction")
            stats = s.get("postgres_stats_per_run") or {}
            conns = stats.get("sessions")
            xacts = (None if stats.get("xact_commit") is None
                     else stats["xact_commit"] + stats["xact_rollback"])
            cpu.add_row(key, concurrency, *(_cpu_cell(usage, names) for _, names in CPU_COLUMNS),
                        f"{other_cores(s):.2f}",
                        "-" if busy is None else f"{busy * (os.cpu_count() or 1):.2f}",
                        _num(conns, 2),
                        _num(xacts), s["bottleneck"]["limit"] or "-")
        latency.add_section()
        cpu.add_section()
    added = Table("topology", "TTFT p50", "TTFT p99", "total p50", "total p99",
                  title=f"Added at concurrency {compared['ttft_concurrency']} vs embedded; ms")
    for key, values in compared["measured"].items():
        if key != "embedded":
            added.add_row(key, *(_num(values[f"added_{m}_{p}"]) for m in ("ttft", "total")
                                 for p in ("p50_ms", "p99_ms")))
    targets = Table("target", "conc.", "value (/s or ms)", "bound", "result",
                    title="Targets (reported, not asserted)")
    verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "n/a"}
    for name, target in compared["targets"].items():
        targets.add_row(name, str(target["at_concurrency"]), _num(target["value"], 2),
                        target["target"], verdict[target["pass"]])
    return [latency, cpu, added, targets]


def _plan(quick: bool) -> Plan:
    if quick:
        budget = Budget(warmup_runs=QUICK_WARMUP_RUNS, runs=QUICK_RUNS)
        return Plan(QUICK_LEVELS, dict.fromkeys(QUICK_LEVELS, budget), attempts=1,
                    quiet_seconds=0.0)
    budgets = {c: Budget(warmup_seconds=WARMUP_SECONDS,
                         seconds=TTFT_SECONDS if c == TTFT_CONCURRENCY else SECONDS)
               for c in LEVELS}
    return Plan(LEVELS, budgets, attempts=MAX_ATTEMPTS, quiet_seconds=QUIET_WAIT_SECONDS)


def run(options: RunOptions) -> dict[str, Any]:
    """Measure the three topologies; print tables; return the result payload."""
    plan = _plan(options.quick)
    source = source_fingerprint()
    with scripted_upstream() as upstream:
        topologies = {"embedded": _run_embedded(upstream, plan, options),
                      **_run_distributed(upstream, plan, options)}
    compared = comparison(topologies, plan)
    found = saturation(topologies)
    for table in _tables(topologies, compared, plan):
        options.console.print(table)
    for key, seen in found.items():
        options.console.print(
            f"{key}: peak {seen['peak_runs_per_second']:.1f} runs/s at concurrency "
            f"{seen['peak_at_concurrency']}, {SATURATED:.0%} of it from "
            f"{seen['saturates_at_concurrency']}; limited there by: "
            f"{seen['bottleneck_at_saturation']['text']}")
    return {
        "parameters": {
            "topologies": {t.key: t.label for t in TOPOLOGIES},
            "chunks_per_reply": CHUNKS, "chunk_delay_seconds": 0,
            "concurrency_levels": list(plan.levels),
            "budgets": {str(c): b.describe() for c, b in plan.budgets.items()},
            "worker_concurrency": WORKER_CONCURRENCY, "api_env": API_ENV,
            "postgres": "local server, a fresh database migrated with `runstep migrate`, "
                        "shared by both PostgreSQL topologies, dropped at the end",
            "disturbed_other_cores": DISTURBED_CORES, "max_attempts": plan.attempts,
            "quiet_cores": QUIET_CORES, "quiet_wait_seconds": plan.quiet_seconds,
            "client": "one httpx.AsyncClient, keep-alive, SSE read line by line"
                      f"{' on uvloop' if event_loop_runner() is not asyncio.run else ''}",
            "assistant": ASSISTANT_BODY, "user_message": USER_MESSAGE,
            "targets": {name: f"{key}: {metric} {op} {bound:g}"
                        for name, (key, metric, op, bound) in TARGETS.items()},
        },
        "runstep_source": {"at_start": source, "at_end": source_fingerprint()},
        "notes": NOTES,
        "comparison": compared,
        "saturation": found,
        "topologies": topologies,
    }
