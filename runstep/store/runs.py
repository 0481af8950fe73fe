"""Run leases: claiming runs for a worker, renewing, releasing, and finding stale runs."""

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.store import tables

RUNS = tables.runs.c
CLAIMABLE = ("queued", "in_progress", "cancelling")
NOT_TERMINAL = ("queued", "in_progress", "requires_action", "cancelling")


@dataclass(frozen=True)
class RunRow:
    """A run row: its wire object, execution options and lease state."""

    id: str
    project_id: str
    thread_id: str
    status: str
    last_seq: int
    cancel_requested: bool
    lease_owner: str | None
    lease_expires_at: float | None
    claims: int  # by workers, since the lease was last given up cleanly (this one included)
    data: dict[str, Any]
    options: dict[str, Any]


def _free(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(RUNS.lease_owner.is_(None), RUNS.lease_expires_at < now)


def _row_columns() -> list[sa.Column[Any]]:
    return [
        RUNS.id,
        RUNS.project_id,
        RUNS.thread_id,
        RUNS.status,
        RUNS.last_seq,
        RUNS.cancel_requested,
        RUNS.lease_owner,
        RUNS.lease_expires_at,
        RUNS.claims,
        RUNS.data,
        RUNS.options,
    ]


async def claim(
    conn: AsyncConnection, owner: str, now: float, lease_seconds: float, limit: int
) -> list[RunRow]:
    """Lease up to ``limit`` of the oldest claimable runs to ``owner`` (SKIP LOCKED on
    PostgreSQL, so concurrent workers never claim the same run)."""
    # A cancel that arrived while a worker was handing a run over to requires_action found
    # the lease taken; the run is claimed again to finish the cancellation.
    wanted = sa.or_(
        RUNS.status.in_(CLAIMABLE),
        sa.and_(RUNS.status == "requires_action", RUNS.cancel_requested.is_(True)),
    )
    # Selected first, then updated: as a subquery of the UPDATE, PostgreSQL may evaluate the
    # LIMIT more than once and lease more runs than asked for.
    candidates = (
        (
            await conn.execute(
                sa.select(RUNS.pk)
                .where(wanted, _free(now))
                .order_by(RUNS.pk)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    if not candidates:
        return []
    result = await conn.execute(
        tables.runs.update()
        .where(RUNS.pk.in_(candidates), _free(now))
        .values(lease_owner=owner, lease_expires_at=now + lease_seconds, claims=RUNS.claims + 1)
        .returning(*_row_columns())
    )
    return [RunRow(**row._mapping) for row in result]


async def lock(conn: AsyncConnection, project_id: str, run_id: str) -> RunRow | None:
    """The run's execution columns, with the row locked for this transaction."""
    result = await conn.execute(
        sa.select(*_row_columns())
        .where(RUNS.id == run_id, RUNS.project_id == project_id)
        .with_for_update()
    )
    row = result.first()
    return RunRow(**row._mapping) if row else None


@dataclass(frozen=True)
class LeaseState:
    """What the holder of a lease learns when it renews it."""

    cancel_requested: bool
    metadata: dict[str, str]


async def renew(
    conn: AsyncConnection, run_id: str, owner: str, *, until: float | None, last_seq: int | None
) -> LeaseState | None:
    """Extend the lease to ``until`` (or release it: None) and record ``last_seq`` when given
    (only the writer of the events may), in one statement that also fences: None means
    ``owner`` no longer holds the lease. Giving the lease up cleanly resets ``claims``."""
    values: dict[str, Any] = {
        "lease_expires_at": until,
        "lease_owner": owner if until is not None else None,
    }
    if until is None:
        values["claims"] = 0
    if last_seq is not None:
        values["last_seq"] = last_seq
    result = await conn.execute(
        tables.runs.update()
        .where(RUNS.id == run_id, RUNS.lease_owner == owner)
        .values(**values)
        .returning(RUNS.cancel_requested, RUNS.data)
    )
    row = result.first()
    if row is None:
        return None
    return LeaseState(cancel_requested=row.cancel_requested, metadata=row.data["metadata"])


async def acquire(conn: AsyncConnection, run_id: str, owner: str, now: float, until: float) -> bool:
    """Lease one specific run if nobody holds it; True on success."""
    result = await conn.execute(
        tables.runs.update()
        .where(RUNS.id == run_id, _free(now))
        .values(lease_owner=owner, lease_expires_at=until)
    )
    return bool(result.rowcount)


async def row(conn: AsyncConnection, run_id: str) -> RunRow | None:
    """The run's execution columns, unlocked."""
    result = (await conn.execute(sa.select(*_row_columns()).where(RUNS.id == run_id))).first()
    return RunRow(**result._mapping) if result else None


async def set_state(conn: AsyncConnection, run_id: str, **values: object) -> None:
    """Update execution columns (status, expires_at, cancel_requested...)."""
    await conn.execute(tables.runs.update().where(RUNS.id == run_id).values(**values))


async def past_expiry(conn: AsyncConnection, now: float, limit: int = 100) -> list[tuple[str, str]]:
    """(project_id, run_id) of unleased, unfinished runs whose ``expires_at`` has passed."""
    result = await conn.execute(
        sa.select(RUNS.project_id, RUNS.id)
        .where(RUNS.status.in_(NOT_TERMINAL), RUNS.expires_at < now, _free(now))
        .order_by(RUNS.pk)
        .limit(limit)
    )
    return [(row.project_id, row.id) for row in result]


async def active_on_thread(conn: AsyncConnection, thread_id: str) -> str | None:
    """The id of a run of this thread that has not finished, if any."""
    result = await conn.execute(
        sa.select(RUNS.id)
        .where(RUNS.thread_id == thread_id, RUNS.status.in_(NOT_TERMINAL))
        .limit(1)
    )
    run_id: str | None = result.scalar_one_or_none()
    return run_id


async def status_counts(conn: AsyncConnection) -> dict[str, int]:
    """How many runs are in each status."""
    result = await conn.execute(sa.select(RUNS.status, sa.func.count()).group_by(RUNS.status))
    return {status: count for status, count in result.tuples()}


async def oldest_renewal(conn: AsyncConnection, lease_seconds: float) -> float | None:
    """When the least recently renewed live lease was last renewed (Unix time), if any."""
    result = await conn.execute(
        sa.select(sa.func.min(RUNS.lease_expires_at)).where(RUNS.lease_owner.is_not(None))
    )
    expiry: float | None = result.scalar_one_or_none()
    return expiry - lease_seconds if expiry is not None else None
