"""``/health`` and ``/v1/health``: 200 when the store answers, 503 otherwise. The details name
each provider's health as every process saw it (``services.provider_health``: ``unhealthy``
after repeated failures in a row; the status is then ``degraded``, still 200: the server itself
works)."""

from typing import Any

from fastapi import APIRouter, Request

from runstep.api.context import runtime_of
from runstep.errors import Unavailable
from runstep.services.provider_health import provider_health

router = APIRouter(tags=["health"])


@router.get("/health")
@router.get("/v1/health")
async def health(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    names = [upstream.name for upstream in runtime.models.router.upstreams]
    try:
        providers = await provider_health(runtime.db, names)
    except Exception as exc:
        raise Unavailable("The database is unreachable.") from exc
    healthy = all(details["status"] == "healthy" for details in providers.values())
    return {"status": "ok" if healthy else "degraded", "providers": providers}
