"""Assistants: create, modify and delete (reads go through ``services.common``)."""

from typing import Any

from runstep import ids
from runstep.protocol.assistants import (
    AssistantObject,
    CreateAssistantRequest,
    ModifyAssistantRequest,
)
from runstep.protocol.tools import response_format_wire, tools_wire
from runstep.providers.catalog import Catalog
from runstep.runs.bus import LocalBus
from runstep.services.common import now, update
from runstep.services.resources import create_tool_resources, tool_resources_wire, wake
from runstep.store.collections import ASSISTANTS
from runstep.store.db import Database

KIND = "assistant"


def _apply(obj: dict[str, Any], request: ModifyAssistantRequest | CreateAssistantRequest) -> None:
    """Copy the fields the request set onto the wire object, but ``tool_resources`` (made on
    create, merged on modify)."""
    given = request.model_fields_set
    for name in ("model", "name", "description", "instructions", "reasoning_effort"):
        if name in given and (name != "model" or request.model is not None):
            obj[name] = getattr(request, name)
    if "tools" in given:
        obj["tools"] = tools_wire(request.tools or [])
    if "metadata" in given:
        obj["metadata"] = request.metadata or {}
    if "temperature" in given:
        obj["temperature"] = 1.0 if request.temperature is None else request.temperature
    if "top_p" in given:
        obj["top_p"] = 1.0 if request.top_p is None else request.top_p
    if "response_format" in given:
        obj["response_format"] = response_format_wire(request.response_format)


async def create(
    db: Database, project_id: str, request: CreateAssistantRequest, bus: LocalBus, models: Catalog
) -> dict[str, Any]:
    """``POST /v1/assistants``; ``bus`` wakes the ingestion of the files its
    ``tool_resources`` helper queued. A model the project cannot use is refused here (400),
    as the hosted API did, rather than when a run starts."""
    (await models.access(project_id)).check(request.model)
    obj = AssistantObject(
        id=ids.new_id(ids.ASSISTANT),
        created_at=now(),
        name=None,
        description=None,
        model=request.model,
        instructions=None,
        tools=[],
        tool_resources={},
        metadata={},
        temperature=1.0,
        top_p=1.0,
        response_format="auto",
    ).wire()
    _apply(obj, request)
    async with db.write() as conn:
        obj["tool_resources"], queued = await create_tool_resources(
            conn, project_id, request.tool_resources, param="tool_resources", for_thread=False
        )
        await ASSISTANTS.insert(conn, project_id, obj)
    wake(bus, queued)
    return obj


async def modify(
    db: Database,
    project_id: str,
    assistant_id: str,
    request: ModifyAssistantRequest,
    models: Catalog,
) -> dict[str, Any]:
    if request.model is not None:
        (await models.access(project_id)).check(request.model)

    def change(obj: dict[str, Any]) -> None:
        _apply(obj, request)
        if "tool_resources" in request.model_fields_set:
            obj["tool_resources"] = tool_resources_wire(
                request.tool_resources, obj["tool_resources"]
            )

    return await update(db, ASSISTANTS, KIND, project_id, assistant_id, change)
