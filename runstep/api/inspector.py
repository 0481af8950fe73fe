"""The web run inspector at ``/inspector``: one static page (HTML, CSS, JavaScript shipped in
``runstep/inspector/``, no build step) and the small JSON and event-stream endpoints it reads.

The page needs no authentication; it asks for an API key, keeps it in the browser session and
sends it as a bearer token. Every data endpoint authenticates like ``/v1`` and sees only the
key's project (404 for anything else)."""

import logging
from collections.abc import AsyncIterator
from functools import cache
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from runstep.api.context import Context, Runtime
from runstep.api.sse import tail as tail_events  # the replay-then-tail loop /v1 streams use
from runstep.errors import InternalError, NotFound
from runstep.observability import ACTIVE_STREAMS
from runstep.runs.bus import LocalBus
from runstep.runs.states import RUN_TERMINAL
from runstep.services import inspector
from runstep.store.db import Database
from runstep.store.events import Event, encode

log = logging.getLogger("runstep.inspector")
router = APIRouter(prefix="/inspector", include_in_schema=False)
API = "/api"
ASSETS = resources.files("runstep.inspector")
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# The page runs only its own script and style, and talks only to this server.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
RUN_END_EVENTS = frozenset(f"thread.run.{status}" for status in RUN_TERMINAL)
Limit = Annotated[int, Query(ge=1, le=inspector.MAX_PAGE)]


# -- the page ----------------------------------------------------------------------------------


@cache
def _asset(*path: str) -> bytes | None:
    """A file of the page, read once (None if there is no such file)."""
    asset = ASSETS.joinpath(*path)
    return asset.read_bytes() if asset.is_file() else None


def _page() -> Response:
    html = _asset("index.html")
    return Response(html, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("")
@router.get("/")
async def home() -> Response:
    return _page()


# Each view has its own address (bookmarkable); the page's script renders it.
@router.get("/assistants")
async def assistants_page() -> Response:
    return _page()


@router.get("/threads/{thread_id}")
async def thread_page(thread_id: str) -> Response:
    return _page()


@router.get("/runs/{run_id}")
async def run_page(run_id: str) -> Response:
    return _page()


@router.get("/static/{name}")
async def static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    content = _asset("static", name) if suffix in STATIC_TYPES and "/" not in name else None
    if content is None:
        raise NotFound(f"No inspector asset named '{name}'.")
    return Response(content, media_type=STATIC_TYPES[suffix], headers=PAGE_HEADERS)


# -- data --------------------------------------------------------------------------------------


@router.get(f"{API}/session")
async def session(ctx: Context) -> dict[str, Any]:
    """Who the key is: the page's sign-in check."""
    return {"project_id": ctx.project_id}


@router.get(f"{API}/assistants")
async def assistants(ctx: Context, limit: Limit = 20, after: str | None = None) -> dict[str, Any]:
    return await inspector.assistants(ctx.db, ctx.project_id, limit, after)


@router.get(f"{API}/threads")
async def threads(
    ctx: Context, q: str | None = None, limit: Limit = 20, after: str | None = None
) -> dict[str, Any]:
    """Most recent first; ``q`` searches ids and metadata (``key=value`` for one pair)."""
    return await inspector.threads(ctx.db, ctx.project_id, q, limit, after)


@router.get(f"{API}/threads/{{thread_id}}")
async def thread(thread_id: str, ctx: Context) -> dict[str, Any]:
    return await inspector.thread_view(ctx.db, ctx.project_id, thread_id)


@router.get(f"{API}/threads/{{thread_id}}/runs")
async def thread_runs(
    thread_id: str, ctx: Context, limit: Limit = 20, after: str | None = None
) -> dict[str, Any]:
    return await inspector.runs_of_thread(ctx.db, ctx.project_id, thread_id, limit, after)


@router.get(f"{API}/runs/{{run_id}}")
async def run(run_id: str, ctx: Context) -> dict[str, Any]:
    """The run as of event ``seq``; its events after that continue the picture."""
    return await inspector.run_view(ctx.db, ctx.project_id, run_id)


@router.get(f"{API}/runs/{{run_id}}/steps/{{step_id}}")
async def step(run_id: str, step_id: str, ctx: Context) -> dict[str, Any]:
    return await inspector.step_view(ctx.db, ctx.project_id, run_id, step_id)


@router.get(f"{API}/runs/{{run_id}}/events")
async def events(
    run_id: str, ctx: Context, after: Annotated[int, Query(ge=0)] = 0
) -> EventSourceResponse:
    """The run's events after seq ``after``, then live ones until the run ends (through
    ``requires_action`` too, unlike ``/v1`` streams). Each frame's ``id`` is its seq, so a
    reader that lost the connection resumes with ``after`` = the last id it saw."""
    status, last_seq = await inspector.run_state(ctx.db, ctx.project_id, run_id)
    finished = status in RUN_TERMINAL and after >= last_seq
    runtime = ctx.runtime
    runtime.streams.acquire(ctx.caller)
    return EventSourceResponse(
        _frames(runtime, ctx.caller, run_id, after, finished),
        ping=runtime.settings.stream_ping_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def follow(db: Database, bus: LocalBus, run_id: str, after: int) -> AsyncIterator[Event]:
    """The run's events after seq ``after`` until the one that ends the run: the replay-then-
    tail loop of ``/v1`` streams, continued past ``requires_action``. The caller checks that
    the run has not already ended before ``after`` (nothing would come)."""
    last, ended = after, False
    while not ended:
        async for event in tail_events(db, bus, run_id, last, False):
            yield event
            last, ended = event.seq, event.event in RUN_END_EVENTS


async def _frames(
    runtime: Runtime, caller: str, run_id: str, after: int, finished: bool
) -> AsyncIterator[ServerSentEvent]:
    ACTIVE_STREAMS.inc()
    try:
        try:
            if not finished:
                async for event in follow(runtime.db, runtime.bus, run_id, after):
                    yield ServerSentEvent(data=event.data, event=event.event, id=str(event.seq))
        except Exception:
            log.exception("inspector stream of %s broke", run_id)
            error = InternalError("The server had an error while streaming this run.")
            yield ServerSentEvent(data=encode(error.body()), event="error")
        yield ServerSentEvent(data="[DONE]", event="done")
    finally:
        ACTIVE_STREAMS.dec()
        runtime.streams.release(caller)
