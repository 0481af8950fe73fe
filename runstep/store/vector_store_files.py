"""Vector-store file rows: claiming them for ingestion under a lease, renewing and fencing.

A row waits for ingestion while its ``status`` is ``in_progress``; a worker claims it by
writing a per-claim lease token into ``lease_owner`` (with ``lease_expires_at``), and every
later write of that worker is fenced on the token. Cancelling, deleting or re-attaching the
file clears or removes the lease, so a worker that finishes late changes nothing."""

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.store import tables

VSF = tables.vector_store_files.c


@dataclass(frozen=True)
class FileRow:
    """A claimed row: what ingestion needs, and the lease token that fences its writes."""

    pk: int
    id: str
    project_id: str
    vector_store_id: str
    batch_id: str | None
    attempts: int
    lease: str
    data: dict[str, Any]


def _free(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(VSF.lease_owner.is_(None), VSF.lease_expires_at < now)


def _waiting(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(VSF.status == "in_progress", _free(now))


async def any_waiting(conn: AsyncConnection, now: float) -> bool:
    """Whether some row waits for a worker (a cheap read before claiming)."""
    result = await conn.execute(sa.select(VSF.pk).where(_waiting(now)).limit(1))
    return result.first() is not None


async def claim(
    conn: AsyncConnection, lease: str, now: float, lease_seconds: float, limit: int
) -> list[FileRow]:
    """Lease up to ``limit`` of the oldest waiting rows under the token ``lease`` (SKIP LOCKED
    on PostgreSQL, so concurrent workers never claim the same row); counts the attempt.

    The candidates are locked by a statement of their own: as a subquery of the UPDATE,
    PostgreSQL may run the SKIP LOCKED select again for each row and exceed ``limit``."""
    locked = await conn.execute(
        sa.select(VSF.pk)
        .where(_waiting(now))
        .order_by(VSF.pk)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    candidates = list(locked.scalars())
    if not candidates:
        return []
    result = await conn.execute(
        tables.vector_store_files.update()
        .where(VSF.pk.in_(candidates), _waiting(now))
        .values(lease_owner=lease, lease_expires_at=now + lease_seconds, attempts=VSF.attempts + 1)
        .returning(
            VSF.pk,
            VSF.id,
            VSF.project_id,
            VSF.vector_store_id,
            VSF.batch_id,
            VSF.attempts,
            VSF.lease_owner,
            VSF.data,
        )
    )
    return [
        FileRow(
            pk=row.pk,
            id=row.id,
            project_id=row.project_id,
            vector_store_id=row.vector_store_id,
            batch_id=row.batch_id,
            attempts=row.attempts,
            lease=row.lease_owner,
            data=row.data,
        )
        for row in result
    ]


async def renew(conn: AsyncConnection, row: FileRow, until: float) -> bool:
    """Extend the lease; False when it is no longer held (cancelled, deleted, re-attached)."""
    result = await conn.execute(
        tables.vector_store_files.update()
        .where(VSF.pk == row.pk, VSF.lease_owner == row.lease, VSF.status == "in_progress")
        .values(lease_expires_at=until)
    )
    return bool(result.rowcount)


async def lock_leased(conn: AsyncConnection, row: FileRow) -> dict[str, Any] | None:
    """The row's object, locked, if ``row``'s lease still holds it in progress."""
    result = await conn.execute(
        sa.select(VSF.data)
        .where(VSF.pk == row.pk, VSF.lease_owner == row.lease, VSF.status == "in_progress")
        .with_for_update()
    )
    data: dict[str, Any] | None = result.scalar_one_or_none()
    return data


async def update(conn: AsyncConnection, pk: int, **values: Any) -> None:
    """Write columns (``data``, ``status``, lease...) of one row by its ``pk``."""
    await conn.execute(tables.vector_store_files.update().where(VSF.pk == pk).values(**values))
