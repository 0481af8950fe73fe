"""Helpers for end-to-end run tests: scripted replies, waiting on runs, recorded streams.

``recording_client`` is the official client (responses validated like the ``client``
fixture's) that also keeps the raw body of every ``text/event-stream`` response, so a test
can check the exact event sequence, ``done`` included, and validate every event's data.
"""

import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import pytest
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

from tests.conformance import validate_event
from tests.conftest import STATIC_KEY, RunningServer, _fresh_database, upstream_env
from tests.support.scripted_upstream import RecordedRequest, ScriptedUpstream
from tests.support.server import ServerProcess
from tests.support.upstream_script import Script, message_texts
from tests.support.validating_client import validate_body

# The opening events of a streamed run, and of a message_creation step with its message.
STARTED = ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
MESSAGE_OPENED = [
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
]
FINAL = frozenset({"requires_action", "cancelled", "completed", "failed", "expired", "incomplete"})
RUN_STAMPS = ("started_at", "cancelled_at", "failed_at", "completed_at")
STEP_STAMPS = ("expired_at", "cancelled_at", "failed_at", "completed_at")
MESSAGE_STAMPS = ("completed_at", "incomplete_at")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# --- scripted upstream ------------------------------------------------------------------------


@dataclass(frozen=True)
class Scripted:
    """Scripts registered under a name no other test uses; put ``marker`` in a user message."""

    upstream: ScriptedUpstream
    name: str

    @property
    def marker(self) -> str:
        return f"[[script:{self.name}]]"

    def say(self, text: str = "Hello") -> str:
        """``text`` with the marker that routes the run's model calls to these scripts."""
        return f"{text} {self.marker}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The chat completion requests these scripts answered, oldest first."""
        return [r for r in self.upstream.requests if r.source == f"named:{self.name}"]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The bodies of ``requests``."""
        return [r.body for r in self.requests]


def scripted(upstream: ScriptedUpstream, *scripts: Script) -> Scripted:
    """Register ``scripts`` under a fresh name (the last one repeats)."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    upstream.register(name, *scripts)
    return Scripted(upstream, name)


def upstream_prompt_tokens(request: RecordedRequest) -> int:
    """The prompt_tokens the scripted upstream reports for ``request`` (four chars a token)."""
    chars = sum(len(text) for text in message_texts(request.body.get("messages", [])))
    return max(1, chars // 4)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# --- objects ----------------------------------------------------------------------------------


def assistant(client: openai.OpenAI, **options: Any) -> str:
    """A new assistant on the scripted model; returns its id."""
    return client.beta.assistants.create(model="scripted-model", **options).id


def thread_with(client: openai.OpenAI, *texts: str) -> str:
    """A new thread holding one user message per text; returns its id."""
    messages = [{"role": "user", "content": text} for text in texts]
    return client.beta.threads.create(messages=messages).id  # type: ignore[arg-type]


def wait_for_run(
    client: openai.OpenAI,
    thread_id: str,
    run_id: str,
    statuses: frozenset[str] | set[str] = FINAL,
    timeout: float = 10.0,
) -> Run:
    """Poll GET run until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run.status!r} after {timeout}s")
        time.sleep(0.05)


def steps_of(client: openai.OpenAI, run: Run) -> list[RunStep]:
    return client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc").data


def messages_of(client: openai.OpenAI, run: Run) -> list[Message]:
    """The messages ``run`` wrote, oldest first."""
    page = client.beta.threads.messages.list(run.thread_id, run_id=run.id, order="asc")
    return page.data


def assert_stamps(obj: Any, names: tuple[str, ...], *set_names: str) -> None:
    """Each of ``names`` is a Unix-seconds timestamp from ``obj.created_at`` until now if it
    is in ``set_names``, else null."""
    for name in names:
        value = getattr(obj, name)
        if name in set_names:
            assert isinstance(value, int), (name, value)
            assert obj.created_at <= value <= time.time() + 1, (name, value)
        else:
            assert value is None, (name, value)


# --- recorded streams -------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(body: str) -> list[Frame]:
    """The ``event:``/``data:`` frames of an SSE body (any line break; comments such as pings
    skipped). Each frame must hold exactly one ``event:`` and one ``data:`` line."""
    frames, fields = [], []
    for line in [*re.split(r"\r\n|\r|\n", body), ""]:
        if line.startswith(":"):
            continue
        if line:
            fields.append(line.partition(":")[::2])
            continue
        if fields:
            assert [name for name, _ in fields] == ["event", "data"], fields
            frames.append(Frame(*(value.removeprefix(" ") for _, value in fields)))
        fields = []
    return frames


@dataclass
class StreamLog:
    """The raw bodies of the event streams a client received, in the order they began."""

    bodies: list[bytearray] = field(default_factory=list)

    def last(self) -> list[Frame]:
        """The frames of the newest stream, every one validated against the spec."""
        assert self.bodies, "no event stream was received"
        frames = parse_sse(self.bodies[-1].decode())
        for frame in frames:
            validate_event(frame.event, frame.data if frame.event == "done" else frame.json())
        return frames


class _Tee(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self._inner, self._sink = inner, sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _RecordingTransport(httpx2.BaseTransport):
    def __init__(self, log: StreamLog) -> None:
        self._inner = httpx2.HTTPTransport()
        self._log = log

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            sink = bytearray()
            self._log.bodies.append(sink)
            response.stream = _Tee(response.stream, sink)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self._inner.close()


def _validate_json(response: httpx2.Response) -> None:
    if "application/json" in response.headers.get("content-type", ""):
        response.read()
        validate_body(response.json())


def recording_client(base_url: str, api_key: str) -> tuple[openai.OpenAI, StreamLog]:
    """The official client, validating JSON responses and recording event streams."""
    log = StreamLog()
    http_client = openai.DefaultHttpxClient(
        transport=_RecordingTransport(log), event_hooks={"response": [_validate_json]}
    )
    client = openai.OpenAI(
        base_url=base_url, api_key=api_key, http_client=http_client, max_retries=0
    )
    return client, log


def streamed_text(frames: list[Frame]) -> str:
    """The text of every ``thread.message.delta``, joined."""
    return "".join(
        part["text"]["value"]
        for frame in frames
        if frame.event == "thread.message.delta"
        for part in frame.json()["delta"]["content"]
    )


def data_of(frames: list[Frame], event: str) -> Any:
    """The data of the only ``event`` frame."""
    [data] = [frame.json() for frame in frames if frame.event == event]
    return data


def names(frames: list[Frame]) -> list[str]:
    return [frame.event for frame in frames]


def without_deltas(frames: list[Frame]) -> list[str]:
    """Event names with runs of delta events collapsed away."""
    return [f.event for f in frames if not f.event.endswith(".delta")]


# --- servers of their own ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """A ``runstep serve`` on ``backend`` with extra environment and arguments."""

    backend: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()


@contextmanager
def own_servers(
    specs: dict[str, ServerSpec],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
) -> Iterator[dict[str, RunningServer]]:
    """Start one server per spec, each on a fresh database and configured like ``server``,
    all at once (a server takes seconds to import and start)."""
    started: dict[str, RunningServer] = {}
    try:
        for name, spec in specs.items():
            directory = tmp_path_factory.mktemp(name)
            url = _fresh_database(spec.backend, directory, request)
            env = {
                "RUNSTEP_DATA_DIR": str(directory),
                "RUNSTEP_DATABASE_URL": url,
                "RUNSTEP_API_KEYS": STATIC_KEY,
                **upstream_env(upstream),
                **spec.env,
            }
            process = ServerProcess(env, directory / "server.log", spec.args)
            started[name] = RunningServer(process, url, spec.backend)
        with ThreadPoolExecutor(max_workers=len(started) or 1) as pool:
            list(pool.map(lambda server: server.process.start(), started.values()))
        yield started
    finally:
        for server in started.values():
            server.process.stop()
