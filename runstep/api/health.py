"""``/health`` and ``/v1/health``: 200 when the store answers, 503 otherwise."""

from typing import Any

from fastapi import APIRouter, Request

from runstep.api.context import runtime_of
from runstep.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/health")
@router.get("/v1/health")
async def health(request: Request) -> dict[str, Any]:
    try:
        await runtime_of(request).db.ping()
    except Exception as exc:
        raise Unavailable("The database is unreachable.") from exc
    return {"status": "ok"}
