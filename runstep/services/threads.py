"""Threads: create (with initial messages), modify and delete (with their messages)."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from runstep import ids
from runstep.errors import NotFound
from runstep.protocol.common import deleted_object
from runstep.protocol.threads import CreateThreadRequest, ModifyThreadRequest, ThreadObject
from runstep.runs.bus import LocalBus
from runstep.services import messages
from runstep.services.common import now, set_metadata, update
from runstep.services.resources import create_tool_resources, tool_resources_wire, wake
from runstep.store import events as event_log
from runstep.store.collections import MESSAGES, RUN_STEPS, RUNS, THREADS
from runstep.store.db import Database

KIND = "thread"


async def insert(
    conn: AsyncConnection,
    project_id: str,
    request: CreateThreadRequest,
    *,
    prefix: str = "",
    resources_param: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Inside a write: store a new thread, the vector store its ``tool_resources`` helper
    makes, and its initial messages (their ``file_search`` attachments go into the thread's
    store). ``prefix`` names the request in errors (``thread.``), ``resources_param`` the
    resources if they come from elsewhere. Returns the thread and whether files were queued
    for ingestion."""
    created_at = now()
    tool_resources, queued = await create_tool_resources(
        conn,
        project_id,
        request.tool_resources,
        param=resources_param or f"{prefix}tool_resources",
        for_thread=True,
    )
    thread = ThreadObject(
        id=ids.new_id(ids.THREAD),
        created_at=created_at,
        tool_resources=tool_resources,
        metadata=request.metadata or {},
    ).wire()
    await THREADS.insert(conn, project_id, thread)
    _, attached = await messages.add_user_messages(
        conn, project_id, thread, request.messages or [], created_at, f"{prefix}messages"
    )
    return thread, queued or attached


async def create(
    db: Database, project_id: str, request: CreateThreadRequest, bus: LocalBus
) -> dict[str, Any]:
    """``POST /v1/threads``; ``bus`` wakes the ingestion of the files it queued."""
    async with db.write() as conn:
        thread, queued = await insert(conn, project_id, request)
    wake(bus, queued)
    return thread


async def modify(
    db: Database, project_id: str, thread_id: str, request: ModifyThreadRequest
) -> dict[str, Any]:

    def change(thread: dict[str, Any]) -> None:
        if "tool_resources" in request.model_fields_set:
            thread["tool_resources"] = tool_resources_wire(
                request.tool_resources, thread["tool_resources"]
            )
        set_metadata(request)(thread)

    return await update(db, THREADS, KIND, project_id, thread_id, change)


async def delete(db: Database, project_id: str, thread_id: str) -> dict[str, Any]:
    async with db.write() as conn:
        if not await THREADS.delete(conn, project_id, thread_id):
            raise NotFound.object(KIND, thread_id)
        await event_log.delete_for_thread(conn, thread_id)
        for table in (MESSAGES, RUNS, RUN_STEPS):
            await table.delete_where(conn, project_id, thread_id=thread_id)
    return deleted_object(thread_id, "thread.deleted")
