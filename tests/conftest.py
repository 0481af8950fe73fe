"""Shared fixtures: fresh databases on both stores, and a real server process per store."""

import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from hypothesis import settings as hypothesis_settings

from runstep.services.keys import create_key
from runstep.store.db import Database
from tests.support import databases
from tests.support.asyncio_bridge import run_sync
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.server import ServerProcess
from tests.support.validating_client import client as validating_client

BACKENDS = ["sqlite", "postgresql"]
STATIC_KEY = "sk-static-test-key"
UPSTREAM_KEY = "sk-upstream-test-key"
# The code_interpreter sandbox's own environment, made by scripts/test (runstep sandbox setup).
SANDBOX_PYTHON = Path(__file__).resolve().parent.parent / ".cache/code-interpreter/bin/python"
SANDBOX_ENV = {
    "RUNSTEP_CODE_INTERPRETER_PYTHON": str(SANDBOX_PYTHON),
    "RUNSTEP_CODE_INTERPRETER_WALL_SECONDS": "3",
    "RUNSTEP_CODE_INTERPRETER_CPU_SECONDS": "3",
    "RUNSTEP_CODE_INTERPRETER_MEMORY_MB": "768",
    "RUNSTEP_CODE_INTERPRETER_MAX_PROCESSES": "32",
    "RUNSTEP_CODE_INTERPRETER_MAX_OUTPUT_BYTES": str(1024 * 1024),
}


TEST_SECONDS = 120

# Property-based tests explore new examples on every local run; in CI (CI=true) they replay the
# same ones, so a red build is reproducible and never a coin toss.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Fail a test that hangs (e.g. a run that never ends makes the SDK's pollers loop forever)
    instead of blocking the whole session."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"test still running after {TEST_SECONDS}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[None]:
    databases.prepare_postgres_template()
    yield
    databases.drop_postgres_template()


def _fresh_database(backend: str, directory: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        url = databases.sqlite_url(directory)
        databases.migrate_sync(url)
        return url
    request.getfixturevalue("postgres_template")
    url = databases.create_postgres_database()
    request.addfinalizer(lambda: databases.drop_postgres_database(url))
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated, empty database on each store."""
    return _fresh_database(request.param, tmp_path, request)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.close()


@dataclass
class RunningServer:
    process: ServerProcess
    database_url: str
    backend: str

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def new_key(self) -> str:
        """A stored key in a new project: a clean tenant for one test."""
        return self.new_tenant()[0]

    def new_tenant(self) -> tuple[str, str]:
        """(key, project id) of a new project with one stored key."""

        async def issue() -> tuple[str, str]:
            database = Database(self.database_url)
            try:
                issued = await create_key(database, "test")
                return issued.key, issued.project_id
            finally:
                await database.close()

        return run_sync(issue())


@pytest.fixture(scope="session")
def upstream() -> Iterator[ScriptedUpstream]:
    """The scripted Chat Completions server every test server talks to."""
    with ScriptedUpstream() as scripted:
        yield scripted


def upstream_env(upstream: ScriptedUpstream) -> dict[str, str]:
    """Environment pointing a server at the scripted upstream, with fast retries."""
    return {
        "RUNSTEP_UPSTREAM_BASE_URL": upstream.base_url,
        "RUNSTEP_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "RUNSTEP_UPSTREAM_MAX_RETRIES": "1",
        "RUNSTEP_UPSTREAM_TIMEOUT_SECONDS": "2",
    }


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
) -> Iterator[RunningServer]:
    """A real ``runstep serve`` process, one per store, shared by the session."""
    directory = tmp_path_factory.mktemp(f"server-{request.param}")
    url = _fresh_database(request.param, directory, request)
    env = {
        "RUNSTEP_DATA_DIR": str(directory),
        "RUNSTEP_DATABASE_URL": url,
        "RUNSTEP_API_KEYS": STATIC_KEY,
        **upstream_env(upstream),
        **SANDBOX_ENV,
    }
    process = ServerProcess(env=env, log_path=directory / "server.log").start()
    yield RunningServer(process, url, request.param)
    process.stop()


@pytest.fixture
def api_key(server: RunningServer) -> str:
    return server.new_key()


@pytest.fixture
def client(server: RunningServer, api_key: str) -> Iterator[openai.OpenAI]:
    """The official client, as a fresh tenant, validating every response against the spec."""
    with validating_client(server.base_url, api_key) as official:
        yield official


@contextmanager
def sqlite_server(directory: Path, **env: str) -> Iterator[ServerProcess]:
    """A server of its own, on SQLite in ``directory``, with ``env`` on top of the static key."""
    base = {"RUNSTEP_DATA_DIR": str(directory), "RUNSTEP_DATABASE_URL": ""}
    process = ServerProcess(
        env={**base, "RUNSTEP_API_KEYS": STATIC_KEY, **env}, log_path=directory / "server.log"
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with no upstream configured (runs use the local stand-in), on SQLite."""
    no_upstream = {"RUNSTEP_UPSTREAM_BASE_URL": "", "RUNSTEP_UPSTREAM_API_KEY": ""}
    with sqlite_server(tmp_path_factory.mktemp("local-model"), **no_upstream, **SANDBOX_ENV) as up:
        yield up


@pytest.fixture
def local_client(local_server: ServerProcess) -> Iterator[openai.OpenAI]:
    with validating_client(local_server.base_url, STATIC_KEY) as official:
        yield official
