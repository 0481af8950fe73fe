"""The floor: a minimal streaming endpoint of the web framework Runstep is built on (FastAPI on
uvicorn, run as ``runstep serve`` runs it: uvloop, httptools), relaying the same scripted
upstream, so each figure measured on Runstep can also be read as a ratio to what the framework
itself allows on this machine.

``POST /v1/threads/{thread_id}/runs`` and ``POST /v1/threads/runs`` answer like a streamed
run of the Assistants API: ``thread.run.created``, then one ``thread.message.delta`` per
content chunk of a chat completion streamed from the upstream (the request body set with
``PUT /_floor/chat``, whatever the run request says), then ``thread.run.completed`` and
``event: done``. It is what any streaming relay must do at least (accept the request, open a
streaming request upstream, parse each chunk, frame it as an event) and nothing more: no
database, no authentication, no run state. Its upstream client (httpx) has no connection
limit.

``python -m bench.floor --upstream URL [--port 0]`` prints ``floor listening on URL`` once it
is bound; ``floor_server`` runs it as a process of its own.
"""

import argparse
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from bench.common import announced_process

MESSAGE_ID = "msg_floor"


def _frame(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


def _delta(text: str) -> bytes:
    delta = {"id": MESSAGE_ID, "object": "thread.message.delta",
             "delta": {"content": [{"index": 0, "type": "text", "text": {"value": text}}]}}
    return _frame("thread.message.delta", json.dumps(delta))


def create_app(upstream: str) -> FastAPI:
    """The floor's app, relaying ``upstream`` (``http://HOST:PORT/v1``)."""
    state: dict[str, Any] = {"chat": {"model": "scripted-model", "stream": True,
                                      "messages": [{"role": "user", "content": "Hello"}]}}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=upstream, timeout=60.0, limits=limits) as client:
            state["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    async def relay() -> AsyncIterator[bytes]:
        yield _frame("thread.run.created", '{"object":"thread.run","status":"queued"}')
        client: httpx.AsyncClient = state["client"]
        async with client.stream("POST", "/chat/completions", json=state["chat"]) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[6:]).get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield _delta(text)
        yield _frame("thread.run.completed", '{"object":"thread.run","status":"completed"}')
        yield _frame("done", "[DONE]")

    async def stream(request: Request) -> StreamingResponse:
        await request.body()
        return StreamingResponse(relay(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    app.add_api_route("/v1/threads/{thread_id}/runs", stream, methods=["POST"])
    app.add_api_route("/v1/threads/runs", stream, methods=["POST"])

    @app.put("/_floor/chat")
    async def set_chat(request: Request) -> JSONResponse:
        state["chat"] = {**await request.json(), "stream": True}
        return JSONResponse({"ok": True})

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app


# --- as a process of its own ---------------------------------------------------------------------


@dataclass
class Floor:
    process: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def floor_server(upstream: str, timeout: float = 30.0) -> Iterator[Floor]:
    """``python -m bench.floor`` relaying ``upstream`` on a free port, stopped on exit."""
    command = [sys.executable, "-m", "bench.floor", "--port", "0", "--upstream", upstream]
    with announced_process(command, "the floor", "/health", timeout) as (process, url):
        yield Floor(process, url)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--upstream", required=True, help="the upstream's base URL (.../v1)")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    print(f"floor listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    # as `runstep serve` runs uvicorn: default loop and HTTP implementations (uvloop, httptools),
    # its default backlog, no access log
    config = uvicorn.Config(create_app(args.upstream), log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
