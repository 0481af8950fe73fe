"""Providers' health across processes: each writes its own row when what it saw changes, and
every process's /health reads them all (fresh failures only)."""

import time

import pytest

from runstep.providers.router import Health
from runstep.services import provider_health as module
from runstep.services.provider_health import FRESH_SECONDS, HealthRecords, provider_health
from runstep.store.db import Database


async def test_a_provider_is_unhealthy_while_any_process_saw_it_fail_repeatedly(
    db: Database,
) -> None:
    now = int(time.time())
    worker_1, worker_2 = HealthRecords(db, "worker:1"), HealthRecords(db, "worker:2")
    await worker_1.record("alpha", Health(3, "server", now, None))
    await worker_2.record("alpha", Health(0, None, None, now))
    await worker_2.record("beta", Health(1, "rate_limit", now, now - 5))
    seen = await provider_health(db, ["alpha", "beta", "gamma"])
    assert seen["alpha"] == {
        "status": "unhealthy",
        "failures_in_a_row": 3,
        "last_error": "server",
        "last_failure_at": now,
        "last_success_at": now,
    }
    assert seen["beta"]["status"] == "healthy" and seen["beta"]["last_error"] == "rate_limit"
    assert seen["gamma"] == Health().wire()

    await worker_1.record("alpha", Health(0, "server", now, now + 1))  # its row is replaced
    assert (await provider_health(db, ["alpha"]))["alpha"]["status"] == "healthy"


async def test_old_failures_are_no_longer_evidence(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = int(time.time()) - FRESH_SECONDS - 60
    await HealthRecords(db, "worker:gone").record("alpha", Health(5, "server", long_ago, None))
    seen = (await provider_health(db, ["alpha"]))["alpha"]
    assert seen["status"] == "healthy" and seen["last_failure_at"] == long_ago

    a_day_later = int(time.time()) + module.KEPT_SECONDS + 1
    monkeypatch.setattr(module, "now", lambda: a_day_later)
    await HealthRecords(db, "worker:new").record("beta", Health())
    assert (await provider_health(db, ["alpha"]))["alpha"]["last_failure_at"] is None  # removed
