"""Shared benchmark helpers: machine description, latency summaries, results, servers."""

import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
import sqlalchemy as sa
from rich.console import Console
from rich.progress import Progress

import runstep
from tests.support import databases
from tests.support.server import ServerProcess

Store = Literal["sqlite", "postgresql"]
STORES: tuple[Store, ...] = ("sqlite", "postgresql")
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLOTS_DIR = Path(__file__).resolve().parent / "plots"  # the latest full run's plots (committed)


# --- machine description ---------------------------------------------------------------------


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine_description() -> dict[str, Any]:
    """Where and on what code a result was measured."""
    status = _git("status", "--porcelain")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "runstep_version": runstep.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def raise_file_limit(wanted: int) -> dict[str, int]:
    """Raise this process's open-file limit (inherited by the processes it starts) towards
    ``wanted``, up to the hard limit; the soft and hard limits now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return {"soft": soft, "hard": hard}


def source_fingerprint(package: str = "runstep") -> dict[str, Any]:
    """What code of ``package`` was measured, when its working tree may be changing under the
    benchmark (others edit it concurrently): a SHA-256 of its ``.py`` files (paths and
    contents) and the files git reports as changed or new."""
    root = REPO_ROOT / package
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    status = _git("status", "--porcelain", "--", package)
    changed = [line.split(maxsplit=1)[1] for line in status.splitlines()] if status else []
    return {"sha256": digest.hexdigest(), "changed_files": changed}


# --- statistics ------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile of an already sorted, non-empty sequence."""
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/mean/min/max in milliseconds of durations given in seconds."""
    if not seconds:
        raise ValueError("no samples")
    ordered = sorted(s * 1000.0 for s in seconds)
    stats = {f"p{p}_ms": percentile(ordered, p / 100) for p in (50, 90, 99)}
    return {"n": len(ordered), **stats, "mean_ms": sum(ordered) / len(ordered),
            "min_ms": ordered[0], "max_ms": ordered[-1]}


# --- results ---------------------------------------------------------------------------------


def write_result(name: str, payload: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` plus the machine description to ``<directory>/<name>.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    document = {"benchmark": name, "machine": machine_description(), **payload}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


# --- servers ---------------------------------------------------------------------------------


def postgres_admin() -> psycopg.Connection:
    """An autocommit connection to the PostgreSQL server the benchmarks use."""
    url = sa.make_url(databases.POSTGRES_URL)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                           password=url.password, dbname=url.database, autocommit=True)


def migrate_with_cli(url: str) -> None:
    """``runstep migrate`` against ``url``, as an operator would run it."""
    env = {**os.environ, "RUNSTEP_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "runstep", "migrate"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"runstep migrate failed ({done.returncode}):\n"
                           f"{(done.stdout + done.stderr)[-4000:]}")


@contextmanager
def postgres_database(
    migrate: Callable[[str], None] = databases.migrate_sync, keep: Sequence[bool] = (False,)
) -> Iterator[str]:
    """A fresh PostgreSQL database of its own (not the tests' shared template), brought to the
    newest schema by ``migrate`` (in process by default; ``migrate_with_cli`` runs
    ``runstep migrate``), dropped on exit unless ``keep[0]`` was set meanwhile; yields its
    SQLAlchemy URL."""
    name = f"runstep_bench_{uuid.uuid4().hex[:12]}"
    with postgres_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(databases.POSTGRES_URL).set(database=name).render_as_string(
        hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        if not keep[0]:
            databases.drop_postgres_database(url)


@contextmanager
def _database_url(store: Store, directory: Path) -> Iterator[str]:
    if store == "sqlite":
        yield databases.sqlite_url(directory)  # the server migrates SQLite itself
    else:
        with postgres_database() as url:
            yield url


@contextmanager
def running_server(
    store: Store, api_keys: Sequence[str], env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A real ``runstep serve`` on a free port with a throw-away store and static API keys;
    ``env`` adds (or overrides) environment variables of the server process."""
    with tempfile.TemporaryDirectory(prefix=f"runstep-bench-{store}-") as tmp:
        directory = Path(tmp)
        with _database_url(store, directory) as url:
            server_env = {"RUNSTEP_DATA_DIR": str(directory), "RUNSTEP_DATABASE_URL": url,
                          "RUNSTEP_API_KEYS": ",".join(api_keys), **(env or {})}
            server = ServerProcess(env=server_env, log_path=directory / "server.log").start()
            try:
                yield server
            finally:
                server.stop()


@contextmanager
def announced_process(
    command: Sequence[str], name: str, probe: str, timeout: float = 30.0
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``command``, which prints ``... listening on URL`` first; yield the process and
    URL once ``URL + probe`` answers 200; stop it on exit. ``name`` is for errors."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"{name} did not start: {line!r}")
        url = line.rpartition("listening on ")[2].strip()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}{probe}", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{name} is not answering")
            time.sleep(0.05)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# --- running benchmarks ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """What every benchmark receives from ``python -m bench``."""

    quick: bool
    progress: Progress
    console: Console
    results_dir: Path = RESULTS_DIR


Benchmark = Callable[[RunOptions], dict[str, Any]]
"""A benchmark: runs, prints its summary, returns the JSON payload for its result file."""
