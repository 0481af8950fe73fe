"""An aiosqlite-shaped SQLite connection whose calls run inline on the event loop.

SQLAlchemy's async SQLite dialect speaks to aiosqlite, which runs every statement on a
thread of its own: each call is a round trip between threads, and that hand-off cost more
than the statements themselves. SQLite statements here take microseconds (WAL, no fsync per
commit, one writer at a time within the process), so running them inline is cheaper and
keeps the loop responsive. Plugged in through ``create_async_engine(async_creator=...)``."""

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any


class InlineCursor:
    """The subset of ``aiosqlite.Cursor`` that SQLAlchemy's adapter uses."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> "InlineCursor":
        return self

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> "InlineCursor":
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> "InlineCursor":
        self._cursor.executemany(sql, rows)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class InlineConnection:
    """The subset of ``aiosqlite.Connection`` that SQLAlchemy's adapter uses."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection

    @property
    def _live(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("Connection closed")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._live.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._live.cursor())

    async def commit(self) -> None:
        self._live.commit()

    async def rollback(self) -> None:
        self._live.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._live.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def connect(path: str) -> InlineConnection:
    """Open ``path`` in autocommit mode: transactions are begun explicitly (``db.py``)."""
    return InlineConnection(sqlite3.connect(path, isolation_level=None, check_same_thread=False))
