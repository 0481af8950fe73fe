"""The distributed mode for real: API processes (``serve --no-worker``) and worker processes
(``runstep worker``) sharing one fresh PostgreSQL database, with short timings.

``cluster`` (one per package) is two API processes and two workers. Tests that kill or stop a
worker leave it to ``cluster.ensure_workers()`` (the ``running`` fixture calls it before each
test) to bring the count back to two. Each worker's lease-owner name (``worker:HOST:PID:...``,
read from its log) tells which process holds a run. Every process and the database are removed
by finalizers, whatever happens."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import upstream_env
from tests.distributed.helpers import TOKEN, Sql, eventually
from tests.support import databases
from tests.support.processes import WorkerProcess
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.server import ServerProcess
from tests.support.validating_client import client as validating_client

WORKER_CONCURRENCY = 8  # small enough that a burst of runs is shared by both workers
TIMINGS = {
    "RUNSTEP_LEASE_SECONDS": "2",
    "RUNSTEP_WORKER_POLL_SECONDS": "0.2",
    "RUNSTEP_SWEEP_SECONDS": "0.5",
    "RUNSTEP_DELTA_FLUSH_SECONDS": "0.05",
    "RUNSTEP_SHUTDOWN_SECONDS": "8",
    "RUNSTEP_RUN_MAX_CLAIMS": "2",  # a run survives one crash; two in a row fail it
}


def fresh_postgres(request: pytest.FixtureRequest) -> str:
    """A new migrated PostgreSQL database, dropped (with force) at teardown."""
    request.getfixturevalue("postgres_template")
    url = databases.create_postgres_database()
    request.addfinalizer(lambda: databases.drop_postgres_database(url))
    return url


def start_all(*processes: ServerProcess | WorkerProcess) -> None:
    """Start processes in parallel (each takes a second or two to import)."""
    with ThreadPoolExecutor(len(processes)) as pool:
        for started in [pool.submit(p.start) for p in processes]:
            started.result()


@dataclass
class Cluster:
    database_url: str
    directory: Path
    env: dict[str, str]
    upstream: ScriptedUpstream
    apis: list[ServerProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    retired: list[WorkerProcess] = field(default_factory=list)  # dead or stopped, for teardown
    _clients: list[openai.OpenAI] = field(default_factory=list)
    _started: int = 0

    @property
    def sql(self) -> Sql:
        return Sql(self.database_url)

    @property
    def a(self) -> ServerProcess:
        return self.apis[0]

    @property
    def b(self) -> ServerProcess:
        return self.apis[1]

    def client(self, api: ServerProcess) -> openai.OpenAI:
        """The official client on ``api``, validating every response against the spec."""
        official = validating_client(api.base_url, TOKEN)
        self._clients.append(official)
        return official

    def new_worker(self, **env: str) -> WorkerProcess:
        """A worker process (not started yet) with the cluster's settings plus ``env``."""
        self._started += 1
        return WorkerProcess(
            env={**self.env, **env},
            log_path=self.directory / f"worker-{self._started}.log",
            args=("--concurrency", str(WORKER_CONCURRENCY)),
        )

    def add_worker(self, **env: str) -> WorkerProcess:
        worker = self.new_worker(**env).start()
        self.workers.append(worker)
        return worker

    def ensure_workers(self, count: int = 2) -> None:
        """Retire dead workers and start new ones until ``count`` are running."""
        for worker in [w for w in self.workers if not w.alive]:
            self.workers.remove(worker)
            self.retired.append(worker)
        missing = [self.new_worker() for _ in range(count - len(self.workers))]
        self.workers += missing
        if missing:
            start_all(*missing)

    def retire(self, worker: WorkerProcess) -> None:
        """Stop an extra worker a test added."""
        worker.stop()
        if worker in self.workers:
            self.workers.remove(worker)
            self.retired.append(worker)

    def worker_named(self, owner: str | None) -> WorkerProcess | None:
        return next((w for w in [*self.workers, *self.retired] if w.owner == owner), None)

    def holder(self, run_id: str, timeout: float = 5.0) -> WorkerProcess:
        """The worker process holding ``run_id``'s lease (waits until one does)."""
        return eventually(
            lambda: self.worker_named(self.sql.lease_owner(run_id)),
            timeout,
            f"a worker holding {run_id}",
        )

    def stop(self) -> None:
        for official in self._clients:
            official.close()
        for worker in [*self.workers, *self.retired]:
            worker.stop()
        for api in self.apis:
            api.stop()


def cluster_env(database_url: str, directory: Path, upstream: ScriptedUpstream) -> dict[str, str]:
    return {
        "RUNSTEP_DATABASE_URL": database_url,
        "RUNSTEP_DATA_DIR": str(directory),
        **upstream_env(upstream),
        **TIMINGS,
    }


def start_cluster(
    request: pytest.FixtureRequest, directory: Path, upstream: ScriptedUpstream, **env: str
) -> Cluster:
    """Two API processes and two workers on one fresh PostgreSQL database (open mode: no keys,
    any bearer token from loopback), every process with the cluster's settings plus ``env``;
    stopped, and the database dropped, when ``request``'s scope ends."""
    url = fresh_postgres(request)
    settings = {**cluster_env(url, directory, upstream), **env}
    cluster = Cluster(url, directory, settings, upstream)
    request.addfinalizer(cluster.stop)
    cluster.apis = [
        ServerProcess(env=settings, log_path=directory / f"api-{name}.log", args=("--no-worker",))
        for name in ("a", "b")
    ]
    cluster.workers = [cluster.new_worker() for _ in range(2)]
    start_all(*cluster.apis, *cluster.workers)
    return cluster


@pytest.fixture(scope="package")
def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
) -> Iterator[Cluster]:
    """The package's cluster: two API processes and two workers (see `start_cluster`)."""
    yield start_cluster(request, tmp_path_factory.mktemp("cluster"), upstream)


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    """The cluster with two live workers (replacing any a previous test killed or stopped)."""
    cluster.ensure_workers()
    return cluster


@pytest.fixture
def streams() -> Iterator[list[Any]]:
    """Live streams a test opens; closed at teardown even when the test fails midway."""
    opened: list[Any] = []
    yield opened
    for stream in opened:
        stream.close()
