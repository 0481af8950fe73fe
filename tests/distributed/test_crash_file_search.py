"""``kill -9`` of the worker executing a run with the hosted ``file_search`` tool: the run
resumes on the other worker and records exactly what the same run without a crash records.

A cluster of its own, whose processes embed with a small OpenAI-compatible embeddings server
in this process (``tests/file_search/embedding_server.py``): files are ingested at once, and
the test can hold the run's query embedding to catch a worker in the middle of the search.
Each scenario runs once (a module fixture) and the tests check its observations:

- ``search_crash``: the worker is killed while its query embedding is held, so the search
  step is open (its call recorded, no results); the next holder asks the model again, which
  calls file_search again, and searches once more.
- ``answer_crash``: the worker is killed after the search step completed, while the answer
  (slow, citing the passages) is being streamed; the next holder must not search again.

Both are compared with a reference run of the same scripts without a crash."""

from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from runstep.protocol.runs import FILE_SEARCH_CONTENT
from tests.distributed.conftest import Cluster, start_cluster
from tests.distributed.helpers import (
    LeaseSampler,
    LiveStream,
    Scripted,
    check_event_log,
    scripted,
    stream_run,
)
from tests.e2e.test_vector_stores import JUPITER, SOURDOUGH, TOMATOES, create_and_poll, upload
from tests.file_search.embedding_server import EmbeddingServer
from tests.support.processes import WorkerProcess
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.upstream_script import Script, ToolCall

QUERY = "giant storm on Jupiter"
MARKER = "【0:0†jupiter.txt】"
SEARCH = Script(
    tool_calls=[ToolCall("file_search", {"queries": [QUERY]})],
    usage={"prompt_tokens": 40, "completion_tokens": 7},
)
# The answer cites the first passage twice: once early (before answer_crash's kill), once late.
ANSWER_TEXT = [
    "The Great Red Spot",
    MARKER,
    " is",
    *[f" w{i:02d}" for i in range(24)],
    " a storm wider than Earth",
    MARKER,
    ".",
]
ANSWER_USAGE = {"prompt_tokens": 90, "completion_tokens": 12}
ANSWER = Script(text=ANSWER_TEXT, usage=ANSWER_USAGE)
SLOW_ANSWER = Script(text=ANSWER_TEXT, usage=ANSWER_USAGE, chunk_delay=0.05)
KILL_AFTER_DELTAS = 6  # answer_crash: after the first citation reached the client


@pytest.fixture(scope="module")
def embeddings() -> Iterator[EmbeddingServer]:
    server = EmbeddingServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def search_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
    embeddings: EmbeddingServer,
) -> Cluster:
    """Two API processes and two workers embedding with ``embeddings``."""
    return start_cluster(
        request,
        tmp_path_factory.mktemp("search-cluster"),
        upstream,
        RUNSTEP_EMBEDDINGS_BASE_URL=embeddings.base_url,
        RUNSTEP_EMBEDDINGS_MODEL="hashed-test-embeddings",
        RUNSTEP_EMBEDDINGS_DIMENSIONS="16",
    )


@dataclass(frozen=True)
class Library:
    assistant_id: str
    files: dict[str, str]  # file name → file id


@pytest.fixture(scope="module")
def library(search_cluster: Cluster) -> Library:
    """A ready vector store of three small documents and an assistant searching it."""
    a = search_cluster.client(search_cluster.a)
    files = {
        name: upload(a, name, text.encode())
        for name, text in (
            ("jupiter.txt", JUPITER),
            ("sourdough.txt", SOURDOUGH),
            ("tomatoes.txt", TOMATOES),
        )
    }
    store = create_and_poll(a, name="library", file_ids=list(files.values()))
    assert store.file_counts.completed == 3, store.file_counts
    assistant = a.beta.assistants.create(
        model="scripted-model",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    return Library(assistant.id, files)


def query_requests(embeddings: EmbeddingServer) -> int:
    """How many embedding requests asked for the run's query (every run searches the same)."""
    return sum(QUERY in inputs for inputs in embeddings.inputs())


def search_records(client: openai.OpenAI, thread_id: str, run_id: str) -> dict[str, Any]:
    """What a run recorded, read through the API, without what differs between two equal runs
    (ids, times): the run's outcome and usage, each step with its calls (file_search results
    with their passages), each message with its text and annotations."""
    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    steps = client.beta.threads.runs.steps.list(
        run_id, thread_id=thread_id, order="asc", include=[FILE_SEARCH_CONTENT]
    ).data
    messages = client.beta.threads.messages.list(thread_id, run_id=run_id, order="asc").data

    def calls(step: Any) -> list[dict[str, Any]] | None:
        if step.type != "tool_calls":
            return None
        dumped = step.step_details.to_dict(mode="json")["tool_calls"]
        return [{k: v for k, v in call.items() if k != "id"} for call in dumped]

    return {
        "status": run.status,
        "run_errors": (run.last_error, run.incomplete_details),
        "usage": run.usage.to_dict() if run.usage else None,
        "steps": [
            (s.type, s.status, s.last_error, s.usage.to_dict() if s.usage else None, calls(s))
            for s in steps
        ],
        "messages": [
            (
                m.role,
                m.status,
                m.incomplete_details,
                [part.to_dict(mode="json") for part in m.content],
            )
            for m in messages
        ],
    }


@dataclass
class Observed:
    """One run of the scripts, from the client, the API, the database and the embeddings
    server."""

    script: Scripted
    thread_id: str
    stream: LiveStream
    records: dict[str, Any]
    events: list[tuple[int, str]]
    query_requests: int  # embedding requests for the query during this run
    owners: list[str]  # the run's lease owners, in the order they were seen
    killed: WorkerProcess | None = None
    survivor: WorkerProcess | None = None
    before_kill: list[str] = field(default_factory=list)  # the events the client had by then

    @property
    def run_id(self) -> str:
        return self.stream.run_id

    @property
    def search_step(self) -> dict[str, Any]:
        """The tool_calls step as the stream last showed it."""
        (step,) = [
            e.data
            for e in self.stream.events
            if e.event == "thread.run.step.completed" and e.data["type"] == "tool_calls"
        ]
        return dict(step)

    def step_events(self, step_id: str) -> list[str]:
        return [
            e.event
            for e in self.stream.events
            if e.event.startswith("thread.run.step.") and e.data["id"] == step_id
        ]


def observe(
    cluster: Cluster,
    embeddings: EmbeddingServer,
    library: Library,
    script: Scripted,
    crash: Callable[[LiveStream], WorkerProcess] | None = None,
) -> Observed:
    """Stream a run of ``script`` through API A (``crash(stream)`` returns the worker it killed
    meanwhile, if given) and follow it to its end."""
    a, b = cluster.client(cluster.a), cluster.client(cluster.b)
    thread_id = a.beta.threads.create(messages=[{"role": "user", "content": script.say()}]).id
    searched_before = query_requests(embeddings)
    killed = survivor = None
    before_kill: list[str] = []
    stream = stream_run(cluster.a, thread_id, library.assistant_id)
    try:
        with LeaseSampler(cluster.sql) as sampler:
            if crash is not None:
                killed = crash(stream)
                before_kill = stream.names
                (survivor,) = [w for w in cluster.workers if w is not killed]
            stream.join(20)
    finally:
        stream.close()
    assert sampler.error is None, sampler.error
    return Observed(
        script=script,
        thread_id=thread_id,
        stream=stream,
        records=search_records(b, thread_id, stream.run_id),
        events=cluster.sql.events(stream.run_id),
        query_requests=query_requests(embeddings) - searched_before,
        owners=sampler.owners.get(stream.run_id, []),
        killed=killed,
        survivor=survivor,
        before_kill=before_kill,
    )


@pytest.fixture(scope="module")
def reference(search_cluster: Cluster, embeddings: EmbeddingServer, library: Library) -> Observed:
    """The scripts run without a crash."""
    search_cluster.ensure_workers()
    script = scripted(search_cluster.upstream, SEARCH, ANSWER)
    observed = observe(search_cluster, embeddings, library, script)
    assert observed.records["status"] == "completed", observed.records
    return observed


@pytest.fixture(scope="module")
def search_crash(
    search_cluster: Cluster, embeddings: EmbeddingServer, library: Library, reference: Observed
) -> Observed:
    """Killed while the search waits for its query embedding (held by the server)."""
    search_cluster.ensure_workers()
    # The search turn twice (the original request and the resumed one), then the answer.
    script = scripted(search_cluster.upstream, SEARCH, SEARCH, ANSWER)
    hold = embeddings.hold_next(QUERY)

    def crash(stream: LiveStream) -> WorkerProcess:
        assert hold.arrived.wait(10), f"no query embedding request; events: {stream.names}"
        with suppress(AssertionError):  # see test_search_crash_streamed_the_open_step_first
            stream.wait_count("thread.run.step.delta", 1, 2)
        killed = search_cluster.holder(stream.run_id)
        killed.kill()
        hold.release()  # its client is gone; the resumed search's request is not held
        return killed

    return observe(search_cluster, embeddings, library, script, crash)


@pytest.fixture(scope="module")
def answer_crash(
    search_cluster: Cluster, embeddings: EmbeddingServer, library: Library, reference: Observed
) -> Observed:
    """Killed after the search step completed, while the (slow) answer is being streamed."""
    search_cluster.ensure_workers()
    # The answer twice: the original request and the resumed one.
    script = scripted(search_cluster.upstream, SEARCH, SLOW_ANSWER, SLOW_ANSWER)

    def crash(stream: LiveStream) -> WorkerProcess:
        stream.wait_count("thread.message.delta", KILL_AFTER_DELTAS, 10)
        assert "thread.run.step.completed" in stream.names  # the search step, before the kill
        killed = search_cluster.holder(stream.run_id)
        killed.kill()
        return killed

    return observe(search_cluster, embeddings, library, script, crash)


# -- the reference -------------------------------------------------------------------------------


def test_the_reference_run_searches_once_and_cites_the_first_passage(
    reference: Observed, library: Library
) -> None:
    assert reference.query_requests == 1
    assert len(reference.owners) == 1
    (search, message) = reference.records["steps"]
    assert search[:2] == ("tool_calls", "completed")
    (call,) = search[4]
    results = call["file_search"]["results"]
    assert call["type"] == "file_search" and results, call
    assert {r["file_id"] for r in results} <= set(library.files.values())
    assert all(r["content"] for r in results)  # the passages, as include[] asked
    assert message[:2] == ("message_creation", "completed")
    ((_, status, _, (part,)),) = reference.records["messages"]
    assert status == "completed" and part["text"]["value"] == "".join(ANSWER_TEXT)
    annotations = part["text"]["annotations"]
    assert [a["file_citation"]["file_id"] for a in annotations] == [results[0]["file_id"]] * 2
    assert [a["text"] for a in annotations] == [MARKER, MARKER]
    check_event_log(reference.events, "completed")


# -- killed in the middle of the search ----------------------------------------------------------


def test_search_crash_completes_on_the_other_worker(search_crash: Observed) -> None:
    assert search_crash.killed is not None and search_crash.survivor is not None
    assert search_crash.records["status"] == "completed"
    assert search_crash.owners == [search_crash.killed.owner, search_crash.survivor.owner]
    assert search_crash.killed.returncode == -9


def test_search_crash_records_what_the_reference_records(
    search_crash: Observed, reference: Observed
) -> None:
    """One tool_calls step with one file_search call and the same results, one message with
    the same text and citations, the same usage."""
    assert search_crash.records == reference.records


def test_search_crash_streamed_the_open_step_first(search_crash: Observed) -> None:
    """While the worker searched, the client (on another process) had the open search step
    with its call: so the killed worker had recorded it, and the resumed one continued it."""
    seen = search_crash.before_kill
    assert "thread.run.step.delta" in seen, seen
    assert "thread.run.step.completed" not in seen, seen


def test_search_crash_searched_again_once(search_crash: Observed) -> None:
    """The killed search's request and the resumed one; the model was asked the same twice."""
    assert search_crash.query_requests == 2
    first, resumed, answer = (r.body["messages"] for r in search_crash.script.requests)
    assert resumed == first
    assert answer[-1]["role"] == "tool" and QUERY in answer[-1]["content"]


def test_search_crash_stream_continues_without_duplicates(
    search_crash: Observed, reference: Observed
) -> None:
    stream = search_crash.stream
    assert stream.ended_with("thread.run.completed"), stream.names[-4:]
    assert stream.names == [name for _, name in search_crash.events] + ["done"]
    assert stream.names == reference.stream.names
    assert stream.text == "".join(ANSWER_TEXT)
    # The search step streamed once: its call's first fragment before the crash, its
    # completion (with the results) after it, for the same call.
    step = search_crash.search_step
    assert search_crash.step_events(step["id"]) == [
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.run.step.delta",
        "thread.run.step.completed",
    ]
    (call,) = step["step_details"]["tool_calls"]
    first = stream.first("thread.run.step.delta")["delta"]["step_details"]["tool_calls"][0]
    assert first["id"] == call["id"] and first["type"] == "file_search"
    assert call["file_search"]["results"]
    check_event_log(search_crash.events, "completed")


# -- killed after the search, while the answer streams -------------------------------------------


def test_answer_crash_completes_on_the_other_worker(answer_crash: Observed) -> None:
    assert answer_crash.killed is not None and answer_crash.survivor is not None
    assert answer_crash.records["status"] == "completed"
    assert answer_crash.owners == [answer_crash.killed.owner, answer_crash.survivor.owner]
    assert answer_crash.killed.returncode == -9
    assert "thread.message.completed" not in answer_crash.before_kill  # killed mid-answer


def test_answer_crash_does_not_search_again(answer_crash: Observed) -> None:
    assert answer_crash.query_requests == 1
    # The search turn once; the answer asked twice with the same passages.
    _, answer, resumed = (r.body["messages"] for r in answer_crash.script.requests)
    assert resumed == answer
    assert answer[-1]["role"] == "tool" and QUERY in answer[-1]["content"]


def test_answer_crash_records_what_the_reference_records(
    answer_crash: Observed, reference: Observed
) -> None:
    assert answer_crash.records == reference.records


def test_answer_crash_stream_continues_without_duplicates(
    answer_crash: Observed, reference: Observed
) -> None:
    stream = answer_crash.stream
    assert stream.ended_with("thread.run.completed"), stream.names[-4:]
    assert stream.names == [name for _, name in answer_crash.events] + ["done"]
    assert stream.names == reference.stream.names
    assert stream.text == "".join(ANSWER_TEXT)
    # Each citation streamed once, on the delta that completed its marker.
    cited = [
        annotation
        for e in stream.events
        if e.event == "thread.message.delta"
        for annotation in e.data["delta"]["content"][0]["text"].get("annotations") or []
    ]
    (message,) = answer_crash.records["messages"]
    recorded = message[3][0]["text"]["annotations"]
    assert [{k: v for k, v in a.items() if k != "index"} for a in cited] == recorded
    assert [a["index"] for a in cited] == [0, 1]
    check_event_log(answer_crash.events, "completed")
