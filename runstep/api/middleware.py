"""ASGI middleware: a request id on every request (``x-request-id``), also in the logs."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runstep import ids
from runstep.observability import request_id


class RequestIdMiddleware:
    """Adopt the caller's ``x-request-id`` or make one; echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:128]
        rid = given or "req_" + ids.random_token(24)
        header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
