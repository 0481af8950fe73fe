"""Scripted OpenAI-compatible Chat Completions server: the only upstream stand-in for tests.

Script selection rules (named marker, FIFO, default): see the `upstream_script` docstring;
wire format: `chat_wire`.

In-process: `with ScriptedUpstream() as up: OpenAI(base_url=up.base_url, ...)`.
Separate process: `python -m tests.support.scripted_upstream --port N`, driven via
`POST /_control/enqueue`, `POST /_control/register/{name}` (body: a script object
or a list of them, see `Script.to_dict`), `GET /_control/requests`, `POST /_control/reset`,
`POST /_control/models` (`{"models": [ids], "status": 200}`: what GET /v1/models answers) and
`GET /_control/model_requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import uvicorn

from tests.support.chat_wire import Exchange, completion_body, error_body, stream_events
from tests.support.upstream_script import (
    RecordedRequest,
    Script,
    ScriptBook,
    ToolCall,
    apply_token_limit,
)

__all__ = ["RecordedRequest", "Script", "ScriptBook", "ScriptedUpstream", "ToolCall", "UpstreamApp"]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class StreamAborted(Exception):
    """Raised inside the app to make uvicorn drop the connection mid-response."""


class _QuietAborts(logging.Filter):
    """Hide uvicorn's traceback for deliberate `StreamAborted` connection drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamAborted))


_QUIET_ABORTS = _QuietAborts()


class _Pacer:
    """Scripted sleeps that end early when the client disconnects."""

    def __init__(self, receive: Receive) -> None:
        self._gone = asyncio.Event()
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep; return False if the client went away."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self._gone.wait(), seconds)
            except TimeoutError:
                return True
        return not self._gone.is_set()

    def close(self) -> None:
        self._task.cancel()


def _headers(extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [*extra, (b"x-request-id", b"req_" + uuid.uuid4().hex.encode())]


async def _send_json(
    send: Send, status: int, payload: Any, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": _headers(_JSON + list(extra))}
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


class UpstreamApp:
    """The raw ASGI application (routing, chat completions, control API)."""

    def __init__(self, book: ScriptBook) -> None:
        self.book = book

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path, raw = scope["method"], scope["path"], await _read_body(receive)
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            return await _send_json(send, 400, error_body(400))
        if (method, path) == ("POST", "/v1/chat/completions") and isinstance(payload, dict):
            return await self._chat(scope, payload, receive, send)
        if (method, path) == ("GET", "/v1/models"):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            status, ids = self.book.list_models(headers)
            if status != 200:
                return await _send_json(send, status, error_body(status))
            data = [
                {"id": i, "object": "model", "created": 1700000000, "owned_by": "runstep-tests"}
                for i in ids
            ]
            return await _send_json(send, 200, {"object": "list", "data": data})
        if path.startswith("/_control/"):
            return await self._control(method, path.removeprefix("/_control/"), payload, send)
        await _send_json(
            send, 404, error_body(404, {"message": f"Unknown request URL: {method} {path}."})
        )

    async def _control(self, method: str, action: str, payload: Any, send: Send) -> None:
        """The HTTP control API (scripts as JSON, see `Script.to_dict`)."""
        if (method, action) == ("GET", "requests"):
            return await _send_json(send, 200, [asdict(r) for r in self.book.requests])
        if (method, action) == ("POST", "reset"):
            self.book.reset()
            return await _send_json(send, 200, {"ok": True})
        if (method, action) == ("POST", "models"):
            self.book.serve_models(payload.get("models", []), payload.get("status", 200))
            return await _send_json(send, 200, {"ok": True})
        if (method, action) == ("GET", "model_requests"):
            return await _send_json(send, 200, [asdict(r) for r in self.book.model_requests])
        if method != "POST" or not (action == "enqueue" or action.startswith("register/")):
            return await _send_json(
                send, 404, error_body(404, {"message": f"Unknown control action {action}."})
            )
        try:
            scripts = [
                Script.from_dict(d) for d in (payload if isinstance(payload, list) else [payload])
            ]
        except (TypeError, AttributeError) as exc:
            return await _send_json(
                send, 400, error_body(400, {"message": f"Invalid script: {exc}"})
            )
        if action == "enqueue":
            self.book.enqueue(*scripts)
        else:
            self.book.register(action.removeprefix("register/"), *scripts)
        await _send_json(send, 200, {"ok": True, "scripts": len(scripts)})

    async def _chat(self, scope: Scope, body: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        script = apply_token_limit(self.book.take(scope["path"], headers, body), body)
        pacer = _Pacer(receive)
        try:
            if await pacer.sleep(script.initial_delay):
                await _respond(script, Exchange.of(body), bool(body.get("stream")), pacer, send)
        finally:
            pacer.close()


async def _respond(script: Script, ex: Exchange, stream: bool, pacer: _Pacer, send: Send) -> None:
    """Send the scripted error, stream or completion."""
    if script.status != 200:
        retry = (
            ((b"retry-after", f"{script.retry_after:g}".encode()),)
            if script.retry_after is not None
            else ()
        )
        await _send_json(send, script.status, error_body(script.status, script.error), retry)
    elif stream:
        await _stream(script, ex, pacer, send)
    else:
        await _complete(script, ex, send)


async def _stream(script: Script, ex: Exchange, pacer: _Pacer, send: Send) -> None:
    """Stream SSE events, pacing, aborting or stopping on disconnect as scripted."""
    await send({"type": "http.response.start", "status": 200, "headers": _headers(_SSE)})
    for sent, event in enumerate(stream_events(script, ex)):
        if sent == script.abort_after:
            raise StreamAborted(f"scripted abort after {sent} chunks")
        if sent and not await pacer.sleep(script.chunk_delay):
            return
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _complete(script: Script, ex: Exchange, send: Send) -> None:
    """Send a `chat.completion` body (only half of it when an abort is scripted)."""
    body = json.dumps(completion_body(script, ex)).encode()
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": _headers(_JSON + length)})
    if script.abort_after is not None:
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        raise StreamAborted("scripted abort mid-body")
    await send({"type": "http.response.body", "body": body})


def _server(book: ScriptBook) -> uvicorn.Server:
    config = uvicorn.Config(
        UpstreamApp(book),
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    logging.getLogger("uvicorn.error").addFilter(_QUIET_ABORTS)
    return uvicorn.Server(config)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class ScriptedUpstream:
    """The scripted server on a real socket, served by uvicorn in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunks: int = 20,
        chunk_delay: float = 0.0,
        initial_delay: float = 0.0,
    ) -> None:
        self.host, self.port = host, port
        self.book = ScriptBook(chunks, chunk_delay, initial_delay)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, e.g. `http://127.0.0.1:PORT/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 10.0) -> ScriptedUpstream:
        """Bind (port 0 picks a free port), serve in a daemon thread, wait until ready."""
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = _server(self.book)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("scripted upstream failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, *scripts: Script) -> None:
        """Append scripts to the global FIFO queue."""
        self.book.enqueue(*scripts)

    def register(self, name: str, *scripts: Script) -> None:
        """Set the queue used by requests containing `[[script:NAME]]`."""
        self.book.register(name, *scripts)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Chat completion requests received so far (path, headers, body, source)."""
        return self.book.requests

    def serve_models(self, models: list[str], status: int = 200) -> None:
        """Answer GET /v1/models with these ids (or with an error ``status``)."""
        self.book.serve_models(models, status)

    @property
    def model_requests(self) -> list[RecordedRequest]:
        """GET /v1/models requests received so far (their headers)."""
        return self.book.model_requests

    def reset(self) -> None:
        """Clear queues, named scripts and the request log."""
        self.book.reset()


def main(argv: list[str] | None = None) -> None:
    """CLI: serve in the foreground, default reply shaped by the flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--chunks", type=int, default=20, help="chunks in the default reply")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument(
        "--initial-delay", type=float, default=0.0, help="seconds before the first byte"
    )
    args = parser.parse_args(argv)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"scripted upstream listening on http://{args.host}:{port}/v1", flush=True)
    _server(ScriptBook(args.chunks, args.chunk_delay, args.initial_delay)).run(sockets=[sock])


if __name__ == "__main__":
    main()
