"""code_interpreter: execution latency, session start, memory per session and how many sessions
this machine holds; and what a code_interpreter call adds to a run, through the HTTP API.

Phases 1-3 drive the engine (``runstep.tools.code_interpreter.Sandbox``) in this process, on
the event loop the server uses (uvloop when installed), with the server's default limits, a
temporary work directory, and the interpreter environment at ``.cache/code-interpreter``
(``runstep sandbox setup --path .cache/code-interpreter``; or
``RUNSTEP_CODE_INTERPRETER_PYTHON``). Sessions get uids of their own range
(``UID_BASE``), apart from sandboxes that tests on this machine may run meanwhile.

1. **Warm session**: one session is started and warmed up, then ``1 + 1`` runs ``executions``
   times in a row; each ``Sandbox.execute`` call is timed (everything it adds to the one
   microsecond the code needs: the request and answer over the pipe, the scans of /mnt/data
   before and after, the CPU and process checks in /proc).
2. **New session**: for each of ``new_sessions`` new keys, the first ``execute`` (starting
   bubblewrap and the interpreter, then ``1 + 1``) is timed; in the first
   ``import_sessions`` of them ``import numpy, pandas, matplotlib.pyplot`` is then timed as
   the session's second execution; then ``end_session``. An untimed session imports them
   first, so the page cache holds the libraries (the steady state of a server).
3. **Capacity**: sessions are started one after another, each keeping a small state (a dict
   of a 1,000-item list), up to ``capacity_bound`` or until MemAvailable falls below the
   safety margin (the larger of 2 GiB and 10% of memory). Then each session's memory is read
   from ``/proc/PID/smaps_rollup`` of its processes (bubblewrap's two and the interpreter):
   RSS (counts shared pages in full), PSS (shared pages split between their users: the sum
   over sessions is what they use together) and USS (private pages: what ending the session
   frees); and MemAvailable before and after (kernel memory included, but also whatever else
   the machine did meanwhile). Every session is checked to still hold its state. Then
   ``pandas_sessions`` of them import numpy and pandas (and build a small DataFrame), measured
   again, then matplotlib.pyplot too. Capacity is extrapolated from MemAvailable at the start
   (minus the margin) divided by the larger of the mean PSS and the MemAvailable drop per
   session. All sessions are ended at the end (``Sandbox.close``, timed).
4. **Runs** (HTTP): the scripted upstream and a ``runstep serve`` on SQLite (as in the
   ``runs`` benchmark), one assistant with the code_interpreter tool, sequential streamed runs
   in three interleaved modes: ``answer`` (the model answers at once, 20 chunks), ``code``
   (the model calls code_interpreter with ``1 + 1``, then gives the same answer) on one
   thread whose session is warm, and ``code_new_session`` on a fresh thread each time.
   ``added`` = code minus answer percentiles: the sandbox call, plus a second upstream
   completion and the tool call step it takes.

The CPU of this process, of the sandbox processes and of the whole machine is taken around
phases 1 and 2: ``other_processes_cores`` well above zero means other work on the machine
disturbed them.
"""

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from bench.common import REPO_ROOT, RunOptions, running_server, summarize
from bench.load import (
    CHUNKS,
    CLIENT_TIMEOUT,
    Sample,
    auth_headers,
    cpu_usage,
    event_loop_runner,
    new_thread,
    ok,
    process_meter,
    runstep_run,
    scripted_upstream,
)
from runstep.tools.code_interpreter import Sandbox, SandboxConfig, SandboxError, procfs

GIB = 1 << 30
SETTLE_SECONDS = 0.2
UID_BASE = 1_700_000_000  # not the default 1_500_000_000 that servers and tests use
SAFETY_MARGIN_BYTES = 2 * GIB
SAFETY_MARGIN_FRACTION = 0.10
TRIVIAL = "1 + 1"
STATE = "state = {'n': 42, 'values': list(range(1000))}"
IMPORT_ALL = "import numpy, pandas, matplotlib.pyplot"
IMPORT_PANDAS = ("import numpy as np, pandas as pd\n"
                 "state['frame'] = pd.DataFrame({'x': np.arange(1000)})")
IMPORT_PYPLOT = "import matplotlib.pyplot as plt"
API_KEY = "sk-bench-code-interpreter"
ASSISTANT_BODY = {"model": "scripted-model", "name": "bench-code-interpreter",
                  "instructions": "Be brief.", "tools": [{"type": "code_interpreter"}]}
USER_MESSAGE = "What is 1 + 1? Use code."
ANSWER = {"text": ["Echo:"] + [" two"] * (CHUNKS - 1)}
CALL = {"tool_calls": [{"name": "code_interpreter", "arguments": {"code": TRIVIAL}}]}
RUN_MODES = ("answer", "code", "code_new_session")
STAGE_LABELS = {"bare": "bare", "numpy_pandas": "+ numpy, pandas",
                "numpy_pandas_pyplot": "+ pyplot"}
TARGETS_MS = {"warm_execution_p50_ms": 50.0, "warm_execution_p99_ms": 50.0,
              "new_session_p50_ms": 1000.0, "new_session_p99_ms": 1000.0}
NOTES = [
    "Phases 1-3 run the engine in this process with the server's default limits; its "
    "sessions are real bubblewrap sandboxes, as a server starts them.",
    "Latencies are of whole Sandbox.execute calls (wall clock, perf_counter).",
    "RSS counts shared pages (the interpreter, libraries) in every session; PSS splits them "
    "between the sessions sharing them (sums to the memory they use together); USS is the "
    "private part (what ending one session frees). Capacity extrapolates with the larger of "
    "mean PSS and the MemAvailable drop per session.",
    "MemAvailable is machine-wide: other work on the machine meanwhile moves it (either way).",
    "The per-session memory limit (RLIMIT_AS, memory_bytes) bounds address space, not "
    "resident memory: sessions that each used their limit would fit far fewer times "
    "(worst_case_sessions).",
    "runs: added = code percentile - answer percentile (a difference of percentiles); it "
    "includes the second upstream completion and the tool call step a code call takes, not "
    "only the sandbox.",
]


@dataclass(frozen=True)
class Plan:
    executions: int = 1000  # phase 1, timed
    warmup_executions: int = 20
    new_sessions: int = 50  # phase 2
    import_sessions: int = 10
    capacity_bound: int = 200  # phase 3
    pandas_sessions: int = 20
    runs: int = 50  # phase 4, per mode (0: skip)
    warmup_runs: int = 3


def full_plan() -> Plan:
    return Plan()


def quick_plan() -> Plan:
    return Plan(executions=20, warmup_executions=3, new_sessions=3, import_sessions=1,
                capacity_bound=6, pandas_sessions=2, runs=3, warmup_runs=1)


def sandbox_python() -> Path:
    configured = os.environ.get("RUNSTEP_CODE_INTERPRETER_PYTHON")
    # not resolved: bin/python is a symlink to the base interpreter, outside the environment
    return Path(configured) if configured else REPO_ROOT / ".cache/code-interpreter/bin/python"


# --- /proc: processes, memory, CPU --------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    return [pid, *procfs.descendants(pid)]


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of a live process tree, its reaped children included."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / _TICKS


class SandboxCpu:
    """CPU seconds of the sandboxes this process started (in phases 1-3 all its children are
    sandboxes): the live ones, read from /proc, plus those ended after :meth:`retire` read
    them (an ended sandbox's processes die with its pid namespace, unwaited: their CPU time
    reaches no one's ``cutime``)."""

    def __init__(self) -> None:
        self.retired: dict[int, float] = {}

    def retire(self) -> None:
        """Read every live sandbox now, before it is ended."""
        for child in procfs.children(os.getpid()):
            self.retired[child] = _tree_cpu_seconds(child)

    def __call__(self) -> tuple[Mapping[str, float], Collection[str]]:
        live = sum(_tree_cpu_seconds(child) for child in procfs.children(os.getpid())
                   if child not in self.retired)
        return {"sandbox": live + sum(self.retired.values())}, ()


def memory_of(pids: list[int]) -> dict[str, int]:
    """RSS, PSS and USS in bytes of processes, summed (``/proc/PID/smaps_rollup``)."""
    total = {"rss": 0, "pss": 0, "uss": 0, "processes": 0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        values = {}
        for line in lines[1:]:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[-1] == "kB":
                values[name] = int(parts[0]) * 1024
        total["rss"] += values.get("Rss", 0)
        total["pss"] += values.get("Pss", 0)
        total["uss"] += values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
        total["processes"] += 1
    return total


def meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0]) * 1024
    return values


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _mib(count: float) -> float:
    return count / (1 << 20)


# --- phases 1-3: the engine ---------------------------------------------------------------------


class Checked:
    """Executions that must succeed, with their output checked; failures counted."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.failures: dict[str, int] = {}

    async def run(self, key: str, code: str, logs: str | None = "") -> float:
        """Execute; return the seconds it took. ``logs``: the expected output (None: any)."""
        started = time.perf_counter()
        execution = await self.sandbox.execute(key, code)
        elapsed = time.perf_counter() - started
        if execution.error or execution.session_ended or (logs is not None
                                                          and execution.logs != logs):
            problem = f"{code[:40]!r}: {(execution.error or execution.logs)[:160]!r}"
            self.failures[problem] = self.failures.get(problem, 0) + 1
        return elapsed


async def warm_session(checked: Checked, plan: Plan, tick: Callable[[], None]) -> dict[str, Any]:
    meter = process_meter({}, SandboxCpu())
    await checked.run("warm", STATE)
    for _ in range(plan.warmup_executions):
        await checked.run("warm", TRIVIAL, "2\n")
    load = _load()
    before = meter()
    seconds = []
    for _ in range(plan.executions):
        seconds.append(await checked.run("warm", TRIVIAL, "2\n"))
        tick()
    after = meter()
    await checked.sandbox.end_session("warm")
    return {"execution": summarize(seconds), "load_average_before": load,
            "cpu": cpu_usage(before, after, plan.executions)}


async def new_sessions(checked: Checked, plan: Plan, tick: Callable[[], None]) -> dict[str, Any]:
    sandbox = checked.sandbox
    await checked.run("page-cache", IMPORT_ALL)  # untimed: the libraries into the page cache
    await sandbox.end_session("page-cache")
    sandboxes = SandboxCpu()
    meter = process_meter({}, sandboxes)
    load = _load()
    before = meter()
    first, imports, ends = [], [], []
    for index in range(plan.new_sessions):
        key = f"new-{index}"
        first.append(await checked.run(key, TRIVIAL, "2\n"))
        if index < plan.import_sessions:
            imports.append(await checked.run(key, IMPORT_ALL))
        sandboxes.retire()
        started = time.perf_counter()
        await sandbox.end_session(key)
        ends.append(time.perf_counter() - started)
        tick()
    after = meter()
    return {"first_execution": summarize(first),
            "import_numpy_pandas_pyplot": summarize(imports) if imports else None,
            "first_execution_plus_import": (summarize([a + b for a, b in zip(first, imports,
                                                                             strict=False)])
                                            if imports else None),
            "end_session": summarize(ends), "load_average_before": load,
            "cpu": cpu_usage(before, after, plan.new_sessions)}


def _per_session(memories: list[dict[str, int]]) -> dict[str, Any]:
    count = len(memories)
    result: dict[str, Any] = {"sessions": count,
                              "processes_per_session": memories[0]["processes"] if count else 0}
    for kind in ("rss", "pss", "uss"):
        ordered = sorted(memory[kind] for memory in memories)
        result[f"{kind}_mib"] = {
            "mean": _mib(sum(ordered) / count), "median": _mib(ordered[count // 2]),
            "min": _mib(ordered[0]), "max": _mib(ordered[-1]), "total": _mib(sum(ordered)),
        } if count else None
    return result


def _extrapolate(per_session: dict[str, Any], drop_per_session: float | None,
                 usable: int) -> dict[str, Any]:
    drop = None if drop_per_session is None else _mib(drop_per_session)
    pss = per_session["pss_mib"]["mean"] if per_session["pss_mib"] else 0.0
    basis = max(pss, drop or 0.0)
    return {"memavailable_drop_per_session_mib": drop, "basis_mib": basis,
            "sessions": int(_mib(usable) / basis) if basis > 0 else None}


async def capacity(checked: Checked, plan: Plan, tick: Callable[[], None]) -> dict[str, Any]:
    sandbox = checked.sandbox
    info = meminfo()
    margin = max(SAFETY_MARGIN_BYTES, int(SAFETY_MARGIN_FRACTION * info["MemTotal"]))
    available_start = info["MemAvailable"]
    roots: dict[str, int] = {}
    starts: list[float] = []
    stopped = f"bound of {plan.capacity_bound} sessions"
    known = set(procfs.children(os.getpid()))
    descriptors_before = len(os.listdir("/proc/self/fd"))
    for index in range(plan.capacity_bound):
        if meminfo()["MemAvailable"] < margin:
            stopped = "memory headroom below the safety margin"
            break
        key = f"cap-{index}"
        try:
            starts.append(await checked.run(key, STATE))
        except SandboxError as exc:
            stopped = f"{type(exc).__name__}: {exc}"[:200]
            break
        new = set(procfs.children(os.getpid())) - known
        if len(new) != 1:
            raise RuntimeError(f"expected one new sandbox process, found {sorted(new)}")
        roots[key] = new.pop()
        known.add(roots[key])
        tick()
    await asyncio.sleep(0.5)  # let the last ones settle
    available_bare = meminfo()["MemAvailable"]
    bare = [memory_of(process_tree(pid)) for pid in roots.values()]
    holding = 0
    for key in roots:
        before = sum(checked.failures.values())
        await checked.run(key, "state['n'], len(state['values'])", "(42, 1000)\n")
        holding += sum(checked.failures.values()) == before
    descriptors = len(os.listdir("/proc/self/fd")) - descriptors_before

    loaded = list(roots)[:plan.pandas_sessions]
    stages: dict[str, Any] = {}
    for stage, code in (("numpy_pandas", IMPORT_PANDAS), ("numpy_pandas_pyplot", IMPORT_PYPLOT)):
        available_before = meminfo()["MemAvailable"]
        done = []
        for key in loaded:
            if meminfo()["MemAvailable"] < margin:
                break
            await checked.run(key, code)
            done.append(key)
            tick()
        await asyncio.sleep(0.5)
        memories = [memory_of(process_tree(roots[key])) for key in done]
        drop = available_before - meminfo()["MemAvailable"]
        stages[stage] = {"per_session": _per_session(memories), "added_available_drop": drop,
                         "sessions": len(done)}
        loaded = done

    usable = available_start - margin
    bare_summary = _per_session(bare)
    # a loaded session costs a bare one plus what its imports added
    drop = (available_start - available_bare) / len(bare) if bare else None
    extrapolated = {"bare": _extrapolate(bare_summary, drop, usable)}
    for stage, measured in stages.items():
        if drop is not None and measured["sessions"]:
            drop += measured["added_available_drop"] / measured["sessions"]
        else:
            drop = None
        extrapolated[stage] = _extrapolate(measured["per_session"], drop, usable)

    started = time.perf_counter()
    await sandbox.close()
    closed = time.perf_counter() - started
    leftover = len(procfs.children(os.getpid()))
    return {
        "sessions_started": len(roots), "sessions_holding_state": holding, "stopped_by": stopped,
        "start_execution": summarize(starts) if starts else None,
        "start_execution_last_20": summarize(starts[-20:]) if starts else None,
        "memory": {"bare": bare_summary,
                   **{stage: measured["per_session"] for stage, measured in stages.items()}},
        "memavailable_mib": {"start": _mib(available_start), "with_bare_sessions":
                             _mib(available_bare), "margin": _mib(margin),
                             "total": _mib(info["MemTotal"])},
        "extrapolated_sessions": extrapolated,
        "worst_case_sessions": int(usable / sandbox.config.memory_bytes),
        "host_file_descriptors_per_session": descriptors / len(roots) if roots else None,
        "close_seconds": closed, "sandbox_processes_left": leftover,
    }


async def engine(plan: Plan, options: RunOptions, work_dir: Path) -> dict[str, Any]:
    config = SandboxConfig(python=sandbox_python(), work_dir=work_dir, uid_base=UID_BASE,
                           max_sessions=plan.capacity_bound + 8)
    sandbox = Sandbox(config)
    checked = Checked(sandbox)
    results: dict[str, Any] = {}
    phases: list[tuple[str, int, Callable[..., Awaitable[dict[str, Any]]]]] = [
        ("warm_session", plan.executions, warm_session),
        ("new_session", plan.new_sessions, new_sessions),
        ("capacity", plan.capacity_bound + 2 * plan.pandas_sessions, capacity),
    ]
    try:
        for name, total, phase in phases:
            task = options.progress.add_task(f"code_interpreter: {name}", total=total)
            try:
                results[name] = await phase(checked, plan, lambda task=task:
                                            options.progress.advance(task))
            finally:
                options.progress.remove_task(task)
    finally:
        await sandbox.close()
        # the ended sessions' pipe transports close on the next turns of the loop; uvloop
        # refuses to close a loop with open handles (EBUSY)
        await asyncio.sleep(SETTLE_SECONDS)
    results["failed_executions"] = checked.failures
    return results


# --- phase 4: runs through the HTTP API ---------------------------------------------------------


async def _enqueue(control: httpx.AsyncClient, mode: str) -> None:
    ok(await control.post("/_control/enqueue", json=[ANSWER] if mode == "answer"
                          else [CALL, ANSWER]))


async def _code_logs(client: httpx.AsyncClient, thread_id: str) -> list[str]:
    runs = ok(await client.get(f"/v1/threads/{thread_id}/runs", params={"limit": 1}))["data"]
    steps = ok(await client.get(f"/v1/threads/{thread_id}/runs/{runs[0]['id']}/steps"))["data"]
    return [output.get("logs", "") for step in steps if step["type"] == "tool_calls"
            for call in step["step_details"]["tool_calls"]
            for output in call["code_interpreter"]["outputs"]]


async def runs(server_url: str, control_url: str, plan: Plan,
               tick: Callable[[], None]) -> dict[str, Any]:
    client = httpx.AsyncClient(base_url=server_url, headers=auth_headers(API_KEY),
                               timeout=CLIENT_TIMEOUT)
    control = httpx.AsyncClient(base_url=control_url, timeout=30.0)
    async with client, control:
        assistant = ok(await client.post("/v1/assistants", json=ASSISTANT_BODY))["id"]
        threads = {mode: await new_thread(client, USER_MESSAGE) for mode in RUN_MODES[:2]}
        samples: dict[str, list[Sample]] = {mode: [] for mode in RUN_MODES}
        for round_ in range(plan.warmup_runs + plan.runs):
            for mode in RUN_MODES:
                if mode == "code_new_session":
                    thread = await new_thread(client, USER_MESSAGE)
                else:
                    thread = threads[mode]
                await _enqueue(control, mode)
                sample = await runstep_run(client, thread, assistant)
                if not sample.completed:
                    raise RuntimeError(f"a {mode} run did not complete: {sample.error}")
                if round_ == 0 and mode != "answer" and await _code_logs(client, thread) != ["2\n"]:
                    raise RuntimeError(f"the {mode} run's code did not print 2")
                if round_ >= plan.warmup_runs:
                    samples[mode].append(sample)
                    tick()
        ok(await control.post("/_control/reset"))
    result: dict[str, Any] = {}
    for mode, measured in samples.items():
        result[mode] = {"total": summarize([s.total for s in measured]),
                        "ttft": summarize([s.ttft for s in measured if s.ttft is not None])}
    for mode in RUN_MODES[1:]:
        result[f"added_{mode}"] = {
            f"{metric}_{p}": result[mode][metric][p] - result["answer"][metric][p]
            for metric in ("total", "ttft") for p in ("p50_ms", "p99_ms")}
    return result


def measure_runs(plan: Plan, options: RunOptions) -> dict[str, Any]:
    task = options.progress.add_task("code_interpreter: runs", total=plan.runs * len(RUN_MODES))
    output = None
    try:
        with scripted_upstream() as upstream:
            output = upstream.process.stdout  # scripted_upstream leaves it open
            env = {"RUNSTEP_UPSTREAM_BASE_URL": upstream.base_url,
                   "RUNSTEP_UPSTREAM_API_KEY": "sk-upstream",
                   "RUNSTEP_REQUESTS_PER_MINUTE": "0",
                   "RUNSTEP_CODE_INTERPRETER_PYTHON": str(sandbox_python()),
                   "RUNSTEP_CODE_INTERPRETER_UID_BASE": str(UID_BASE + 10_000),
                   "RUNSTEP_CODE_INTERPRETER_MAX_SESSIONS": str(plan.runs + plan.warmup_runs
                                                                + 8)}
            with running_server("sqlite", [API_KEY], env=env) as server:
                load = _load()
                result = event_loop_runner()(runs(server.url, upstream.root, plan,
                                                  lambda: options.progress.advance(task)))
                return {"load_average_before": load, **result}
    finally:
        if output is not None:
            output.close()
        options.progress.remove_task(task)


# --- the benchmark ------------------------------------------------------------------------------


def _targets(engine_results: dict[str, Any]) -> dict[str, Any]:
    warm = engine_results["warm_session"]["execution"]
    new = engine_results["new_session"]["first_execution"]
    values = {"warm_execution_p50_ms": warm["p50_ms"], "warm_execution_p99_ms": warm["p99_ms"],
              "new_session_p50_ms": new["p50_ms"], "new_session_p99_ms": new["p99_ms"]}
    return {name: {"target": f"< {bound:g}", "value": values[name],
                   "pass": values[name] < bound} for name, bound in TARGETS_MS.items()}


def _ms(summary: dict[str, Any] | None) -> tuple[str, str, str]:
    if summary is None:
        return "-", "-", "-"
    return f"{summary['p50_ms']:.1f}", f"{summary['p99_ms']:.1f}", str(summary["n"])


def _tables(payload: dict[str, Any]) -> list[Table]:
    engine_results = payload["engine"]
    latency = Table("what", "p50 ms", "p99 ms", "n", "other cores",
                    title="code_interpreter: Sandbox.execute latency")
    warm, new = engine_results["warm_session"], engine_results["new_session"]
    other = {name: f"{phase['cpu'].get('other_processes_cores', 0.0):.2f}"
             for name, phase in (("warm", warm), ("new", new))}
    latency.add_row("`1 + 1`, warm session", *_ms(warm["execution"]), other["warm"])
    latency.add_row("first `1 + 1`, new session", *_ms(new["first_execution"]), other["new"])
    latency.add_row("then import numpy, pandas, pyplot", *_ms(new["import_numpy_pandas_pyplot"]),
                    other["new"])
    latency.add_row("end_session", *_ms(new["end_session"]), other["new"])
    cap = engine_results["capacity"]
    memory = Table("sessions", "count", "RSS MiB", "PSS MiB", "USS MiB", "MemAvailable drop",
                   "extrapolated sessions",
                   title=f"Idle sessions: {cap['sessions_started']} started "
                         f"({cap['stopped_by']}), {cap['sessions_holding_state']} held their "
                         f"state; MemAvailable {cap['memavailable_mib']['start']:.0f} MiB, "
                         f"margin {cap['memavailable_mib']['margin']:.0f} MiB (mean MiB per "
                         "session)")
    for stage, summary in cap["memory"].items():
        extrapolated = cap["extrapolated_sessions"][stage]
        drop = extrapolated["memavailable_drop_per_session_mib"]
        memory.add_row(STAGE_LABELS[stage], str(summary["sessions"]),
                       *(f"{summary[f'{kind}_mib']['mean']:.1f}" if summary[f"{kind}_mib"]
                         else "-" for kind in ("rss", "pss", "uss")),
                       "-" if drop is None else f"{drop:.1f}", str(extrapolated["sessions"]))
    tables = [latency, memory]
    if payload.get("runs"):
        result = payload["runs"]
        added = Table("mode", "total p50", "total p99", "TTFT p50", "TTFT p99",
                      "added total p50", "added total p99",
                      title="Streamed runs (ms), sequential: a code_interpreter call vs none")
        for mode in RUN_MODES:
            gain = result.get(f"added_{mode}")
            added.add_row(mode, *(f"{result[mode][m][p]:.1f}" for m in ("total", "ttft")
                                  for p in ("p50_ms", "p99_ms")),
                          *((f"{gain['total_p50_ms']:.1f}", f"{gain['total_p99_ms']:.1f}")
                            if gain else ("", "")))
        tables.append(added)
    targets = Table("metric", "value ms", "target", "result", title="Targets (not asserted)")
    for name, target in payload["targets"].items():
        verdict = "[green]pass[/green]" if target["pass"] else "[red]FAIL[/red]"
        targets.add_row(name, f"{target['value']:.1f}", target["target"], verdict)
    tables.append(targets)
    return tables


def measure(plan: Plan, options: RunOptions) -> dict[str, Any]:
    """Run every phase of ``plan``; print tables; return the result payload."""
    python = sandbox_python()
    if not python.exists():
        raise RuntimeError(f"no sandbox interpreter at {python}: run `.venv/bin/runstep sandbox "
                           "setup --path .cache/code-interpreter`")
    with tempfile.TemporaryDirectory(prefix="runstep-bench-ci-") as tmp:
        engine_results = event_loop_runner()(engine(plan, options, Path(tmp)))
    if engine_results["failed_executions"]:
        raise RuntimeError(f"executions failed: {engine_results['failed_executions']}")
    payload: dict[str, Any] = {
        "parameters": {**plan.__dict__, "python": str(python), "uid_base": UID_BASE,
                       "limits": "SandboxConfig defaults (the server's)",
                       "safety_margin": f"max({SAFETY_MARGIN_BYTES // GIB} GiB, "
                                        f"{SAFETY_MARGIN_FRACTION:.0%} of MemTotal)",
                       "codes": {"trivial": TRIVIAL, "state": STATE, "import": IMPORT_ALL,
                                 "pandas": IMPORT_PANDAS, "pyplot": IMPORT_PYPLOT}},
        "notes": NOTES,
        "engine": engine_results,
        "runs": measure_runs(plan, options) if plan.runs else None,
    }
    payload["targets"] = _targets(engine_results)
    for table in _tables(payload):
        options.console.print(table)
    return payload


def run(options: RunOptions) -> dict[str, Any]:
    """The full plan, or the quick one (a few executions and sessions, 3 runs per mode)."""
    return measure(quick_plan() if options.quick else full_plan(), options)
