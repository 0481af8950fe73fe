"""``create_app()``: the routers, the error handlers, and the lifespan that owns the store."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runstep import __version__
from runstep.api import (
    assistants,
    errors,
    files,
    health,
    inspector,
    messages,
    metrics,
    models,
    runs,
    steps,
    threads,
    vector_stores,
)
from runstep.api.context import Runtime
from runstep.api.guard import RequestGuard
from runstep.api.limits import RequestLimiter, StreamLimiter
from runstep.api.middleware import RequestIdMiddleware
from runstep.config import Settings
from runstep.files.storage import blob_store
from runstep.providers.catalog import Catalog
from runstep.providers.select import create_router
from runstep.runs.bus import LocalBus
from runstep.runs.pgbus import PostgresBus
from runstep.runs.service import RunContext
from runstep.runs.worker import Worker, instance_id
from runstep.services.keys import Authenticator, active_key_count
from runstep.services.provider_health import HealthRecords
from runstep.services.upstream_keys import ProjectKeys, Sealer
from runstep.store import migrate
from runstep.store.db import Database

log = logging.getLogger("runstep")


async def open_database(settings: Settings) -> Database:
    """Connect; on the embedded default (SQLite) bring the schema up to date first."""
    db = Database(settings.resolved_database_url, settings.database_pool_size)
    if db.is_sqlite:
        await migrate.upgrade(db.engine)
    elif await migrate.current_revision(db.engine) != migrate.head_revision():
        await db.close()
        raise RuntimeError("The database schema is not up to date: run `runstep migrate` first.")
    return db


def create_bus(db: Database) -> LocalBus:
    """In-process wake-ups on SQLite; LISTEN/NOTIFY across processes on PostgreSQL."""
    return LocalBus() if db.is_sqlite else PostgresBus(db.url)


async def build_runtime(settings: Settings) -> Runtime:
    """Open the store and the bus; the caller starts the worker, if any."""
    db = await open_database(settings)
    open_mode = not settings.api_keys and await active_key_count(db) == 0
    if open_mode:
        log.warning(
            "No API keys configured: accepting any bearer token from loopback clients, "
            "all in one default project. Set RUNSTEP_API_KEYS or run `runstep keys create`."
        )
    authenticator = Authenticator(db, settings.api_keys, open_mode)
    owner = instance_id("api")
    keys = ProjectKeys(db, Sealer(settings.secret_key))
    catalog = Catalog(create_router(settings, keys, HealthRecords(db, owner)), keys)
    bus = create_bus(db)
    await bus.start()
    runs = RunContext(db=db, bus=bus, settings=settings, owner=owner, models=catalog)
    return Runtime(
        settings=settings,
        db=db,
        authenticator=authenticator,
        bus=bus,
        runs=runs,
        models=catalog,
        requests=RequestLimiter(settings.requests_per_minute),
        streams=StreamLimiter(settings.max_streams, settings.max_streams_per_key),
        blobs=blob_store(settings),
    )


@asynccontextmanager
async def running_worker(runtime: Runtime) -> AsyncIterator[None]:
    """Execute runs in this process while the block runs."""
    worker = Worker(runtime.db, runtime.bus, runtime.models.router, runtime.settings)
    await worker.start()
    try:
        yield
    finally:
        await worker.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await build_runtime(settings)
        app.state.runtime = runtime
        try:
            if settings.run_worker:
                async with running_worker(runtime):
                    yield
            else:
                yield
        finally:
            await runtime.models.router.aclose()
            await runtime.bus.stop()
            await runtime.db.close()

    app = FastAPI(
        title="Runstep",
        version=__version__,
        summary="A self-hosted OpenAI Assistants API v2 server.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(
        RequestGuard, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout_seconds
    )
    app.add_middleware(RequestIdMiddleware)  # outermost: refusals carry the request id too
    # runs before threads: POST /v1/threads/runs must not match POST /v1/threads/{thread_id}.
    for module in (health, metrics, models, assistants, runs, steps, threads, messages, files):
        app.include_router(module.router)
    app.include_router(vector_stores.router)
    app.include_router(inspector.router)  # the web run inspector at /inspector
    return app


async def run_worker_process(settings: Settings, stop: asyncio.Event) -> None:
    """``runstep worker``: execute runs until ``stop`` is set, then drain gracefully."""
    runtime = await build_runtime(settings)
    worker = Worker(runtime.db, runtime.bus, runtime.models.router, settings)
    await worker.start()
    log.info("worker %s executing up to %d runs at once", worker.owner, settings.worker_concurrency)
    try:
        await stop.wait()
        log.info("stopping: finishing running runs for up to %ss", settings.shutdown_seconds)
        await worker.drain(settings.shutdown_seconds)
    finally:
        await worker.stop()
        await runtime.models.router.aclose()
        await runtime.bus.stop()
        await runtime.db.close()
