"""Fixtures for the code_interpreter sandbox tests: real bubblewrap, real processes, short
limits. The sandbox's interpreter environment is the one scripts/test creates
(``runstep sandbox setup --path .cache/code-interpreter``)."""

import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runstep.tools.code_interpreter import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(
    os.environ.get("RUNSTEP_TEST_SANDBOX_PYTHON", ROOT / ".cache/code-interpreter/bin/python")
)
MIB = 1024 * 1024

# Short limits keep the tests fast; each test overrides what it exercises.
TEST_LIMITS = dict(
    wall_seconds=10.0,
    cpu_seconds=10.0,
    memory_bytes=768 * MIB,
    max_processes=32,
    max_output_bytes=200_000,
    max_log_bytes=8_000,
    max_file_bytes=1 * MIB,
    max_dir_bytes=4 * MIB,
    tmp_bytes=16 * MIB,
    max_sessions=8,
    interrupt_grace_seconds=1.0,
)


@pytest.fixture(scope="session")
def sandbox_python() -> Path:
    if not PYTHON.exists():
        pytest.fail(
            f"no sandbox interpreter at {PYTHON}: run scripts/test (or "
            "`.venv/bin/runstep sandbox setup --path .cache/code-interpreter`)"
        )
    return PYTHON


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A server data directory, with the things the sandbox must not see."""
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "runstep.sqlite3").write_bytes(b"SQLite format 3\0 secret rows")
    (directory / "secret.txt").write_text("server secret")
    return directory


@pytest.fixture
async def make_sandbox(
    sandbox_python: Path, data_dir: Path
) -> AsyncIterator[Callable[..., Sandbox]]:
    made: list[Sandbox] = []

    def make(**overrides: object) -> Sandbox:
        config = SandboxConfig(
            python=sandbox_python, work_dir=data_dir / "code-interpreter", **TEST_LIMITS
        )
        sandbox = Sandbox(dataclasses.replace(config, **overrides))
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        await sandbox.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()
