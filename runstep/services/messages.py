"""Messages: create, modify and delete within a thread."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from runstep import ids
from runstep.errors import InvalidRequest
from runstep.protocol.messages import (
    CreateMessageRequest,
    MessageObject,
    ModifyMessageRequest,
    content_wire,
)
from runstep.services.common import get_or_404, now, set_metadata, update
from runstep.store import runs as run_rows
from runstep.store.collections import MESSAGES, THREADS
from runstep.store.db import Database

KIND = "message"


def user_message(thread_id: str, request: CreateMessageRequest, created_at: int) -> dict[str, Any]:
    """The wire object of a message created through the API (complete on arrival)."""
    return MessageObject(
        id=ids.new_id(ids.MESSAGE),
        created_at=created_at,
        thread_id=thread_id,
        status="completed",
        completed_at=created_at,
        role=request.role,
        content=content_wire(request.content),
        attachments=[a.model_dump(mode="json") for a in request.attachments or []],
        metadata=request.metadata or {},
    ).wire()


async def insert(conn: AsyncConnection, project_id: str, message: dict[str, Any]) -> None:
    """Store a message in its thread."""
    await MESSAGES.insert(
        conn, project_id, message, thread_id=message["thread_id"], run_id=message["run_id"]
    )


async def create(
    db: Database, project_id: str, thread_id: str, request: CreateMessageRequest
) -> dict[str, Any]:
    message = user_message(thread_id, request, now())
    async with db.write() as conn:
        await get_or_404(conn, THREADS, "thread", project_id, thread_id)
        active = await run_rows.active_on_thread(conn, thread_id)
        if active is not None:
            raise InvalidRequest(
                f"Can't add messages to {thread_id} while a run {active} is active."
            )
        await insert(conn, project_id, message)
    return message


async def modify(
    db: Database, project_id: str, thread_id: str, message_id: str, request: ModifyMessageRequest
) -> dict[str, Any]:
    return await update(
        db, MESSAGES, KIND, project_id, message_id, set_metadata(request), thread_id=thread_id
    )
