"""Per-request context: the authenticated project and the process's shared runtime."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from runstep.api.limits import RequestLimiter, StreamLimiter
from runstep.config import Settings
from runstep.files.storage import BlobStore
from runstep.providers.catalog import Catalog
from runstep.runs.bus import LocalBus
from runstep.runs.service import RunContext
from runstep.services.keys import Authenticator
from runstep.store.db import Database


@dataclass
class Runtime:
    """What one process shares between requests, built once in the app's lifespan."""

    settings: Settings
    db: Database
    authenticator: Authenticator
    bus: LocalBus
    runs: RunContext
    requests: RequestLimiter
    streams: StreamLimiter
    blobs: BlobStore
    models: Catalog  # the router over the upstreams, and what each project may use


@dataclass(frozen=True)
class RequestContext:
    db: Database
    project_id: str
    runtime: Runtime
    caller: str  # what per-key limits count by: the bearer token, else (open mode) the project


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def request_context(request: Request) -> RequestContext:
    """Authenticate the caller; every route but health depends on this."""
    runtime = runtime_of(request)
    client = request.client.host if request.client else None
    token = _bearer_token(request)
    project_id = await runtime.authenticator.project_for(token, client)
    caller = token or project_id
    runtime.requests.check(caller)
    return RequestContext(db=runtime.db, project_id=project_id, runtime=runtime, caller=caller)


Context = Annotated[RequestContext, Depends(request_context)]


def polled(ctx: RequestContext, obj: dict[str, Any]) -> JSONResponse:
    """An object clients poll until it settles (runs, vector stores and their files), with
    the ``openai-poll-after-ms`` hint the SDKs honour."""
    headers = {"openai-poll-after-ms": str(ctx.runtime.settings.poll_after_ms)}
    return JSONResponse(obj, headers=headers)
