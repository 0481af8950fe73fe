"""The database engine and its two kinds of transaction: reads, and serialized writes."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from runstep.store import sqlite_inline

# Errors that mean "the database is unreachable right now", not "the request was wrong".
DATABASE_DOWN: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    ConnectionError,
)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and explicit BEGINs (``BEGIN IMMEDIATE`` for writes)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


#: Connections one process opens to PostgreSQL at most (``RUNSTEP_DATABASE_POOL_SIZE``).
DEFAULT_POOL_SIZE = 20


def create_engine(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncEngine:
    """An async engine for a SQLite or PostgreSQL URL, tuned for this server."""
    if url.startswith("sqlite"):
        database = sa.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=8,
            max_overflow=8,
            async_creator=partial(sqlite_inline.connect, str(database)),
        )
        _configure_sqlite(engine)
        return engine
    # Pre-ping costs a round trip per checkout but turns a connection that died with the
    # server into a reconnect instead of a failed request. The pool is a hard bound: beyond it
    # transactions wait for a connection (each is held for milliseconds), so the processes of
    # a deployment stay within PostgreSQL's max_connections instead of being refused by it.
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


class Database:
    """Owns the engine. SQLite allows one writer, so writes are serialized in-process."""

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (a snapshot transaction, rolled back at the end)."""
        async with self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends without an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_lock, self.engine.connect() as connection:
            connection = await connection.execution_options(sqlite_begin="IMMEDIATE")
            async with connection.begin():
                yield connection

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
