"""Messages: create, modify and delete within a thread."""

from collections.abc import Sequence
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
from runstep.runs.bus import LocalBus
from runstep.services import resources
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


async def add_user_messages(
    conn: AsyncConnection,
    project_id: str,
    thread: dict[str, Any],
    requests: Sequence[CreateMessageRequest],
    created_at: int,
    param: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Inside a write: store messages created through the API in ``thread`` (stored already,
    its row locked). Their attachments' files are checked (404; ``param`` names the message
    list, None for a single message) and the ``file_search`` ones go into the thread's vector
    store. Returns the messages and whether files were queued for ingestion."""
    for index, request in enumerate(requests):
        prefix = "" if param is None else f"{param}[{index}]."
        await resources.check_attachments(
            conn, project_id, request.attachments or [], f"{prefix}attachments"
        )
    queued = await resources.add_to_thread_store(conn, project_id, thread, requests)
    created = [user_message(thread["id"], request, created_at) for request in requests]
    for message in created:
        await insert(conn, project_id, message)
    return created, queued


async def create(
    db: Database,
    project_id: str,
    thread_id: str,
    request: CreateMessageRequest,
    bus: LocalBus,
) -> dict[str, Any]:
    """``POST /v1/threads/{id}/messages``; ``bus`` wakes the ingestion of attached files."""
    async with db.write() as conn:
        thread = await get_or_404(conn, THREADS, "thread", project_id, thread_id, for_update=True)
        active = await run_rows.active_on_thread(conn, thread_id)
        if active is not None:
            raise InvalidRequest(
                f"Can't add messages to {thread_id} while a run {active} is active."
            )
        (message,), queued = await add_user_messages(conn, project_id, thread, [request], now())
    resources.wake(bus, queued)
    return message


async def modify(
    db: Database, project_id: str, thread_id: str, message_id: str, request: ModifyMessageRequest
) -> dict[str, Any]:
    return await update(
        db, MESSAGES, KIND, project_id, message_id, set_metadata(request), thread_id=thread_id
    )
