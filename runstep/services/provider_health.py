"""Providers' health as every process saw it: each writes its own row per provider when that
changes (a failure, or the first success after failures), and ``/health`` on any process reads
them all. A provider is unhealthy while some process saw ``UNHEALTHY_AFTER`` failures in a row
within the last ``FRESH_SECONDS`` and no success since."""

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runstep.providers.router import Health
from runstep.services.common import now
from runstep.store import tables
from runstep.store.db import Database

FRESH_SECONDS = 600  # older failures are no longer evidence (e.g. of a process gone since)
KEPT_SECONDS = 86_400  # rows not updated for this long are removed
COLUMNS = tables.provider_health.c


@dataclass(frozen=True)
class HealthRecords:
    """The router's ``HealthLog`` for one process."""

    db: Database
    owner: str

    async def record(self, provider: str, health: Health) -> None:
        stamp = now()
        async with self.db.write() as conn:
            await conn.execute(
                tables.provider_health.delete().where(
                    sa.or_(
                        sa.and_(COLUMNS.owner == self.owner, COLUMNS.provider == provider),
                        COLUMNS.updated_at < stamp - KEPT_SECONDS,
                    )
                )
            )
            await conn.execute(
                tables.provider_health.insert().values(
                    owner=self.owner,
                    provider=provider,
                    failures_in_a_row=health.failures_in_a_row,
                    last_error=health.last_error,
                    last_failure_at=health.last_failure_at,
                    last_success_at=health.last_success_at,
                    updated_at=stamp,
                )
            )


async def provider_health(db: Database, providers: list[str]) -> dict[str, dict[str, Any]]:
    """Each provider's health over every process's fresh rows."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(tables.provider_health).where(COLUMNS.provider.in_(providers))
            )
        ).all()
    seen = {name: Health() for name in providers}
    oldest = now() - FRESH_SECONDS
    for row in sorted(rows, key=lambda row: row.last_failure_at or 0):
        health = seen[row.provider]
        if row.last_failure_at:
            health.last_failure_at, health.last_error = row.last_failure_at, row.last_error
        if (row.last_failure_at or 0) >= oldest:
            health.failures_in_a_row = max(health.failures_in_a_row, row.failures_in_a_row)
        if (row.last_success_at or 0) > (health.last_success_at or 0):
            health.last_success_at = row.last_success_at
    return {name: health.wire() for name, health in seen.items()}
