"""The migrations build exactly the schema in ``runstep.store.tables``, on both stores, and
``runstep migrate`` is idempotent and safe to run from several processes at once."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from pprint import pformat
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from runstep.store import migrate, tables
from runstep.store.db import Database
from tests.support import databases

MIGRATE_TIMEOUT_SECONDS = 120


def schema_diff(url: str) -> list[Any]:
    """Alembic's autogenerate diff between the live schema and ``tables.metadata``."""
    engine = sa.create_engine(databases.sync_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, tables.metadata))
    finally:
        engine.dispose()


def assert_schema_matches_tables(url: str) -> None:
    diff = schema_diff(url)
    assert diff == [], "migrated schema differs from runstep.store.tables:\n" + pformat(diff)


async def revision_of(url: str) -> str | None:
    database = Database(url)
    try:
        return await migrate.current_revision(database.engine)
    finally:
        await database.close()


def test_migrated_schema_matches_tables(database_url: str) -> None:
    assert_schema_matches_tables(database_url)


async def test_migrated_database_is_at_head(database_url: str) -> None:
    assert await revision_of(database_url) == migrate.head_revision()


async def test_upgrade_twice_is_a_noop(database_url: str) -> None:
    """Re-running ``upgrade`` keeps the revision, the schema and the data."""
    database = Database(database_url)
    try:
        async with database.write() as conn:
            await conn.execute(tables.projects.insert().values(id="proj", name="p", created_at=1))
        for _ in range(2):
            await migrate.upgrade(database.engine)
        async with database.read() as conn:
            projects = (await conn.execute(sa.select(tables.projects.c.id))).scalars().all()
    finally:
        await database.close()

    assert projects == ["proj"]
    assert await revision_of(database_url) == migrate.head_revision()
    assert_schema_matches_tables(database_url)


# --- concurrent `runstep migrate` on PostgreSQL ---------------------------------------------


def connect(url: str) -> psycopg.Connection:
    """A plain autocommit psycopg connection to the database at a SQLAlchemy ``url``."""
    parsed = sa.make_url(url)
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        dbname=parsed.database,
        autocommit=True,
    )


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A brand-new PostgreSQL database with no tables at all (not cloned from the template)."""
    name = f"runstep_test_empty_{uuid.uuid4().hex[:12]}"
    with connect(databases.POSTGRES_URL) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(databases.POSTGRES_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with connect(databases.POSTGRES_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_migrate(url: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RUNSTEP_DATABASE_URL": url, "RUNSTEP_DATA_DIR": str(data_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "runstep", "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def migrate_processes(
    url: str, count: int, tmp_path: Path
) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` concurrent ``runstep migrate`` processes, killed if the test leaves early."""
    processes = [start_migrate(url, tmp_path / f"migrate-{i}") for i in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def waiters_on_migration_lock(conn: psycopg.Connection) -> int:
    """Sessions queued on the (bigint-keyed) advisory lock that ``runstep migrate`` takes."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s",
        (migrate._PG_MIGRATION_LOCK,),
    ).fetchone()
    return 0 if row is None else int(row[0])


def wait_until_queued(conn: psycopg.Connection, processes: list[subprocess.Popen[str]]) -> None:
    """Block until every process waits on the migration lock; fail if one exits first."""
    deadline = time.monotonic() + MIGRATE_TIMEOUT_SECONDS
    while waiters_on_migration_lock(conn) < len(processes):
        for process in processes:
            if process.poll() is not None:
                output = process.communicate()[0]
                pytest.fail(
                    f"migrate exited ({process.returncode}) without waiting for the "
                    f"migration lock:\n{output}"
                )
        if time.monotonic() > deadline:
            pytest.fail("migrate processes never queued on the migration lock")
        time.sleep(0.05)


def test_concurrent_migrate_processes_both_succeed(empty_postgres_url: str, tmp_path: Path) -> None:
    """Two ``runstep migrate`` processes, released together onto an empty database, both
    succeed and leave it at head: the advisory lock serializes them."""
    with connect(empty_postgres_url) as holder:
        # Hold the migration lock so both processes queue behind it, then race on release.
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate._PG_MIGRATION_LOCK,))
        with migrate_processes(empty_postgres_url, 2, tmp_path) as processes:
            try:
                wait_until_queued(holder, processes)
            finally:
                holder.execute("SELECT pg_advisory_unlock(%s)", (migrate._PG_MIGRATION_LOCK,))
            outputs = [proc.communicate(timeout=MIGRATE_TIMEOUT_SECONDS)[0] for proc in processes]

    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    assert_schema_matches_tables(empty_postgres_url)
    with connect(empty_postgres_url) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(migrate.head_revision(),)]
