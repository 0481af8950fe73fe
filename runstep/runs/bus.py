"""Wake-ups within one process: run waiters (streams, executors) and idle workers.

The recorder also hands each run's fresh events to the bus, so a stream in the same process
reads them from memory instead of the database. Every event is persisted in order too (deltas
in batches), so the log in the database is always a prefix of what the bus has seen; a reader
falls back to the database whenever memory does not cover what it needs."""

import asyncio
import contextlib
import weakref

from runstep.store.events import Event

FEED_LINGER_SECONDS = 5.0


class _Feed:
    """The events of one run published in this process since ``first_seq``."""

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.events: list[Event] = []
        self.closed = False

    def after(self, seq: int) -> list[Event] | None:
        """What memory holds after ``seq``; None when memory cannot say: ``seq`` is older than
        the feed, or the feed is closed and has nothing newer (another process, or a later
        recorder elsewhere, may be writing the run's next events to the log)."""
        if seq + 1 < self.first_seq:
            return None
        events = self.events[seq + 1 - self.first_seq :]
        return None if self.closed and not events else events


class LocalBus:
    """The in-process bus; a PostgreSQL bus extends it with LISTEN/NOTIFY across processes."""

    def __init__(self) -> None:
        self._signals: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        self._feeds: dict[str, _Feed] = {}
        self._work = asyncio.Event()

    def signal(self, run_id: str) -> asyncio.Event:
        """The event the next publish for ``run_id`` sets; take it before reading state."""
        signal = self._signals.get(run_id)
        if signal is None:
            signal = asyncio.Event()
            self._signals[run_id] = signal
        return signal

    def notify(self, run_id: str) -> None:
        """Wake everyone waiting on ``run_id``."""
        signal = self._signals.pop(run_id, None)
        if signal is not None:
            signal.set()

    def open_feed(self, run_id: str, first_seq: int) -> None:
        self._feeds[run_id] = _Feed(first_seq)

    def close_feed(self, run_id: str) -> None:
        """Drop the run's feed after a short while: readers still draining it (the final
        events were just published) finish from memory rather than the database."""
        feed = self._feeds.get(run_id)
        if feed is None:
            return
        feed.closed = True

        def drop() -> None:
            if self._feeds.get(run_id) is feed:  # not replaced by a newer recorder's feed
                del self._feeds[run_id]

        asyncio.get_running_loop().call_later(FEED_LINGER_SECONDS, drop)

    def publish(self, run_id: str, events: list[Event]) -> None:
        """Hand fresh events to this process's readers and wake them."""
        feed = self._feeds.get(run_id)
        if feed is not None:
            feed.events.extend(events)
        self.notify(run_id)

    def live_after(self, run_id: str, seq: int) -> list[Event] | None:
        """Events after ``seq`` from memory, or None if memory does not cover ``seq + 1``."""
        feed = self._feeds.get(run_id)
        return feed.after(seq) if feed is not None else None

    def wake_workers(self) -> None:
        self._work.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work may be available, or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    async def start(self) -> None:
        """Start cross-process listening (nothing to do in one process)."""

    async def stop(self) -> None:
        """Stop cross-process listening."""


async def wait(signal: asyncio.Event, timeout: float) -> bool:
    """Wait for ``signal``; False on timeout."""
    try:
        await asyncio.wait_for(signal.wait(), timeout)
    except TimeoutError:
        return False
    return True
