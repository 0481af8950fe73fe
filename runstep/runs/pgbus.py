"""Wake-ups across processes through PostgreSQL LISTEN/NOTIFY.

Writers call ``pg_notify`` inside their transactions (``store.notify``), so a notification is
delivered only once its data is committed. A lost notification costs at most one poll: every
waiter also wakes up on its own timeout and reads the store."""

import asyncio
import logging

import psycopg
import sqlalchemy as sa

from runstep.runs.bus import LocalBus
from runstep.store.notify import CONTROL, EVENTS, WORK

log = logging.getLogger("runstep.bus")
RECONNECT_SECONDS = 1.0


def libpq_url(sqlalchemy_url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as a plain libpq URL."""
    return (
        sa.make_url(sqlalchemy_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


class PostgresBus(LocalBus):
    """The local bus, plus a listener that turns NOTIFYs from other processes into wake-ups."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self._url = libpq_url(database_url)
        self._listener: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as error:
                self.connected.clear()
                log.warning("LISTEN connection lost (%s); reconnecting", error)
            self.wake_everyone()  # whatever was missed meanwhile is read from the store
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            for channel in (EVENTS, CONTROL, WORK):
                await conn.execute(f"LISTEN {channel}")
            self.connected.set()
            async for note in conn.notifies():
                self._dispatch(note.channel, note.payload)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == EVENTS:
            self.notify(payload)
        elif channel == CONTROL:
            self.notify(f"control:{payload}")
        else:
            self.wake_workers()

    def wake_everyone(self) -> None:
        """Wake every waiter and worker in this process."""
        for run_id in list(self._signals.keys()):
            self.notify(run_id)
        self.wake_workers()
