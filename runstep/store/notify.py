"""NOTIFY inside a write transaction (PostgreSQL only): delivered when the data is committed."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.store.db import Database

EVENTS = "runstep_events"  # payload: run id; new events in its log
CONTROL = "runstep_control"  # payload: run id; e.g. a cancel was requested
WORK = "runstep_work"  # a run is waiting for a worker


async def notify(conn: AsyncConnection, channel: str, payload: str = "") -> None:
    """Queue a notification for other processes; a no-op on SQLite (one process)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_notify(channel, payload)))


async def notify_now(db: Database, channel: str, payload: str = "") -> None:
    """Send a notification in a transaction of its own (no-op on SQLite)."""
    if not db.is_sqlite:
        async with db.write() as conn:
            await notify(conn, channel, payload)
