"""``/v1/assistants``."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from runstep.api.context import Context
from runstep.protocol.assistants import CreateAssistantRequest, ModifyAssistantRequest
from runstep.protocol.common import ListQuery
from runstep.services import assistants
from runstep.services.common import delete, list_page, retrieve
from runstep.store.collections import ASSISTANTS

router = APIRouter(prefix="/v1/assistants", tags=["assistants"])


@router.post("")
async def create_assistant(body: CreateAssistantRequest, ctx: Context) -> dict[str, Any]:
    return await assistants.create(
        ctx.db, ctx.project_id, body, ctx.runtime.bus, ctx.runtime.models
    )


@router.get("")
async def list_assistants(query: Annotated[ListQuery, Query()], ctx: Context) -> dict[str, Any]:
    return await list_page(ctx.db, ASSISTANTS, ctx.project_id, query)


@router.get("/{assistant_id}")
async def get_assistant(assistant_id: str, ctx: Context) -> dict[str, Any]:
    return await retrieve(ctx.db, ASSISTANTS, assistants.KIND, ctx.project_id, assistant_id)


@router.post("/{assistant_id}")
async def modify_assistant(
    assistant_id: str, body: ModifyAssistantRequest, ctx: Context
) -> dict[str, Any]:
    return await assistants.modify(ctx.db, ctx.project_id, assistant_id, body, ctx.runtime.models)


@router.delete("/{assistant_id}")
async def delete_assistant(assistant_id: str, ctx: Context) -> dict[str, Any]:
    return await delete(
        ctx.db, ASSISTANTS, assistants.KIND, "assistant.deleted", ctx.project_id, assistant_id
    )
