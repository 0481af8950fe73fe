"""``/v1/models``: the models the caller's project may run (``runstep.providers.catalog``)."""

from typing import Any

from fastapi import APIRouter

from runstep.api.context import Context

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
async def list_models(ctx: Context) -> dict[str, Any]:
    return {"object": "list", "data": await ctx.runtime.models.models(ctx.project_id)}


@router.get("/{model:path}")  # ids may hold slashes: ollama/llama3.1:8b
async def retrieve_model(model: str, ctx: Context) -> dict[str, Any]:
    return await ctx.runtime.models.model(ctx.project_id, model)
