"""``/v1/threads``."""

from typing import Annotated, Any

from fastapi import APIRouter, Body

from runstep.api.context import Context
from runstep.protocol.threads import CreateThreadRequest, ModifyThreadRequest
from runstep.services import threads
from runstep.services.common import retrieve
from runstep.store.collections import THREADS

router = APIRouter(prefix="/v1/threads", tags=["threads"])


@router.post("")
async def create_thread(
    ctx: Context, body: Annotated[CreateThreadRequest | None, Body()] = None
) -> dict[str, Any]:
    return await threads.create(
        ctx.db, ctx.project_id, body or CreateThreadRequest(), ctx.runtime.bus
    )


@router.get("/{thread_id}")
async def get_thread(thread_id: str, ctx: Context) -> dict[str, Any]:
    return await retrieve(ctx.db, THREADS, threads.KIND, ctx.project_id, thread_id)


@router.post("/{thread_id}")
async def modify_thread(thread_id: str, body: ModifyThreadRequest, ctx: Context) -> dict[str, Any]:
    return await threads.modify(ctx.db, ctx.project_id, thread_id, body)


@router.delete("/{thread_id}")
async def delete_thread(thread_id: str, ctx: Context) -> dict[str, Any]:
    return await threads.delete(ctx.db, ctx.project_id, thread_id)
