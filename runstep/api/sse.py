"""Server-sent events: replay a run's event log from a cursor, then tail it live.

Framing is exact: ``event:`` and one ``data:`` line per event, ``: ping`` comments on idle
streams, no ``id:`` or ``retry:`` lines, and ``event: done`` / ``data: [DONE]`` last."""

import logging
from collections.abc import AsyncIterator, Sequence

from sse_starlette import EventSourceResponse, ServerSentEvent

from runstep.api.limits import StreamLimiter
from runstep.errors import InternalError
from runstep.observability import ACTIVE_STREAMS
from runstep.runs.bus import LocalBus, wait
from runstep.store import events as event_log
from runstep.store.db import Database
from runstep.store.events import Event

log = logging.getLogger("runstep.sse")

STREAM_END_EVENTS = frozenset(
    f"thread.run.{status}"
    for status in ("completed", "failed", "cancelled", "expired", "incomplete", "requires_action")
)
# How long a stream waits for a wake-up before it checks the database anyway.
POLL_SECONDS = 1.0
READ_BATCH = 1000


async def tail(
    db: Database, bus: LocalBus, run_id: str, after_seq: int, fresh: bool
) -> AsyncIterator[Event]:
    """Every event of the run after ``after_seq`` until the one that ends a stream. A
    ``fresh`` stream knows the log holds nothing newer yet, so it waits before reading."""
    last, read_store = after_seq, not fresh
    while True:
        signal = bus.signal(run_id)
        events = bus.live_after(run_id, last)
        drained = False
        if events is None and read_store:  # not executing in this process: read the log
            async with db.read() as conn:
                events = await event_log.read_after(conn, run_id, last, READ_BATCH)
            drained = len(events) < READ_BATCH
        events, read_store = events or [], True
        for event in events:
            yield event
            last = event.seq
            if event.event in STREAM_END_EVENTS:
                return
        if not events or drained:  # nothing newer until the next wake-up (or poll)
            await wait(signal, POLL_SECONDS)


async def _frames(
    db: Database,
    bus: LocalBus,
    slot: tuple[StreamLimiter, str],
    run_id: str,
    after_seq: int,
    prefix: Sequence[tuple[str, str]],
) -> AsyncIterator[ServerSentEvent]:
    ACTIVE_STREAMS.inc()
    try:
        for name, data in prefix:
            yield _frame(name, data)
        try:
            # A prefix means a new run: the prefix covers its whole log so far.
            async for event in tail(db, bus, run_id, after_seq, fresh=bool(prefix)):
                yield _frame(event.event, event.data)
        except Exception:
            log.exception("stream of %s broke", run_id)
            error = InternalError("The server had an error while streaming this run.")
            yield _frame("error", event_log.encode(error.body()))
        yield _frame("done", "[DONE]")
    finally:
        ACTIVE_STREAMS.dec()
        streams, key = slot
        streams.release(key)


def _frame(event: str, data: str) -> ServerSentEvent:
    return ServerSentEvent(data=data, event=event, sep="\n")


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep="\n")


def run_stream(
    db: Database,
    bus: LocalBus,
    slot: tuple[StreamLimiter, str],
    run_id: str,
    after_seq: int,
    ping_seconds: float,
    prefix: Sequence[tuple[str, str]] = (),
) -> EventSourceResponse:
    """The SSE response for a run from ``after_seq`` on, after the ``prefix`` events; it
    releases the ``slot`` (limiter, key) the caller reserved when it ends."""
    return EventSourceResponse(
        _frames(db, bus, slot, run_id, after_seq, prefix),
        ping=ping_seconds,
        ping_message_factory=_ping,
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
