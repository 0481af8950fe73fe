"""A tiny OpenAI-compatible ``/v1/embeddings`` server on a real socket, for OpenAIEmbedder tests.

Vectors are deterministic (`expected_vector`), deliberately not unit length, and returned in
reverse order (clients must sort by ``index``). ``fail_next`` queues error replies;
``hold_next`` makes the next request embedding a given text wait until the test releases it
(to catch a client in the middle of a request).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEFAULT_DIMENSIONS = 8


def expected_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The server's (un-normalized) vector for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [float(digest[i % len(digest)] - 100) for i in range(dimensions)]


def expected_unit(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    vector = np.asarray(expected_vector(text, dimensions), dtype=np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class Failure:
    status: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hold:
    """The next request whose inputs include ``text`` waits until `release` (or the server
    stops); ``arrived`` is set when it came in."""

    text: str
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class EmbeddingServer:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    extra_vectors: int = 0  # >0: answer with more vectors than inputs (a broken server)
    holds: list[Hold] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def reset(self) -> None:
        self.release_all()
        self.requests.clear()
        self.failures.clear()
        self.holds.clear()
        self.extra_vectors = 0

    def fail_next(self, *failures: Failure) -> None:
        self.failures.extend(failures)

    def hold_next(self, text: str) -> Hold:
        """Hold the next request that embeds ``text`` until the returned hold is released."""
        hold = Hold(text)
        self.holds.append(hold)
        return hold

    def release_all(self) -> None:
        for hold in self.holds:
            hold.release()

    def inputs(self) -> list[list[str]]:
        """Each request's inputs, oldest first."""
        return [_inputs(request["body"]) for request in self.requests]

    async def _wait_if_held(self, inputs: list[str]) -> None:
        hold = next((h for h in self.holds if h.text in inputs and not h.arrived.is_set()), None)
        if hold is None:
            return
        hold.arrived.set()
        while not hold.released.is_set():
            await asyncio.sleep(0.01)

    async def _embeddings(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        await self._wait_if_held(_inputs(body))
        if self.failures:
            failure = self.failures.pop(0)
            error = {"message": failure.message, "type": "server_error", "param": None}
            return JSONResponse(
                {"error": {**error, "code": None}}, failure.status, headers=failure.headers
            )
        inputs = _inputs(body)
        dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
        data = [
            {"object": "embedding", "index": index, "embedding": expected_vector(text, dimensions)}
            for index, text in enumerate(inputs + inputs[: self.extra_vectors])
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data[::-1],
                "model": body["model"],
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        )

    def start(self) -> EmbeddingServer:
        app = Starlette(routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", server_header=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("embedding test server failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.release_all()
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None


def _inputs(body: dict[str, Any]) -> list[str]:
    given = body["input"]
    return list(given) if isinstance(given, list) else [given]
