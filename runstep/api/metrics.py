"""``/metrics``: Prometheus metrics of this process, plus run gauges read from the store."""

import time

from fastapi import APIRouter, Request, Response

from runstep.api.context import runtime_of
from runstep.observability import OLDEST_LEASE, QUEUE_DEPTH, RUNS_BY_STATUS, render
from runstep.runs.states import RUN_TRANSITIONS
from runstep.store import runs as run_rows

router = APIRouter(tags=["operations"])


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.read() as conn:
        counts = await run_rows.status_counts(conn)
        oldest = await run_rows.oldest_renewal(conn, runtime.settings.lease_seconds)
    for status in RUN_TRANSITIONS:
        RUNS_BY_STATUS.labels(status).set(counts.get(status, 0))
    QUEUE_DEPTH.set(counts.get("queued", 0))
    OLDEST_LEASE.set(time.time() - oldest if oldest is not None else 0)
    body, content_type = render()
    return Response(body, media_type=content_type)
