"""The per-run event log: every stream event of a run, in order, as compact JSON text."""

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.store import tables
from runstep.store.notify import EVENTS, notify


@dataclass(frozen=True)
class Event:
    """One stream event: ``seq`` orders it within its run; ``data`` is one line of JSON."""

    seq: int
    event: str
    data: str


def encode(obj: Any) -> str:
    """Compact, single-line JSON, as SSE ``data:`` lines need."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


async def insert(conn: AsyncConnection, run_id: str, events: list[Event], created_at: int) -> None:
    """Persist events (the caller records the run's ``last_seq`` in the same transaction)."""
    if not events:
        return
    await conn.execute(
        tables.run_events.insert(),
        [
            {
                "run_id": run_id,
                "seq": e.seq,
                "event": e.event,
                "data": e.data,
                "created_at": created_at,
            }
            for e in events
        ],
    )
    await notify(conn, EVENTS, run_id)


async def read_after(
    conn: AsyncConnection, run_id: str, after_seq: int, limit: int = 1000
) -> list[Event]:
    """The persisted events of a run with ``seq > after_seq``, in order."""
    columns = tables.run_events.c
    rows = await conn.execute(
        sa.select(columns.seq, columns.event, columns.data)
        .where(columns.run_id == run_id, columns.seq > after_seq)
        .order_by(columns.seq)
        .limit(limit)
    )
    return [Event(seq=row.seq, event=row.event, data=row.data) for row in rows]


async def delete_for_thread(conn: AsyncConnection, thread_id: str) -> None:
    """Delete the event logs of every run of a thread."""
    runs_of_thread = sa.select(tables.runs.c.id).where(tables.runs.c.thread_id == thread_id)
    await conn.execute(
        tables.run_events.delete().where(tables.run_events.c.run_id.in_(runs_of_thread))
    )


DELTA_EVENTS = ("thread.message.delta", "thread.run.step.delta")


async def compact(conn: AsyncConnection, finished_statuses: tuple[str, ...], before: int) -> int:
    """Delete delta events older than ``before`` of runs that have finished. Run, step and
    message objects keep everything; a replay then shows each object's final state."""
    finished = sa.select(tables.runs.c.id).where(tables.runs.c.status.in_(finished_statuses))
    columns = tables.run_events.c
    result = await conn.execute(
        tables.run_events.delete().where(
            columns.event.in_(DELTA_EVENTS),
            columns.created_at < before,
            columns.run_id.in_(finished),
        )
    )
    return int(result.rowcount or 0)
