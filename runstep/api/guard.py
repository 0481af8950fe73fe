"""Request bodies before any handler sees them, each refusal in the error envelope and closing
the connection:

- size: at most ``max_bytes`` (413, answered from ``Content-Length`` before anything is read,
  else as soon as the body passes it; never more than that held in memory);
- time: ``timeout`` seconds, plus one per ``GRACE_BYTES_PER_SECOND`` received, so a slow
  trickle is cut off (408) and a large honest upload is not;
- text every store can hold: NUL characters (which PostgreSQL text refuses) in the URL or as
  ``\\u0000`` in a body are refused (400), and so is JSON with an unpaired surrogate escape
  (not UTF-8; the JSON parse error).

Uploads (``POST /v1/files``) stream through to their handler, which bounds their size itself
(``RUNSTEP_MAX_FILE_BYTES``); their time is bounded here."""

import re
import time
from collections.abc import Awaitable, Callable

import anyio
import pydantic_core
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runstep.api.errors import JSON_INVALID, error_response
from runstep.errors import APIError, InvalidRequest, PayloadTooLarge, RequestTimeout

STREAMED = frozenset({("POST", "/v1/files")})
GRACE_BYTES_PER_SECOND = 16 * 1024
# A JSON escape that is not itself escaped (an even run of backslashes before it).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F]")


class RequestGuard:
    """ASGI middleware bounding every HTTP request's body in size and time."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = BodyClock(self.timeout)
        try:
            check_url(scope)
            if (scope["method"], scope["path"]) in STREAMED:
                await self.app(scope, clock.bound(receive), send)
                return
            body = await read_body(scope, clock.bound(receive), self.max_bytes)
            if body is None:  # the client went away
                return
            check_text(body)
        except APIError as error:
            error.headers["Connection"] = "close"
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)


class BodyClock:
    """The time a body may take: ``timeout`` seconds plus one per 16 KiB received."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.started = time.monotonic()
        self.received = 0

    def remaining(self) -> float:
        allowed = self.timeout + self.received / GRACE_BYTES_PER_SECOND
        return self.started + allowed - time.monotonic()

    def bound(self, receive: Receive) -> Callable[[], Awaitable[Message]]:
        async def receive_in_time() -> Message:
            with anyio.move_on_after(max(0.0, self.remaining())) as scope:
                message = await receive()
            if scope.cancelled_caught:
                raise RequestTimeout(
                    "The request body did not arrive in time: the client sent it too slowly."
                )
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        return receive_in_time


def check_url(scope: Scope) -> None:
    if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
        raise InvalidRequest("Invalid URL: it contains a NUL character (%00).")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is too large: at most {max_bytes} bytes are accepted "
        "(files are uploaded with POST /v1/files)."
    )


async def read_body(
    scope: Scope, receive: Callable[[], Awaitable[Message]], max_bytes: int
) -> bytes | None:
    """The whole body (``None`` if the client disconnected), at most ``max_bytes`` of it."""
    declared = _declared_length(scope)
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def check_text(body: bytes) -> None:
    """400 for a ``\\u0000`` escape, or an unpaired surrogate escape, in a JSON body."""
    if b"\\u" not in body:
        return
    if _NUL_ESCAPE.search(body):
        raise InvalidRequest("Invalid request: strings may not contain NUL characters (\\u0000).")
    if _SURROGATE_ESCAPE.search(body):
        try:
            pydantic_core.from_json(body)  # refuses unpaired surrogates
        except ValueError:
            raise InvalidRequest(JSON_INVALID) from None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already read body, then what the client sends next."""
    given = False

    async def receive_again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again
