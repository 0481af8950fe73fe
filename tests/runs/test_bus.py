"""The in-process bus: a stream reads fresh events from memory while the run executes here, and
from the event log once memory cannot say what comes next."""

import asyncio

import pytest

from runstep.api.sse import tail
from runstep.runs import bus as bus_module
from runstep.runs.bus import LocalBus
from runstep.store import events as event_log
from runstep.store.db import Database
from runstep.store.events import Event

RUN = "run_bus"


def _events(first: int, last: int) -> list[Event]:
    return [Event(seq, "thread.message.delta", f'{{"n":{seq}}}') for seq in range(first, last + 1)]


async def test_an_open_feed_serves_what_it_holds_and_an_empty_list_when_caught_up() -> None:
    bus = LocalBus()
    bus.open_feed(RUN, 1)
    bus.publish(RUN, _events(1, 3))
    assert bus.live_after(RUN, 0) == _events(1, 3)
    assert bus.live_after(RUN, 3) == []  # the recorder is here: nothing newer yet
    assert bus.live_after(RUN, -1) is None  # older than the feed: read the log


async def test_a_closed_feed_still_drains_but_sends_a_caught_up_reader_to_the_log() -> None:
    bus = LocalBus()
    bus.open_feed(RUN, 1)
    bus.publish(RUN, _events(1, 3))
    bus.close_feed(RUN)
    assert bus.live_after(RUN, 1) == _events(2, 3)
    assert bus.live_after(RUN, 3) is None


async def test_a_stream_continues_from_the_log_while_a_closed_feed_lingers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run paused here (requires_action) and resumed in another process: its next events
    reach the log, not this process's memory, and a stream must read them at its next poll,
    not once memory is dropped (made an hour here, so waiting for it fails the test)."""
    monkeypatch.setattr(bus_module, "FEED_LINGER_SECONDS", 3600.0)
    bus = LocalBus()
    bus.open_feed(RUN, 1)
    bus.publish(RUN, _events(1, 2))
    bus.close_feed(RUN)
    async with db.write() as conn:
        await event_log.insert(conn, RUN, _events(1, 2), created_at=0)
    finished = [*_events(3, 4), Event(5, "thread.run.completed", "{}")]

    async def resume_elsewhere() -> None:
        await asyncio.sleep(0.05)
        async with db.write() as conn:
            await event_log.insert(conn, RUN, finished, created_at=0)

    async def read() -> list[Event]:
        return [event async for event in tail(db, bus, RUN, 2, fresh=False)]

    writer = asyncio.create_task(resume_elsewhere())
    read_events = await asyncio.wait_for(read(), timeout=60.0)
    await writer
    assert read_events == finished
