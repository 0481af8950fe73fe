"""Load generation for the streamed-run benchmarks (``runs``, ``distributed``, ``streams``).

* CPU and memory accounting: cumulative CPU seconds of named processes (``/proc/PID/stat``),
  of this load generator (``os.times``), of PostgreSQL's processes (``PostgresCpu``) and of the
  whole machine (``/proc/stat``), taken at both ends of a measured window (``Meter``), with
  the named processes' resident memory at the end (``/proc/PID/status``); ``bottleneck``
  names what limited a window.
* The scripted Chat Completions upstream as a process of its own (``scripted_upstream``), and
  named scripts registered on it (``Scripts``).
* One streamed run (``runstep_run``): ``POST /v1/threads/{id}/runs`` with ``stream: true``,
  read to ``event: done``; time to the first ``thread.message.delta`` (TTFT) and to the end.
  ``function_run``: the same, answered with ``submit_tool_outputs`` when it requires action.
  ``direct_turns``: the same chat completions streamed straight from the upstream.
* ``measure``: N concurrent clients, warm-up then a fixed window (or a fixed number of runs),
  and ``summarize_phase``: throughput of the runs that ended inside the window, latency of the
  runs that started in it.
* ``Threads``: a pool of fresh one-message threads, so every measured run asks the same.
"""

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import announced_process, summarize

CHUNKS = 20
FRESH_THREADS = True  # measured runs each on a new one-message thread (see Threads)
POOL_HEADROOM = 1.5  # fresh threads: first warm-up's rate x (warm-up + window) x this + 2/client
THREAD_CREATORS = 8
CLIENT_TIMEOUT = 60.0
REQUEST_DEADLINE = 60.0  # a whole streamed request, first byte to end of stream
END_EVENTS = frozenset(
    f"thread.run.{status}"
    for status in ("completed", "failed", "cancelled", "expired", "incomplete", "requires_action")
)


def auth_headers(api_key: str) -> dict[str, str]:
    """What every Assistants API request carries."""
    return {"OpenAI-Beta": "assistants=v2", "Authorization": f"Bearer {api_key}"}


# --- CPU accounting ---------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
BUSY_CORE = 0.85  # a process using this much of a core is limited by it (one Python thread)
BUSY_MACHINE = 0.9  # a machine this busy (fraction of all its cores) is saturated
MIN_BOTTLENECK_SECONDS = 1.0  # CPU times tick in 10 ms: shorter windows cannot tell


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (field 3, state, is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from ``/proc/PID/stat``."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def memory_bytes(pid: int) -> dict[str, int]:
    """Resident memory of a process now (``rss``) and at its peak so far (``hwm``), in bytes."""
    found = {"rss": 0, "hwm": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found["rss" if line.startswith("VmRSS") else "hwm"] = int(line.split()[1]) * 1024
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, already counted in user
    return total - idle, total


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds of named processes at one moment, and the machine's jiffies.
    ``excluded`` names are reported but are not ours: they count as the machine's other load."""

    wall: float
    processes: Mapping[str, float]
    machine_busy: int
    machine_total: int
    excluded: frozenset[str] = frozenset()
    memory: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # by name, see pids


Meter = Callable[[], CpuSnapshot]
"""Takes a snapshot now."""


def process_meter(pids: Mapping[str, int],
                  *more: Callable[[], tuple[Mapping[str, float], Collection[str]]]) -> Meter:
    """Snapshots of the processes ``pids`` (name -> pid; their CPU time and resident memory),
    then of whatever each of ``more`` reports (CPU seconds by name, and which of those names
    are excluded), then ``client`` (this process)."""

    def take() -> CpuSnapshot:
        processes = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        memory = {name: memory_bytes(pid) for name, pid in pids.items()}
        excluded: set[str] = set()
        for extra in more:
            values, others = extra()
            processes.update(values)
            excluded.update(others)
        times = os.times()
        processes["client"] = times.user + times.system
        busy, total = machine_ticks()
        return CpuSnapshot(time.perf_counter(), processes, busy, total, frozenset(excluded),
                           memory)

    return take


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot, runs: int) -> dict[str, Any]:
    """CPU seconds, cores used (seconds / wall seconds) and ms per run of each process; for the
    processes measured by pid, their resident memory at the end of the window and at their
    peak so far (MiB)."""
    wall = after.wall - before.wall
    usage: dict[str, Any] = {"wall_seconds": wall}
    for name, total in after.processes.items():
        seconds = total - before.processes.get(name, 0.0)
        usage[name] = {"cpu_seconds": seconds, "cores": seconds / wall if wall else None,
                       "cpu_ms_per_run": 1000 * seconds / runs if runs else None}
        if name in after.memory:
            usage[name]["rss_mib"] = after.memory[name]["rss"] / MIB
            usage[name]["peak_rss_mib"] = after.memory[name]["hwm"] / MIB
    ticks = after.machine_total - before.machine_total
    busy = (after.machine_busy - before.machine_busy) / ticks if ticks else None
    usage["machine_busy_fraction"] = busy
    if busy is not None:  # whatever else ran on the machine meanwhile (noise)
        cpus = os.cpu_count() or 1
        ours = sum(usage[name]["cores"] or 0.0 for name in after.processes
                   if name not in after.excluded)
        usage["other_processes_cores"] = max(0.0, busy * cpus - ours)
    return usage


def bottleneck(cpu: Mapping[str, Any]) -> dict[str, Any]:
    """What limited a measured window, read from its CPU meters (``cpu_usage``): a process
    near one full core (a Python process runs its event loop on one core: it can do no more),
    or the machine with nearly all its cores busy (by whom: ours, and ``other processes``, the
    machine's other load); if neither, nothing CPU-bound (the clients spend their time
    waiting: latency-bound)."""
    cpus = os.cpu_count() or 1
    cores: dict[str, float] = {}
    for name, value in cpu.items():
        if isinstance(value, Mapping) and value.get("cores") is not None \
                and name != PostgresCpu.OTHERS:
            # PostgreSQL's processes (ours: backends, postmaster, background) as one
            key = "postgres" if name.startswith("postgres") else name
            cores[key] = cores.get(key, 0.0) + float(value["cores"])
    if cpu.get("other_processes_cores") is not None:  # the machine's other load
        cores["other processes"] = float(cpu["other_processes_cores"])
    ranked = sorted(cores.items(), key=lambda item: -item[1])
    busy = cpu.get("machine_busy_fraction")
    machine = None if busy is None else busy * cpus
    # PostgreSQL's many processes are not one event loop: never "one core"
    pinned = [name for name, value in ranked if value >= BUSY_CORE
              and not name.startswith("postgres") and name != "other processes"]
    parts = [f"{name} at {cores[name]:.2f} cores "
             + ("(one event loop)" if cores[name] < 1.05 else "(its event loop and threads)")
             for name in pinned]
    if busy is not None and busy >= BUSY_MACHINE:
        top = ", ".join(f"{name} {value:.2f}" for name, value in ranked[:4])
        parts.append(f"all {cpus} cores busy ({machine:.2f}: {top})")
    limit = ("machine" if busy is not None and busy >= BUSY_MACHINE
             else pinned[0] if pinned else None)
    text = "; ".join(parts) if parts else "no process or core saturated (latency-bound)"
    if (cpu.get("wall_seconds") or 0.0) < MIN_BOTTLENECK_SECONDS:
        limit, text = None, "window too short to tell"
    return {"limit": limit, "text": text, "near_one_core": pinned, "machine_busy_cores": machine,
            "cores_by_process": dict(ranked)}


class PostgresCpu:
    """CPU of the local PostgreSQL server's processes since ``start``, split into the backends
    of one database (``database``: ours), the postmaster (it forks every new connection), the
    background processes (WAL writer, checkpointer, ...) and the backends of other databases
    (other people's load).

    The total is exact: the postmaster's own time, plus the time of its children it has
    reaped (``cutime``/``cstime``), plus its live children. The split is sampled: a thread
    reads the postmaster's children every ``interval`` seconds, so a backend that exits (a
    connection pool closing an overflow connection) is counted up to its last sample; what
    exited backends used after it, or backends that lived less than one interval, is
    ``unattributed``: part of the total, in no split, and counted as ours, since short-lived
    backends are mostly a pool's overflow connections (compare ``backends_started``, the new
    backends of ``database``), while other people's test backends live as long as a test.
    Processes are told apart by their title (``postgres: CLUSTER: USER DATABASE HOST(PORT)
    STATE`` for a backend, ``postgres: CLUSTER: walwriter`` ...); a child just forked may not
    have its title yet, so it is classified once it has one."""

    OURS, UNATTRIBUTED = "postgres", "postgres_unattributed"
    POSTMASTER, BACKGROUND = "postgres_postmaster", "postgres_background"
    OTHERS = "postgres_other_databases"

    def __init__(self, postmaster_pid: int, database: str, interval: float = 0.05) -> None:
        self.postmaster, self.interval = postmaster_pid, interval
        self._marker = f" {database} "
        self._lock = threading.Lock()
        # (pid, start time) -> its kind (None before it has a title), its CPU seconds counted
        # so far (at the first scan: its time then), and whether it started after that scan
        self._seen: dict[tuple[int, int], tuple[str | None, float, bool]] = {}
        self._sums = dict.fromkeys((self.OURS, self.POSTMASTER, self.BACKGROUND, self.OTHERS),
                                   0.0)
        self.backends_started = 0
        self._base_total = 0.0
        self._postmaster = 0.0  # the postmaster's own CPU seconds at the last sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _children(self) -> list[int]:
        path = Path(f"/proc/{self.postmaster}/task/{self.postmaster}/children")
        return [int(pid) for pid in path.read_text().split()]

    def _kind(self, pid: int) -> str | None:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            return None
        if not title.startswith("postgres: "):
            return None  # just forked: still the postmaster's command line
        if self._marker in f"{title} ":
            return self.OURS
        # Backends name their user, database and client; background processes do not.
        return self.OTHERS if "(" in title or "[local]" in title else self.BACKGROUND

    def _scan(self, first: bool = False) -> float:
        """Add what each live child used since its previous sample; the exact total so far."""
        fields = _stat_fields(self.postmaster)
        own = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        total = own + (int(fields[13]) + int(fields[14])) / _TICKS  # + reaped children's
        if not first:
            self._sums[self.POSTMASTER] += own - self._postmaster
        self._postmaster = own
        for pid in self._children():
            try:
                child = _stat_fields(pid)
            except OSError:
                continue  # exited meanwhile
            key, cpu = (pid, int(child[19])), (int(child[11]) + int(child[12])) / _TICKS
            total += cpu
            kind, counted, new = self._seen.get(key) or (None, cpu if first else 0.0, not first)
            if kind is None:
                kind = self._kind(pid)
                if kind is None:  # no title yet: classify it later
                    self._seen[key] = (None, counted, new)
                    continue
                if kind == self.OURS and new:
                    self.backends_started += 1
            self._sums[kind] += cpu - counted
            self._seen[key] = (kind, cpu, new)
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock, suppress(OSError):
                self._scan()

    def start(self) -> "PostgresCpu":
        with self._lock:
            self._base_total = self._scan(first=True)
        self._thread = threading.Thread(target=self._loop, name="postgres-cpu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def read(self) -> tuple[dict[str, float], set[str]]:
        """CPU seconds by kind since ``start`` (for ``process_meter``); other databases'
        backends are excluded (they are the machine's other load)."""
        with self._lock:
            total = self._scan() - self._base_total
            sums = dict(self._sums)
        sums[self.UNATTRIBUTED] = max(0.0, total - sum(sums.values()))
        return sums, {self.OTHERS}

    def __enter__(self) -> "PostgresCpu":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the scripted upstream, as a process of its own -------------------------------------------


@dataclass
class Upstream:
    process: subprocess.Popen[str]
    base_url: str  # http://127.0.0.1:PORT/v1

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")


@contextmanager
def scripted_upstream(chunks: int = CHUNKS, timeout: float = 30.0) -> Iterator[Upstream]:
    """``python -m tests.support.scripted_upstream`` on a free port (its default reply:
    ``chunks`` text chunks, no delay), stopped on exit."""
    command = [sys.executable, "-m", "tests.support.scripted_upstream", "--port", "0",
               "--chunks", str(chunks), "--chunk-delay", "0"]
    with announced_process(command, "scripted upstream", "/models", timeout) as (process, url):
        yield Upstream(process, url)


@dataclass(frozen=True)
class Scripts:
    """Named scripts for the upstream: a message holding ``[[script:NAME]]`` gets NAME's (the
    last one repeats; see ``tests.support.upstream_script``). A reset of the upstream's request
    log forgets them, so ``reset`` registers them again."""

    named: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)

    async def reset(self, control: httpx.AsyncClient) -> None:
        """Clear the upstream's request log (keeping it small), then register the scripts."""
        ok(await control.post("/_control/reset"))
        for name, scripts in self.named.items():
            ok(await control.post(f"/_control/register/{name}", json=[dict(s) for s in scripts]))


# --- one request ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One streamed request: when it started and ended, its time to first token, its outcome."""

    started: float
    ended: float
    ttft: float | None
    completed: bool
    error: str | None = None

    @property
    def total(self) -> float:
        return self.ended - self.started


def transport_errors(request: Callable[..., Awaitable[Sample]]) -> Callable[..., Awaitable[Sample]]:
    """A request that fails in transport (e.g. the server dropped the connection) or does not
    end within ``REQUEST_DEADLINE`` (stream pings keep httpx's read timeout from firing) is a
    sample with an error, not the end (or a hang) of the benchmark."""

    async def guarded(*args: Any) -> Sample:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_DEADLINE):
                return await request(*args)
        except httpx.HTTPError as exc:
            return Sample(started, time.perf_counter(), None, False,
                          f"{type(exc).__name__}: {exc}"[:200])
        except TimeoutError:
            return Sample(started, time.perf_counter(), None, False,
                          f"no end of stream within {REQUEST_DEADLINE:g} s")

    return guarded


@dataclass
class RunStream:
    """What one Assistants SSE stream showed: when its first and last message deltas and its
    ``event: done`` arrived, how many deltas, how it ended, and the data of
    ``thread.run.requires_action`` (the run, with the tool calls to answer) if it asked."""

    first_delta: float | None = None
    last_delta: float | None = None
    deltas: int = 0
    done: float | None = None
    completed: bool = False
    error: str | None = None
    requires_action: dict[str, Any] | None = None


async def read_run_stream(response: httpx.Response,
                          on_delta: Callable[[float], None] | None = None) -> RunStream:
    """Read a run's SSE stream to its end (after ``event: done``, so the connection is reused);
    ``on_delta`` is told the arrival time of each ``thread.message.delta``. A non-200 response
    is an error (its body read)."""
    seen = RunStream()
    if response.status_code != 200:
        text = (await response.aread())[:300].decode(errors="replace")
        seen.error = f"HTTP {response.status_code}: {text}"
        return seen
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[7:]
            if name == "thread.message.delta":
                now = time.perf_counter()
                if seen.first_delta is None:
                    seen.first_delta = now
                seen.last_delta = now
                seen.deltas += 1
                if on_delta is not None:
                    on_delta(now)
            elif name == "done":
                seen.done = time.perf_counter()
            elif name == "thread.run.completed":
                seen.completed = True
            elif name == "thread.run.requires_action":
                pass  # its data line follows
            elif name in END_EVENTS or name == "error":
                seen.error = name
        elif name == "thread.run.requires_action" and line.startswith("data: "):
            seen.requires_action = json.loads(line[6:])
    if seen.done is None:
        seen.error = seen.error or "stream ended without event: done"
    return seen


def _sample(started: float, seen: RunStream, complete: bool) -> Sample:
    ttft = None if seen.first_delta is None else seen.first_delta - started
    ended = seen.done if seen.done is not None else time.perf_counter()
    return Sample(started, ended, ttft, complete and seen.error is None, seen.error)


@transport_errors
async def runstep_run(client: httpx.AsyncClient, thread_id: str, assistant_id: str) -> Sample:
    """Create a streamed run and read its SSE stream to ``event: done``."""
    started = time.perf_counter()
    body = {"assistant_id": assistant_id, "stream": True}
    async with client.stream("POST", f"/v1/threads/{thread_id}/runs", json=body) as response:
        seen = await read_run_stream(response)
    return _sample(started, seen, seen.completed)


@transport_errors
async def function_run(client: httpx.AsyncClient, thread_id: str, assistant_id: str,
                       output: str) -> Sample:
    """A streamed run whose model calls a function: create it (its stream ends with
    ``thread.run.requires_action``), answer every call with ``output`` through
    ``submit_tool_outputs`` (streamed), read that stream to ``event: done``. TTFT is from the
    creation to the first message delta of the answer; a run that answers without calling
    (e.g. on a reused thread) is a sample as it is."""
    started = time.perf_counter()
    body = {"assistant_id": assistant_id, "stream": True}
    async with client.stream("POST", f"/v1/threads/{thread_id}/runs", json=body) as response:
        seen = await read_run_stream(response)
    action = seen.requires_action
    if action is None:
        return _sample(started, seen, seen.completed)
    calls = action["required_action"]["submit_tool_outputs"]["tool_calls"]
    submit = {"stream": True,
              "tool_outputs": [{"tool_call_id": call["id"], "output": output} for call in calls]}
    path = f"/v1/threads/{thread_id}/runs/{action['id']}/submit_tool_outputs"
    async with client.stream("POST", path, json=submit) as response:
        answer = await read_run_stream(response)
    return _sample(started, answer, answer.completed)


@transport_errors
async def direct_turns(client: httpx.AsyncClient, bodies: Sequence[dict[str, Any]]) -> Sample:
    """Stream each chat completion of ``bodies`` from the upstream in turn, each read to
    ``data: [DONE]``: what a client calling the upstream itself does for the same turns. TTFT
    is to the first content chunk (of whichever turn), total to the last ``[DONE]``."""
    started = time.perf_counter()
    ttft: float | None = None
    for body in bodies:
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
                    if any((c.get("delta") or {}).get("content")
                           for c in chunk.get("choices") or ()):
                        ttft = time.perf_counter() - started
        if ended is None:
            return Sample(started, time.perf_counter(), ttft, False,
                          "stream ended without [DONE]")
    return Sample(started, ended, ttft, ttft is not None)


# --- load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Warm up, then measure: by time (``seconds``) or by a number of requests (``runs``)."""

    warmup_seconds: float | None = None
    seconds: float | None = None
    warmup_runs: int | None = None
    runs: int | None = None

    def describe(self) -> dict[str, Any]:
        if self.seconds is not None:
            return {"warmup_seconds": self.warmup_seconds, "measure_seconds": self.seconds}
        return {"warmup_runs": self.warmup_runs, "measure_runs": self.runs}

    def window(self) -> str:
        """The measured window, for a table title."""
        if self.seconds is not None:
            return f"{self.seconds:g} s after {self.warmup_seconds:g} s warm-up"
        return f"{self.runs} runs after {self.warmup_runs} warm-up"

    @property
    def progress_total(self) -> int | None:
        """How many requests a phase makes, if known beforehand (for a progress bar)."""
        return self.runs + (self.warmup_runs or 0) if self.runs else None


@dataclass
class Phase:
    """What one measured phase saw."""

    samples: list[Sample] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)
    cpu: dict[str, Any] = field(default_factory=dict)


Call = Callable[[int], Awaitable[Sample]]


async def _loop_until(concurrency: int, call: Call, until: float, sink: list[Sample],
                      tick: Callable[[], None]) -> None:
    async def client(index: int) -> None:
        while time.perf_counter() < until:
            sample = await call(index)
            sink.append(sample)
            tick()
            if sample.error is not None and not sample.error.startswith("thread.run"):
                await asyncio.sleep(0.05)  # don't spin on a refusing server

    await asyncio.gather(*(client(i) for i in range(concurrency)))


async def _loop_count(concurrency: int, call: Call, count: int, sink: list[Sample],
                      tick: Callable[[], None]) -> None:
    tickets = iter(range(count))

    async def client(index: int) -> None:
        for _ in tickets:
            sink.append(await call(index))
            tick()

    await asyncio.gather(*(client(i) for i in range(concurrency)))


@dataclass(frozen=True)
class Workload:
    """What the clients call while warming up and while measured; ``prepare`` runs between the
    two, told how many requests the measured phase is expected to make."""

    warmup_call: Call
    call: Call
    prepare: Callable[[int], Awaitable[None]] | None = None


async def _snapshot_at(at: float, meter: Meter) -> CpuSnapshot:
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    return meter()


async def measure(concurrency: int, workload: Workload, budget: Budget, meter: Meter,
                  tick: Callable[[], None]) -> Phase:
    """By time: a first warm-up (drained) gives the rate, ``prepare`` runs, then the clients
    loop without a pause through a second warm-up into the measured window, so the window
    starts and ends in steady state; CPU snapshots are taken at its two ends.
    By count: warm-up runs (drained), ``prepare``, then the measured runs."""
    phase = Phase()
    warmup: list[Sample] = []
    if budget.seconds is not None:
        assert budget.warmup_seconds is not None
        started = time.perf_counter()
        await _loop_until(concurrency, workload.warmup_call, started + budget.warmup_seconds,
                          warmup, tick)
        rate = len(warmup) / (time.perf_counter() - started)
        expected = math.ceil(rate * (budget.warmup_seconds + budget.seconds) * POOL_HEADROOM)
        if workload.prepare is not None:
            await workload.prepare(expected + 2 * concurrency)
        start = time.perf_counter() + budget.warmup_seconds
        end = start + budget.seconds
        snapshots = [asyncio.create_task(_snapshot_at(at, meter)) for at in (start, end)]
        samples: list[Sample] = []
        await _loop_until(concurrency, workload.call, end, samples, tick)
        before, after = await asyncio.gather(*snapshots)
        phase.samples = [s for s in samples if s.ended > before.wall]
    else:
        assert budget.runs is not None and budget.warmup_runs is not None
        await _loop_count(concurrency, workload.warmup_call, budget.warmup_runs, warmup, tick)
        if workload.prepare is not None:
            await workload.prepare(budget.runs)
        before = meter()
        await _loop_count(concurrency, workload.call, budget.runs, phase.samples, tick)
        after = meter()
    phase.window = (before.wall, after.wall)
    done = [s for s in phase.samples if s.completed and s.ended <= after.wall]
    phase.cpu = cpu_usage(before, after, len(done))
    return phase


def summarize_phase(phase: Phase) -> dict[str, Any]:
    start, end = phase.window
    seconds = end - start
    completed = [s for s in phase.samples if s.completed and start < s.ended <= end]
    timed = [s for s in phase.samples if s.completed and start <= s.started < end]
    errors: dict[str, int] = {}
    for sample in phase.samples:
        if sample.error is not None:
            errors[sample.error[:120]] = errors.get(sample.error[:120], 0) + 1
    return {
        "window_seconds": seconds,
        "requests_started_in_window": sum(1 for s in phase.samples if s.started >= start),
        "completed_in_window": len(completed),
        "not_completed": sum(1 for s in phase.samples if not s.completed),
        "errors": errors,
        "per_second": len(completed) / seconds if seconds else None,
        "ttft": summarize([s.ttft for s in timed if s.ttft is not None]) if timed else None,
        "total": summarize([s.total for s in timed]) if timed else None,
        "cpu": phase.cpu,
    }


# --- a shared machine: quiet waits and disturbed phases ------------------------------------------

DISTURBED_CORES = 0.25  # other processes' cores above which a phase counts as disturbed
QUIET_CORES = 0.25  # before a phase, wait for the machine's busy cores to fall below this ...


async def wait_for_quiet(threshold_cores: float, max_seconds: float) -> dict[str, Any]:
    """Wait (up to ``max_seconds``) until the machine's busy cores over one second fall below
    ``threshold_cores`` (our processes are idle meanwhile); how long it waited, and the last
    busy cores seen."""
    started = time.perf_counter()
    cpus = os.cpu_count() or 1
    busy_cores = 0.0
    if max_seconds <= 0:
        return {"waited_seconds": 0.0, "busy_cores": None}
    while True:
        before = machine_ticks()
        await asyncio.sleep(1.0)
        after = machine_ticks()
        ticks = after[1] - before[1]
        busy_cores = cpus * (after[0] - before[0]) / ticks if ticks else 0.0
        waited = time.perf_counter() - started
        if busy_cores < threshold_cores or waited >= max_seconds:
            return {"waited_seconds": round(waited, 1), "busy_cores": round(busy_cores, 3)}


def other_cores(summary: Mapping[str, Any]) -> float:
    """What other processes used of the machine during a phase (``summarize_phase``)."""
    return float(summary["cpu"].get("other_processes_cores") or 0.0)


async def least_disturbed(attempt: Callable[[], Awaitable[dict[str, Any]]], attempts: int,
                          quiet_seconds: float, warn: Callable[[str], None],
                          label: str) -> dict[str, Any]:
    """A phase on a shared machine: wait (up to ``quiet_seconds``) for the machine to be quiet,
    measure (``attempt`` returns a ``summarize_phase`` summary), and while other processes
    used more than ``DISTURBED_CORES`` meanwhile, do both again, up to ``attempts`` times. The
    least disturbed summary, with ``disturbed``, ``attempt_kept`` and every attempt's gist."""
    done: list[dict[str, Any]] = []
    for number in range(1, attempts + 1):
        quiet = await wait_for_quiet(QUIET_CORES, quiet_seconds)
        load_average = list(os.getloadavg())
        summary = await attempt()
        summary["before"] = {"quiet_wait": quiet, "load_average": load_average}
        done.append(summary)
        other = other_cores(summary)
        if other <= DISTURBED_CORES:
            break
        if number < attempts:
            warn(f"{label}: other processes used {other:.2f} cores (> {DISTURBED_CORES:g}); "
                 "measuring again")
    kept = min(range(len(done)), key=lambda i: other_cores(done[i]))
    level = done[kept]
    level["disturbed"] = other_cores(level) > DISTURBED_CORES
    level["attempt_kept"] = kept + 1
    level["attempts"] = [
        {"other_processes_cores": other_cores(a), "per_second": a["per_second"],
         "ttft_p50_ms": a["ttft"]["p50_ms"] if a["ttft"] else None,
         "ttft_p99_ms": a["ttft"]["p99_ms"] if a["ttft"] else None}
        for a in done]
    return level


# --- threads and clients ------------------------------------------------------------------------


def ok(response: httpx.Response) -> Any:
    """The JSON body of a successful response; raises with the body otherwise."""
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> "
                           f"{response.status_code}: {response.text[:500]}")
    return response.json()


async def new_thread(client: httpx.AsyncClient, message: str) -> str:
    """A new thread holding one user message."""
    body = {"messages": [{"role": "user", "content": message}]}
    thread_id: str = ok(await client.post("/v1/threads", json=body))["id"]
    return thread_id


class Threads:
    """Where each client's next run goes: in the first warm-up, the client's own thread
    (reused); after it, a fresh thread from a pool made beforehand (with ``FRESH_THREADS``), so
    every measured run sees the same one-message thread and asks the upstream exactly the same.
    A client whose pool ran dry reuses its previous thread (counted)."""

    def __init__(self, client: httpx.AsyncClient, own: list[str], message: str) -> None:
        self.client, self.own, self.message = client, own, message
        self.pool: list[str] = []
        self.reused = 0
        self.created = 0

    @classmethod
    async def make(cls, client: httpx.AsyncClient, clients: int, message: str) -> "Threads":
        """One own thread per client."""
        own = [await new_thread(client, message) for _ in range(clients)]
        return cls(client, own, message)

    def warmup(self, index: int) -> str:
        return self.own[index]

    def measured(self, index: int) -> str:
        if not FRESH_THREADS:
            return self.own[index]
        if self.pool:
            self.own[index] = self.pool.pop()
            return self.own[index]
        self.reused += 1
        return self.own[index]

    async def fill(self, count: int) -> None:
        if not FRESH_THREADS:
            return
        gate = asyncio.Semaphore(THREAD_CREATORS)

        async def one() -> str:
            async with gate:
                return await new_thread(self.client, self.message)

        self.pool = list(await asyncio.gather(*(one() for _ in range(count))))
        self.created += count

    def describe(self) -> dict[str, Any]:
        return {"fresh_per_run": FRESH_THREADS, "pool_created": self.created,
                "runs_on_a_reused_thread": self.reused}


def calls_on(threads: Threads, call: Callable[[str], Awaitable[Sample]]) -> Workload:
    """``call`` (a run on the thread it is given) on the threads ``threads`` hands out."""
    return Workload(lambda i: call(threads.warmup(i)), lambda i: call(threads.measured(i)),
                    threads.fill)


def runs_on(client: httpx.AsyncClient, threads: Threads, assistant_id: str) -> Workload:
    """Streamed runs of ``assistant_id``, on the threads ``threads`` hands out."""
    return calls_on(threads, lambda thread: runstep_run(client, thread, assistant_id))


KEEPALIVE_EXPIRY = 4.0  # under uvicorn's 5 s: the client drops an idle connection first


def client_limits(concurrency: int) -> httpx.Limits:
    """Room for ``concurrency`` requests; idle connections are dropped before the server's
    keep-alive ends, so none is reused just as the server closes it (an ``httpx.ReadError``
    after a pause between phases)."""
    return httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8,
                        keepalive_expiry=KEEPALIVE_EXPIRY)


def event_loop_runner() -> Callable[[Awaitable[Any]], Any]:
    """uvloop when installed (as uvicorn uses it): it keeps the load generator's CPU down."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run  # type: ignore[return-value]
    return uvloop.run  # type: ignore[no-any-return]
