"""Tool resources of assistants and threads: the stored form, and the vector stores they
bring: the create-time ``file_search.vector_stores`` helper, and the thread's store that
``file_search`` message attachments go into.

As in the hosted API:

- The helper (assistant and thread create only; modify has none) makes a store from its
  ``file_ids``, ``chunking_strategy`` and ``metadata``, and the object keeps
  ``vector_store_ids: [its id]``.
- A message's ``file_search`` attachments are added to the thread's store. A thread without
  one gets a new store, which its ``tool_resources`` then name.
- A store made for a thread (by the helper or for attachments) expires 7 days after it was
  last active; an assistant's never does. Stores are unnamed (``""``).

Choices where the hosted API is not documented: a thread whose store was deleted or has
expired gets a new one for its next attachments (it replaces the old id); a file already in
the thread's store is left as it is (not ingested again); every attachment's file is checked
(404 ``No such File object``), ``code_interpreter`` ones too.

Everything happens in the caller's transaction, so an unknown file leaves nothing behind;
the functions that queue files say so, and the caller then wakes the ingestion workers once
committed (``wake``)."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.errors import InvalidRequest
from runstep.protocol.messages import Attachment, CreateMessageRequest
from runstep.protocol.tools import ChunkingStrategy, FileSearchResources, ToolResources
from runstep.protocol.vector_stores import CreateVectorStoreRequest, ExpiresAfter
from runstep.runs.bus import LocalBus
from runstep.services import vector_stores
from runstep.store.collections import THREADS

THREAD_STORE_EXPIRY = ExpiresAfter(anchor="last_active_at", days=7)


def tool_resources_wire(
    resources: ToolResources | None, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Merge requested resources over ``current``: each given list replaces the stored one.
    The ``vector_stores`` helper exists on create only (``create_tool_resources``)."""
    merged = dict(current or {})
    if resources is None:
        return merged
    if resources.code_interpreter is not None:
        merged["code_interpreter"] = {"file_ids": list(resources.code_interpreter.file_ids)}
    file_search = resources.file_search
    if file_search is not None:
        if file_search.vector_stores:
            raise InvalidRequest(
                "The vector_stores helper can only be used when creating an assistant or a "
                "thread; pass vector_store_ids instead.",
                param="tool_resources.file_search.vector_stores",
            )
        merged["file_search"] = {"vector_store_ids": list(file_search.vector_store_ids or [])}
    return merged


def _store_request(
    file_ids: list[str],
    *,
    for_thread: bool,
    chunking_strategy: ChunkingStrategy | None = None,
    metadata: dict[str, str] | None = None,
) -> CreateVectorStoreRequest:
    """The unnamed store a helper or attachments make. Built without validation: the parts
    are valid already, and their limits are not createVectorStore's 500 files."""
    return CreateVectorStoreRequest.model_construct(
        file_ids=file_ids,
        chunking_strategy=chunking_strategy,
        metadata=metadata,
        expires_after=THREAD_STORE_EXPIRY if for_thread else None,
    )


async def create_tool_resources(
    conn: AsyncConnection,
    project_id: str,
    resources: ToolResources | None,
    *,
    param: str,
    for_thread: bool,
) -> tuple[dict[str, Any], bool]:
    """The stored resources of a new assistant or thread (``param`` names the request field),
    the ``vector_stores`` helper's store made on the way; and whether files were queued."""
    helpers = resources.file_search.vector_stores if resources and resources.file_search else None
    if not resources or not helpers:
        return tool_resources_wire(resources), False
    helper = helpers[0]
    request = _store_request(
        helper.file_ids,
        for_thread=for_thread,
        chunking_strategy=helper.chunking_strategy,
        metadata=helper.metadata,
    )
    store = await vector_stores.insert_store(
        conn, project_id, request, param=f"{param}.file_search.vector_stores[0].file_ids"
    )
    made = resources.model_copy(
        update={"file_search": FileSearchResources(vector_store_ids=[store["id"]])}
    )
    return tool_resources_wire(made), bool(helper.file_ids)


async def check_attachments(
    conn: AsyncConnection, project_id: str, attachments: Sequence[Attachment], param: str
) -> None:
    """404 for the first attachment whose File the project does not have (``param`` names
    the list)."""
    for index, attachment in enumerate(attachments):
        await vector_stores.check_files(
            conn, project_id, [attachment.file_id], f"{param}[{index}].file_id"
        )


def _file_search_files(requests: Sequence[CreateMessageRequest]) -> list[str]:
    """The files the messages attach to the ``file_search`` tool, each once, in order."""
    return list(
        dict.fromkeys(
            attachment.file_id
            for request in requests
            for attachment in request.attachments or []
            if any(tool.type == "file_search" for tool in attachment.tools)
        )
    )


async def add_to_thread_store(
    conn: AsyncConnection,
    project_id: str,
    thread: dict[str, Any],
    requests: Sequence[CreateMessageRequest],
) -> bool:
    """Add the messages' (checked) ``file_search`` attachments to the thread's vector store,
    made on demand (then the thread is stored with its new ``tool_resources``); returns
    whether files were queued. The caller holds the thread's row lock, if it is stored."""
    file_ids = _file_search_files(requests)
    if not file_ids:
        return False
    resources = thread.get("tool_resources") or {}
    store_ids = (resources.get("file_search") or {}).get("vector_store_ids") or []
    if store_ids and await vector_stores.accepts_files(conn, project_id, store_ids[0]):
        return await vector_stores.add_new_files(conn, project_id, store_ids[0], file_ids) > 0
    store = await vector_stores.insert_store(
        conn, project_id, _store_request(file_ids, for_thread=True)
    )
    thread["tool_resources"] = {**resources, "file_search": {"vector_store_ids": [store["id"]]}}
    await THREADS.replace(conn, project_id, thread)
    return True


def wake(bus: LocalBus, queued: bool) -> None:
    """After the commit of a write that queued files: wake this process's ingestion loop
    (other processes are woken by the write's NOTIFY)."""
    if queued:
        vector_stores.wake_ingestion(bus)
