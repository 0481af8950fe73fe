"""The worker: claims runs under a lease, executes them concurrently, and sweeps expired ones."""

import asyncio
import logging
import os
import socket
import time

from runstep import ids
from runstep.config import Settings
from runstep.files.storage import blob_store
from runstep.providers.base import Provider
from runstep.runs.bus import LocalBus
from runstep.runs.executor import Executor
from runstep.runs.recorder import Recorder
from runstep.runs.states import RUN_TERMINAL
from runstep.services.files import delete_expired_files
from runstep.services.ingestion import Ingester
from runstep.services.vector_stores import expire_stores
from runstep.store import events as event_log
from runstep.store import runs as run_rows
from runstep.store.db import Database

log = logging.getLogger("runstep.worker")


def instance_id(role: str) -> str:
    """A name for this process in leases: host, pid and a random suffix."""
    # Fits the 64-character lease_owner column even with long (e.g. Kubernetes) host names.
    return f"{role}:{socket.gethostname()[:32]}:{os.getpid()}:{ids.random_token(6)}"


class Worker:
    """Claims up to ``concurrency`` runs at a time and executes each in its own task."""

    def __init__(self, db: Database, bus: LocalBus, provider: Provider, settings: Settings) -> None:
        self.db, self.bus, self.settings = db, bus, settings
        self.executor = Executor(db, bus, provider, settings)
        self.owner = instance_id("worker")
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._full = False  # the last claim filled every slot
        self.ingester = Ingester(db, bus, blob_store(settings), settings, self.owner)

    async def start(self) -> None:
        await self.executor.hosted.start()
        self._loops = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._sweep_loop()),
            asyncio.create_task(self.ingester.run()),
        ]

    async def drain(self, timeout: float) -> None:
        """Stop claiming and give running runs up to ``timeout`` seconds to finish."""
        for loop in self._loops:
            loop.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def stop(self) -> None:
        """Stop claiming; cancel running executions (their leases lapse and they resume)."""
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        await self.executor.hosted.close()

    async def _claim_loop(self) -> None:
        """Claim as many runs as there is room for, then sleep until woken (a run was queued,
        or a slot freed up while runs may be waiting) or until the poll interval passes."""
        while True:
            room = self.settings.worker_concurrency - len(self._tasks)
            if room > 0:
                rows = await self._claim(room)
                self._full = len(rows) == room  # there may be more: claim when a slot frees
                for row in rows:
                    task = asyncio.create_task(self.executor.execute(row, self.owner))
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
            await self.bus.wait_for_work(self.settings.worker_poll_seconds)

    async def _claim(self, limit: int) -> list[run_rows.RunRow]:
        try:
            async with self.db.write() as conn:
                return await run_rows.claim(
                    conn, self.owner, time.time(), self.settings.lease_seconds, limit
                )
        except Exception:
            log.exception("claiming runs failed; retrying")
            return []

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._full:
            self._full = False
            self.bus.wake_workers()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_seconds)
            try:
                await sweep_expired(self.db, self.bus, self.settings, self.owner)
                await compact_events(self.db, self.settings.event_retention_seconds)
                await delete_expired_files(self.db, blob_store(self.settings), int(time.time()))
                await expire_stores(self.db, int(time.time()))
            except Exception:
                log.exception("sweep failed; retrying")


async def compact_events(db: Database, retention_seconds: int) -> int:
    """Drop delta events of runs that finished more than ``retention_seconds`` ago."""
    async with db.write() as conn:
        before = int(time.time()) - retention_seconds
        return await event_log.compact(conn, tuple(RUN_TERMINAL), before)


async def sweep_expired(db: Database, bus: LocalBus, settings: Settings, owner: str) -> int:
    """Expire unleased runs past ``expires_at`` (e.g. waiting for tool outputs); each run is
    leased first, so many sweepers never expire a run twice."""
    async with db.read() as conn:
        candidates = await run_rows.past_expiry(conn, time.time())
    expired = 0
    for _, run_id in candidates:
        async with Recorder.leased(
            db, bus, run_id, owner, settings.lease_seconds, settings.delta_flush_seconds
        ) as recorder:
            if recorder is not None and recorder.run["status"] in run_rows.NOT_TERMINAL:
                await recorder.finish("expired")
                expired += 1
    return expired
