"""``/v1/threads/{thread_id}/messages``."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from runstep.api.context import Context
from runstep.protocol.common import ListQuery
from runstep.protocol.messages import CreateMessageRequest, ModifyMessageRequest
from runstep.services import messages, threads
from runstep.services.common import delete, list_page, retrieve
from runstep.store.collections import MESSAGES, THREADS

router = APIRouter(prefix="/v1/threads/{thread_id}/messages", tags=["messages"])


@router.post("")
async def create_message(
    thread_id: str, body: CreateMessageRequest, ctx: Context
) -> dict[str, Any]:
    return await messages.create(ctx.db, ctx.project_id, thread_id, body, ctx.runtime.bus)


@router.get("")
async def list_messages(
    thread_id: str,
    query: Annotated[ListQuery, Query()],
    ctx: Context,
    run_id: str | None = None,
) -> dict[str, Any]:
    await retrieve(ctx.db, THREADS, threads.KIND, ctx.project_id, thread_id)
    scope: dict[str, Any] = {"thread_id": thread_id}
    if run_id is not None:
        scope["run_id"] = run_id
    return await list_page(ctx.db, MESSAGES, ctx.project_id, query, **scope)


@router.get("/{message_id}")
async def get_message(thread_id: str, message_id: str, ctx: Context) -> dict[str, Any]:
    return await retrieve(
        ctx.db, MESSAGES, messages.KIND, ctx.project_id, message_id, thread_id=thread_id
    )


@router.post("/{message_id}")
async def modify_message(
    thread_id: str, message_id: str, body: ModifyMessageRequest, ctx: Context
) -> dict[str, Any]:
    return await messages.modify(ctx.db, ctx.project_id, thread_id, message_id, body)


@router.delete("/{message_id}")
async def delete_message(thread_id: str, message_id: str, ctx: Context) -> dict[str, Any]:
    return await delete(
        ctx.db,
        MESSAGES,
        messages.KIND,
        "thread.message.deleted",
        ctx.project_id,
        message_id,
        thread_id=thread_id,
    )
