"""``/v1/threads/{thread_id}/runs`` and ``/v1/threads/runs``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from runstep.api.context import Context, RequestContext, polled
from runstep.api.sse import run_stream
from runstep.errors import InvalidRequest
from runstep.protocol.common import ListQuery
from runstep.protocol.runs import (
    FILE_SEARCH_CONTENT,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    ModifyRunRequest,
    SubmitToolOutputsRequest,
)
from runstep.runs import service
from runstep.services import threads
from runstep.services.common import list_page, retrieve
from runstep.store.collections import RUNS, THREADS
from runstep.store.events import encode

router = APIRouter(tags=["runs"])
RUN = "/v1/threads/{thread_id}/runs/{run_id}"


def include_param(
    include_brackets: Annotated[list[str] | None, Query(alias="include[]")] = None,
    include: Annotated[list[str] | None, Query()] = None,
) -> list[str]:
    """``include[]`` (what the SDKs send) and ``include``, validated."""
    values = [*(include_brackets or []), *(include or [])]
    for value in values:
        if value != FILE_SEARCH_CONTENT:
            raise InvalidRequest(
                f"Invalid 'include': '{value}'. Supported: '{FILE_SEARCH_CONTENT}'.",
                param="include",
            )
    return values


Include = Annotated[list[str], Depends(include_param)]


@asynccontextmanager
async def stream_slot(ctx: RequestContext, wanted: bool | None) -> AsyncIterator[None]:
    """Reserve a stream before the request changes anything (429 when the server is full);
    the stream gives the slot back when it ends, or here if the request fails first."""
    if not wanted:
        yield
        return
    ctx.runtime.streams.acquire(ctx.caller)
    try:
        yield
    except BaseException:
        ctx.runtime.streams.release(ctx.caller)
        raise


def _stream(
    ctx: RequestContext, run_id: str, after_seq: int, prefix: tuple[tuple[str, str], ...] = ()
) -> Response:
    runtime = ctx.runtime
    ping = runtime.settings.stream_ping_seconds
    slot = (runtime.streams, ctx.caller)
    return run_stream(ctx.db, runtime.bus, slot, run_id, after_seq, ping, prefix)


def _new_run_stream(
    ctx: RequestContext, run: dict[str, Any], before: tuple[tuple[str, str], ...] = ()
) -> Response:
    """A new run's stream: its first events come from memory, the rest from its log."""
    first = service.initial_events(run)
    prefix = before + tuple((event.event, event.data) for event in first)
    return _stream(ctx, run["id"], first[-1].seq, prefix)


@router.post("/v1/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, body: CreateRunRequest, ctx: Context, include: Include
) -> Response:
    async with stream_slot(ctx, body.stream):
        run = await service.create(ctx.runtime.runs, ctx.project_id, thread_id, body, include)
    if body.stream:
        return _new_run_stream(ctx, run)
    return polled(ctx, run)


@router.post("/v1/threads/runs")
async def create_thread_and_run(body: CreateThreadAndRunRequest, ctx: Context) -> Response:
    async with stream_slot(ctx, body.stream):
        thread, run = await service.create_thread_and_run(ctx.runtime.runs, ctx.project_id, body)
    if body.stream:
        return _new_run_stream(ctx, run, (("thread.created", encode(thread)),))
    return polled(ctx, run)


@router.get("/v1/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str, query: Annotated[ListQuery, Query()], ctx: Context
) -> dict[str, Any]:
    await retrieve(ctx.db, THREADS, threads.KIND, ctx.project_id, thread_id)
    return await list_page(ctx.db, RUNS, ctx.project_id, query, thread_id=thread_id)


@router.get(RUN)
async def get_run(thread_id: str, run_id: str, ctx: Context) -> Response:
    run = await retrieve(ctx.db, RUNS, service.KIND, ctx.project_id, run_id, thread_id=thread_id)
    return polled(ctx, run)


@router.post(RUN)
async def modify_run(thread_id: str, run_id: str, body: ModifyRunRequest, ctx: Context) -> Response:
    run = await service.modify(ctx.runtime.runs, ctx.project_id, thread_id, run_id, body)
    return polled(ctx, run)


@router.post(f"{RUN}/cancel")
async def cancel_run(thread_id: str, run_id: str, ctx: Context) -> Response:
    run = await service.cancel(ctx.runtime.runs, ctx.project_id, thread_id, run_id)
    return polled(ctx, run)


@router.post(f"{RUN}/submit_tool_outputs")
async def submit_tool_outputs(
    thread_id: str, run_id: str, body: SubmitToolOutputsRequest, ctx: Context
) -> Response:
    async with stream_slot(ctx, body.stream):
        run, after_seq = await service.submit_tool_outputs(
            ctx.runtime.runs, ctx.project_id, thread_id, run_id, body
        )
    if body.stream:
        return _stream(ctx, run_id, after_seq)
    return polled(ctx, run)
