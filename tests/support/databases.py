"""Fresh, migrated databases for tests: SQLite files, and PostgreSQL databases cloned from a
template that is migrated once per test session."""

import os
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa

from runstep.store import migrate

POSTGRES_URL = os.environ.get(
    "RUNSTEP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# One template per test session, so concurrent sessions never drop each other's.
TEMPLATE = f"runstep_test_template_{uuid.uuid4().hex[:8]}"


def _admin() -> psycopg.Connection:
    url = sa.make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        dbname=url.database,
        autocommit=True,
    )


def _url_for(database: str) -> str:
    return sa.make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (psycopg 3 is both)."""
    return url.replace("sqlite+aiosqlite", "sqlite")


def migrate_sync(url: str) -> None:
    """Bring a database at ``url`` (async driver URL) to the newest schema."""
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            migrate.upgrade_connection(connection)
    finally:
        engine.dispose()


def prepare_postgres_template() -> None:
    """(Re)create the migrated template database; once per test session."""
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    migrate_sync(_url_for(TEMPLATE))


def drop_postgres_template() -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


def create_postgres_database() -> str:
    """A new database cloned from the template; returns its SQLAlchemy URL."""
    name = f"runstep_test_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return _url_for(name)


def drop_postgres_database(url: str) -> None:
    name = sa.make_url(url).database
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'runstep.sqlite3'}"
