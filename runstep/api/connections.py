"""Connection limits uvicorn does not have, for ``runstep serve``: a request's headers must
arrive within ``header_timeout`` seconds (408) and ``max_header_bytes`` (431), else the
connection is answered and closed; so an idle or trickling connection (slowloris) cannot be
held open. A client that stops reading a response (a stream, a download) is disconnected once
its writes have been stalled for ``send_timeout`` seconds; until then the server holds no
more than the transport's high-water mark for it, as the response waits for the socket."""

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runstep.config import Settings

log = logging.getLogger("runstep.connections")
MAX_HEADER_BYTES = 64 * 1024
# After a refusal, what the client still sends is read and dropped this long before the
# connection closes, so that the refusal is not lost to a reset (a lingering close).
LINGER_SECONDS = 1.0
REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with header and stalled-write deadlines."""

    header_timeout = 20.0
    send_timeout = 60.0
    max_header_bytes = MAX_HEADER_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._refused = False
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers:
            room = self.max_header_bytes - self._header_bytes
            if len(data) > room:  # feed what may still be headers; the rest only if they end
                super().data_received(data[:room])
                if self._awaiting_headers:
                    self._refuse(431, "The request headers are too large.")
                    return
                data = data[room:]
            else:
                self._header_bytes += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._awaiting_headers, self._header_bytes = False, 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # still answering the previous request: a pipelined one waits its turn
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)
            return
        self._refuse(408, "The request headers did not arrive in time.")

    def _refuse(self, status: int, message: str) -> None:
        """Answer in the error envelope and close, before any request reached the app."""
        if self.transport.is_closing() or self._refused:
            return
        body = json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
        ).encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, REASONS[status], len(body))
        )
        self._awaiting_headers, self._refused = False, True
        self.transport.write(head + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.send_timeout, self._stalled)

    def resume_writing(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().resume_writing()

    def _stalled(self) -> None:
        self._stall_timer = None
        log.warning(
            "disconnected %s: it read nothing of its response for %ss",
            self.client[0] if self.client else "a client",
            self.send_timeout,
        )
        self.transport.abort()


def guarded_protocol(settings: Settings) -> type[GuardedProtocol]:
    """The protocol class for uvicorn (``http=``) with ``settings``' deadlines."""
    values: dict[str, Any] = {
        "header_timeout": settings.header_timeout_seconds,
        "send_timeout": settings.send_timeout_seconds,
    }
    return type("GuardedProtocol", (GuardedProtocol,), values)
