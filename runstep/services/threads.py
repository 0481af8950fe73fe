"""Threads: create (with initial messages), modify and delete (with their messages)."""

from typing import Any

from runstep import ids
from runstep.errors import NotFound
from runstep.protocol.common import deleted_object
from runstep.protocol.threads import CreateThreadRequest, ModifyThreadRequest, ThreadObject
from runstep.services import messages
from runstep.services.common import now, set_metadata, update
from runstep.services.resources import tool_resources_wire
from runstep.store import events as event_log
from runstep.store.collections import MESSAGES, RUN_STEPS, RUNS, THREADS
from runstep.store.db import Database

KIND = "thread"


def new_thread(request: CreateThreadRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The wire objects of a new thread and its initial messages, not yet stored."""
    created_at = now()
    thread = ThreadObject(
        id=ids.new_id(ids.THREAD),
        created_at=created_at,
        tool_resources=tool_resources_wire(request.tool_resources),
        metadata=request.metadata or {},
    ).wire()
    initial = [
        messages.user_message(thread["id"], message, created_at)
        for message in request.messages or []
    ]
    return thread, initial


async def create(db: Database, project_id: str, request: CreateThreadRequest) -> dict[str, Any]:
    thread, initial = new_thread(request)
    async with db.write() as conn:
        await THREADS.insert(conn, project_id, thread)
        for message in initial:
            await messages.insert(conn, project_id, message)
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
