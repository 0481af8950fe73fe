"""Every limit a client can run into, against a real ``runstep serve`` with tight settings,
each bounded and answered clearly (the error envelope; 429 with ``Retry-After``):

- request body size: 413, from ``Content-Length`` before the body is sent, or as the body
  passes the limit (chunked); nothing created;
- requests per key per minute: 429 with ``Retry-After``, other keys unaffected;
- open streams per key: 429 before anything is created, other keys unaffected;
- slow clients (slowloris): a connection that sends no or trickling headers gets 408, endless
  headers 431, a trickling body 408 (JSON and uploads), each then closed;
- a client that stops reading a stream is disconnected once its writes stall, and its stream
  slot comes back.

Elsewhere: file size (413) in ``test_files.py``, 32 messages per new thread and NUL or
unpaired surrogates in ``test_errors.py``, the process-wide stream bound in
``distributed/test_operations.py``. The server runs in open mode (any bearer token from
loopback, one project), so each token is a fresh key with its own budgets."""

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import sqlite_server, upstream_env
from tests.distributed.helpers import LiveStream, eventually, slow_text
from tests.support.runs import scripted
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.server import ServerProcess
from tests.support.upstream_script import Script
from tests.support.validating_client import validate_body

BODY_LIMIT = 64 * 1024
REQUESTS_PER_MINUTE = 20
TIGHT = {
    "RUNSTEP_API_KEYS": "",
    "RUNSTEP_MAX_BODY_BYTES": str(BODY_LIMIT),
    "RUNSTEP_REQUESTS_PER_MINUTE": str(REQUESTS_PER_MINUTE),
    "RUNSTEP_MAX_STREAMS_PER_KEY": "1",
    "RUNSTEP_HEADER_TIMEOUT_SECONDS": "1",
    "RUNSTEP_BODY_TIMEOUT_SECONDS": "1",
    "RUNSTEP_SEND_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def tight(
    tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream
) -> Iterator[ServerProcess]:
    with sqlite_server(tmp_path_factory.mktemp("tight"), **upstream_env(upstream), **TIGHT) as up:
        yield up


def key() -> dict[str, str]:
    """Headers with a fresh bearer token: a key with budgets of its own."""
    return {"Authorization": f"Bearer sk-{uuid.uuid4().hex}", "OpenAI-Beta": "assistants=v2"}


def refused(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    validate_body(body)
    return body["error"]


def count(server: ServerProcess, path: str) -> int:
    return len(httpx.get(f"{server.base_url}{path}?limit=100", headers=key()).json()["data"])


def connect(server: ServerProcess, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:  # before connecting, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


# --- size -------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_and_nothing_is_created(tight: ServerProcess) -> None:
    before = count(tight, "/assistants")
    body = {"model": "m", "instructions": "x" * BODY_LIMIT}
    with httpx.Client(base_url=tight.base_url, headers=key()) as http:
        error = refused(http.post("/assistants", json=body), 413)
        assert "too large" in error["message"] and str(BODY_LIMIT) in error["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: refused as it passes the limit
            yield b'{"model": "m", "instructions": "'
            for _ in range(8):
                yield b"x" * 16384
            yield b'"}'

        headers = {"content-type": "application/json"}
        refused(http.post("/assistants", content=chunked(), headers=headers), 413)
        fits = {"model": "m", "instructions": "x" * (BODY_LIMIT - 1000)}
        assert http.post("/assistants", json=fits).status_code == 200
    assert count(tight, "/assistants") == before + 1


def test_a_declared_oversized_body_is_refused_before_it_is_sent(tight: ServerProcess) -> None:
    with connect(tight) as sock:
        sock.sendall(
            b"POST /v1/assistants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 413 ") and b"connection: close" in reply.lower()


# --- rates and streams --------------------------------------------------------------------------


def test_requests_over_the_rate_of_a_key_are_429_with_retry_after(tight: ServerProcess) -> None:
    mine = key()
    with httpx.Client(base_url=tight.base_url) as http:
        codes = [http.get("/assistants", headers=mine).status_code for _ in range(20)]
        assert codes == [200] * REQUESTS_PER_MINUTE
        limited = http.get("/assistants", headers=mine)
        assert refused(limited, 429)["code"] == "rate_limit_exceeded"
        assert int(limited.headers["retry-after"]) >= 1
        assert http.get("/assistants", headers=key()).status_code == 200  # another key


def test_a_second_open_stream_of_a_key_is_429_and_creates_nothing(
    tight: ServerProcess, upstream: ScriptedUpstream
) -> None:
    slow = scripted(upstream, slow_text(20, 0.05))
    mine = key()
    with httpx.Client(base_url=tight.base_url, headers=mine) as http:
        assistant = http.post("/assistants", json={"model": "gpt-4o"}).json()["id"]
        threads = [
            http.post("/threads", json={"messages": [{"role": "user", "content": slow.say()}]})
            for _ in range(2)
        ]
        first_thread, second_thread = (thread.json()["id"] for thread in threads)
        body = {"assistant_id": assistant, "stream": True}
        first = LiveStream(tight.url, f"/v1/threads/{first_thread}/runs", body, headers=mine)
        first.start().wait_count("thread.message.delta", 1, 10)
        try:
            limited = http.post(f"/threads/{second_thread}/runs", json=body)
            assert "open streams" in refused(limited, 429)["message"]
            assert int(limited.headers["retry-after"]) >= 1
            assert http.get(f"/threads/{second_thread}/runs").json()["data"] == []
            other = LiveStream(tight.url, "/v1/threads/runs", body, headers=key())
            assert other.start().join(10).ended_with("thread.run.completed")
            first.join(10)
        finally:
            first.close()
        again = LiveStream(tight.url, f"/v1/threads/{second_thread}/runs", body, headers=mine)
        assert again.start().join(10).ended_with("thread.run.completed")


# --- slow clients -------------------------------------------------------------------------------


def test_idle_or_trickling_headers_are_timed_out(tight: ServerProcess) -> None:
    started = time.monotonic()
    with connect(tight) as idle:
        assert answer(idle).startswith(b"HTTP/1.1 408 ")
    with connect(tight) as trickle:
        with contextlib.suppress(OSError):  # closed on us: expected
            for byte in b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 40:
                trickle.send(bytes([byte]))
                time.sleep(0.05)
        reply = answer(trickle)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"did not arrive in time" in reply
    assert time.monotonic() - started < 6
    assert httpx.get(f"{tight.url}/health").status_code == 200


def test_endless_headers_are_431(tight: ServerProcess) -> None:
    with connect(tight) as sock:
        with contextlib.suppress(OSError):  # it may stop reading us
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000)
        assert answer(sock).startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("upload", [False, True], ids=["json", "upload"])
def test_a_trickling_body_is_a_408_and_creates_nothing(tight: ServerProcess, upload: bool) -> None:
    before = count(tight, "/files")
    head = (
        b"POST /v1/files HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        if upload
        else b"POST /v1/assistants HTTP/1.1\r\nContent-Type: application/json\r\n"
    )
    start = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    with connect(tight) as sock:
        sock.sendall(
            head + b"Host: x\r\nAuthorization: Bearer sk-slow\r\nContent-Length: 5000\r\n\r\n"
        )
        sock.sendall(start if upload else b'{"model": "m", "name": "')
        with contextlib.suppress(OSError):  # closed on us: expected
            for _ in range(60):
                sock.send(b"x")
                time.sleep(0.05)
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"connection: close" in reply.lower()
    assert b"too slowly" in reply
    assert count(tight, "/files") == before


def _active_streams(server: ServerProcess) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("runstep_active_streams "):
            return float(line.split()[1])
    raise AssertionError("no runstep_active_streams in /metrics")


def test_a_client_that_stops_reading_a_stream_is_dropped(
    tight: ServerProcess, upstream: ScriptedUpstream
) -> None:
    """The reply (8 MiB) is larger than what the sockets buffer, so the server's writes stall
    once the client reads nothing; a second later the connection is cut and the stream slot
    comes back (the key can stream again)."""
    chatty = scripted(upstream, Script(text=["y" * 8192] * 1024))
    mine = key()
    token = mine["Authorization"].encode()
    with httpx.Client(base_url=tight.base_url, headers=mine) as http:
        assistant = http.post("/assistants", json={"model": "gpt-4o"}).json()["id"]
        thread = http.post(
            "/threads", json={"messages": [{"role": "user", "content": chatty.say()}]}
        ).json()["id"]
    baseline = _active_streams(tight)
    body = f'{{"assistant_id": "{assistant}", "stream": true}}'.encode()
    with connect(tight, receive_buffer=4096) as sock:
        sock.sendall(
            b"POST /v1/threads/%s/runs HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (thread.encode(), token, len(body), body)
        )
        eventually(lambda: _active_streams(tight) == baseline + 1, 10, "the stream open")
        eventually(lambda: _active_streams(tight) == baseline, 20, "the stalled stream dropped")
        try:
            received = answer(sock)  # what the sockets buffered, then the cut
        except ConnectionResetError:
            received = b""
        assert b"event: done" not in received and len(received) < 8 * 1024 * 1024
    slow = scripted(upstream, Script(text=["fine"]))
    with httpx.Client(base_url=tight.base_url, headers=mine) as http:
        thread = http.post(
            "/threads", json={"messages": [{"role": "user", "content": slow.say()}]}
        ).json()["id"]
    again = LiveStream(
        tight.url,
        f"/v1/threads/{thread}/runs",
        {"assistant_id": assistant, "stream": True},
        headers=mine,
    )
    assert again.start().join(10).ended_with("thread.run.completed")
