"""Shared benchmark helpers: machine description, latency summaries, results, servers."""

import json
import math
import os
import platform
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

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


def _postgres_admin() -> psycopg.Connection:
    url = sa.make_url(databases.POSTGRES_URL)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                           password=url.password, dbname=url.database, autocommit=True)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of its own (not the tests' shared template),
    dropped on exit; yields its SQLAlchemy URL."""
    name = f"runstep_bench_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(databases.POSTGRES_URL).set(database=name).render_as_string(
        hide_password=False)
    try:
        databases.migrate_sync(url)
        yield url
    finally:
        databases.drop_postgres_database(url)


@contextmanager
def _database_url(store: Store, directory: Path) -> Iterator[str]:
    if store == "sqlite":
        yield databases.sqlite_url(directory)  # the server migrates SQLite itself
    else:
        with postgres_database() as url:
            yield url


@contextmanager
def running_server(store: Store, api_keys: Sequence[str]) -> Iterator[ServerProcess]:
    """A real ``runstep serve`` on a free port with a throw-away store and static API keys."""
    with tempfile.TemporaryDirectory(prefix=f"runstep-bench-{store}-") as tmp:
        directory = Path(tmp)
        with _database_url(store, directory) as url:
            env = {"RUNSTEP_DATA_DIR": str(directory), "RUNSTEP_DATABASE_URL": url,
                   "RUNSTEP_API_KEYS": ",".join(api_keys)}
            server = ServerProcess(env=env, log_path=directory / "server.log").start()
            try:
                yield server
            finally:
                server.stop()


# --- running benchmarks ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """What every benchmark receives from ``python -m bench``."""

    quick: bool
    progress: Progress
    console: Console


Benchmark = Callable[[RunOptions], dict[str, Any]]
"""A benchmark: runs, prints its summary, returns the JSON payload for its result file."""
