"""``/v1/threads/{thread_id}/runs/{run_id}/steps``."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from runstep.api.context import Context
from runstep.api.runs import Include
from runstep.protocol.common import ListQuery
from runstep.runs import service
from runstep.runs.objects import present_step
from runstep.services.common import list_page, retrieve
from runstep.store.collections import RUN_STEPS, RUNS

router = APIRouter(prefix="/v1/threads/{thread_id}/runs/{run_id}/steps", tags=["run steps"])


@router.get("")
async def list_steps(
    thread_id: str,
    run_id: str,
    query: Annotated[ListQuery, Query()],
    ctx: Context,
    include: Include,
) -> dict[str, Any]:
    await retrieve(ctx.db, RUNS, service.KIND, ctx.project_id, run_id, thread_id=thread_id)
    page = await list_page(ctx.db, RUN_STEPS, ctx.project_id, query, run_id=run_id)
    page["data"] = [present_step(step, include) for step in page["data"]]
    return page


@router.get("/{step_id}")
async def get_step(
    thread_id: str, run_id: str, step_id: str, ctx: Context, include: Include
) -> dict[str, Any]:
    step = await retrieve(
        ctx.db, RUN_STEPS, "run step", ctx.project_id, step_id, run_id=run_id, thread_id=thread_id
    )
    return present_step(step, include)
