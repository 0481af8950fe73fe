"""The hosted file_search tool inside runs, through the official client, on both stores: the
scripted model calls ``file_search``, the run records a ``tool_calls`` step with ranking
options and results (passages only when ``include[]`` asks), hands the passages to the model
and the answer carries ``file_citation`` annotations over the markers it cites. Also the
built-in local model's offline path. Every response is validated against the spec."""

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from runstep.protocol.runs import FILE_SEARCH_CONTENT
from tests.conftest import STATIC_KEY, sqlite_server, upstream_env
from tests.e2e.test_vector_stores import JUPITER, SOURDOUGH, TOMATOES, create_and_poll, upload
from tests.support.runs import Scripted, recording_client, scripted
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall
from tests.support.server import ServerProcess, free_port
from tests.support.validating_client import client as validating_client

MARKER = "【0:0†jupiter.txt】"


def library(client: openai.OpenAI) -> tuple[str, dict[str, str]]:
    """A ready vector store holding three small documents; (store id, file ids by name)."""
    files = {
        name: upload(client, name, text.encode())
        for name, text in (
            ("jupiter.txt", JUPITER),
            ("sourdough.txt", SOURDOUGH),
            ("tomatoes.txt", TOMATOES),
        )
    }
    store = create_and_poll(client, name="library", file_ids=list(files.values()))
    assert store.file_counts.completed == 3
    return store.id, files


def searching_model(upstream: ScriptedUpstream, queries: list[str], answer: list[str]) -> Scripted:
    """A model that calls file_search with ``queries``, then answers with ``answer`` chunks."""
    return scripted(
        upstream,
        Script(
            tool_calls=[ToolCall("file_search", {"queries": queries})],
            usage={"prompt_tokens": 40, "completion_tokens": 7},
        ),
        Script(text=answer, usage={"prompt_tokens": 90, "completion_tokens": 12}),
    )


def searching_assistant(client: openai.OpenAI, store_id: str, **settings: Any) -> str:
    tool: dict[str, Any] = {"type": "file_search"}
    if settings:
        tool["file_search"] = settings
    return client.beta.assistants.create(
        model="scripted-model",
        tools=[tool],  # type: ignore[list-item]
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    ).id


ANSWER = ["The Great Red Spot is a storm wider than Earth", MARKER, "."]


def test_run_searches_records_results_and_cites_the_passage(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    store_id, files = library(client)
    model = searching_model(upstream, ["giant storm on Jupiter"], ANSWER)
    assistant_id = searching_assistant(client, store_id)
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": model.say("What is the red spot?")}]
    )

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, include=[FILE_SEARCH_CONTENT]
    )

    assert run.status == "completed", run.last_error
    assert run.usage is not None and run.usage.total_tokens == 40 + 7 + 90 + 12
    search_step, message_step = reversed(
        client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    )
    assert search_step.type == "tool_calls" and search_step.status == "completed"
    assert search_step.usage is not None and search_step.usage.total_tokens == 47
    [call] = search_step.step_details.tool_calls  # type: ignore[union-attr]
    assert call.type == "file_search" and call.id.startswith("call_")
    assert call.file_search.ranking_options is not None
    assert call.file_search.ranking_options.model_dump() == {
        "ranker": "default_2024_08_21",
        "score_threshold": 0.0,
    }
    results = call.file_search.results or []
    assert [r.file_id for r in results][:1] == [files["jupiter.txt"]]
    assert results[0].file_name == "jupiter.txt"
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert all(r.content is None for r in results)  # not asked for on this list call

    # The passages went back to the model, each behind its marker; the function is offered.
    first, second = model.bodies
    assert "file_search" in [t["function"]["name"] for t in first["tools"]]
    [asked] = [m for m in second["messages"] if m.get("tool_calls")]
    assert asked["tool_calls"][0]["function"]["name"] == "file_search"
    assert json.loads(asked["tool_calls"][0]["function"]["arguments"]) == {
        "queries": ["giant storm on Jupiter"]
    }
    tool_result = second["messages"][-1]
    assert tool_result["role"] == "tool" and tool_result["tool_call_id"] == call.id
    assert MARKER in tool_result["content"] and "anticyclonic storm" in tool_result["content"]

    # The answer cites the passage where the marker stands.
    assert message_step.type == "message_creation"
    [reply] = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    text = reply.content[0].text  # type: ignore[union-attr]
    assert text.value == "".join(ANSWER)
    [citation] = text.annotations
    assert citation.type == "file_citation"
    assert citation.file_citation.file_id == files["jupiter.txt"]  # type: ignore[union-attr]
    assert citation.text == MARKER
    assert text.value[citation.start_index : citation.end_index] == MARKER


def test_include_asks_for_passage_content_on_steps(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    store_id, _ = library(client)
    model = searching_model(upstream, ["sourdough starter"], ["Feed it."])
    assistant_id = searching_assistant(client, store_id, max_num_results=2)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    assert run.status == "completed", run.last_error

    steps = client.beta.threads.runs.steps
    plain = steps.list(run.id, thread_id=thread.id, order="asc").data[0]
    full = steps.list(run.id, thread_id=thread.id, order="asc", include=[FILE_SEARCH_CONTENT])
    one = steps.retrieve(
        plain.id, thread_id=thread.id, run_id=run.id, include=[FILE_SEARCH_CONTENT]
    )

    def results(step: Any) -> list[Any]:
        return step.step_details.tool_calls[0].file_search.results

    assert 1 <= len(results(plain)) <= 2  # max_num_results from the tool definition
    assert all(r.content is None for r in results(plain))
    for step in (full.data[0], one):
        [first, *_] = results(step)
        assert first.content[0].type == "text" and "sourdough" in first.content[0].text.lower()
        assert [r.file_id for r in results(step)] == [r.file_id for r in results(plain)]


def test_score_threshold_and_missing_stores_give_no_results(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    store_id, _ = library(client)
    model = searching_model(upstream, ["quantum chromodynamics"], ["Nothing found."])
    assistant_id = searching_assistant(
        client, store_id, ranking_options={"ranker": "auto", "score_threshold": 1.0}
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)

    assert run.status == "completed", run.last_error
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data[0]
    call = step.step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.file_search.ranking_options.score_threshold == 1.0  # type: ignore[union-attr]
    assert call.file_search.results == []  # type: ignore[union-attr]
    assert "No passages" in model.bodies[1]["messages"][-1]["content"]


def test_streamed_search_run_sends_step_and_annotation_deltas(
    server: Any, api_key: str, client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    store_id, files = library(client)
    model = searching_model(upstream, ["red spot"], ANSWER)
    assistant_id = searching_assistant(client, store_id)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])
    recording, log = recording_client(server.base_url, api_key)

    with recording.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, include=[FILE_SEARCH_CONTENT]
    ) as stream:
        stream.until_done()
        final = stream.get_final_messages()

    frames = log.last()
    events = [(f.event, f.json()) for f in frames if f.event != "done"]
    step_events = [(n, d) for n, d in events if n.startswith("thread.run.step.")]
    search_id = step_events[0][1]["id"]
    assert step_events[0][1]["type"] == "tool_calls"
    assert [n for n, d in step_events if d["id"] == search_id] == [
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.run.step.delta",
        "thread.run.step.completed",
    ]
    [delta] = [d for n, d in step_events if n == "thread.run.step.delta"]
    [fragment] = delta["delta"]["step_details"]["tool_calls"]
    assert fragment == {
        "index": 0,
        "id": fragment["id"],
        "type": "file_search",
        "file_search": {},
    }
    completed = next(d for n, d in step_events if n == "thread.run.step.completed")
    [result, *_] = completed["step_details"]["tool_calls"][0]["file_search"]["results"]
    assert result["file_id"] == files["jupiter.txt"] and "content" in result  # include asked
    annotated = [
        part["text"]["annotations"]
        for n, d in events
        if n == "thread.message.delta"
        for part in d["delta"]["content"]
        if part["text"].get("annotations")
    ]
    assert annotated == [
        [
            {
                "index": 0,
                "type": "file_citation",
                "text": MARKER,
                "start_index": len(ANSWER[0]),
                "end_index": len(ANSWER[0]) + len(MARKER),
                "file_citation": {"file_id": files["jupiter.txt"]},
            }
        ]
    ]
    [message] = final
    [citation] = message.content[0].text.annotations  # type: ignore[union-attr]
    assert citation.file_citation.file_id == files["jupiter.txt"]  # type: ignore[union-attr]


def test_run_waits_for_files_still_being_ingested(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    file_id = upload(client, "jupiter.txt", JUPITER.encode())
    store = client.vector_stores.create(file_ids=[file_id])  # ingestion starts now
    model = searching_model(upstream, ["storm"], ANSWER)
    assistant_id = searching_assistant(client, store.id)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])

    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)

    assert run.status == "completed", run.last_error
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data[0]
    results = step.step_details.tool_calls[0].file_search.results  # type: ignore[union-attr]
    assert [r.file_id for r in results or []] == [file_id]


def test_thread_vector_store_is_searched_too(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    store_id, files = library(client)
    model = searching_model(upstream, ["tomato plants"], ["Stake them."])
    assistant_id = client.beta.assistants.create(
        model="scripted-model", tools=[{"type": "file_search"}]
    ).id
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": model.say()}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)

    assert run.status == "completed", run.last_error
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data[0]
    results = step.step_details.tool_calls[0].file_search.results  # type: ignore[union-attr]
    assert results and results[0].file_id == files["tomatoes.txt"]
    assert client.vector_stores.retrieve(store_id).last_active_at >= run.created_at


def test_without_file_search_the_function_is_not_offered(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    model = scripted(upstream, Script(text=["Hi."]))
    assistant_id = client.beta.assistants.create(model="scripted-model").id
    thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    assert run.status == "completed"
    assert "tools" not in model.bodies[0] or not model.bodies[0]["tools"]


def test_local_model_searches_and_quotes_with_a_citation(local_client: openai.OpenAI) -> None:
    store_id, files = library(local_client)
    assistant_id = searching_assistant(local_client, store_id)
    thread = local_client.beta.threads.create(
        messages=[{"role": "user", "content": "How do I bake sourdough bread?"}]
    )

    run = local_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id
    )

    assert run.status == "completed", run.last_error
    search, _ = local_client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    results = search.step_details.tool_calls[0].file_search.results  # type: ignore[union-attr]
    assert results and results[0].file_id == files["sourdough.txt"]
    [reply] = local_client.beta.threads.messages.list(thread.id, run_id=run.id).data
    text = reply.content[0].text  # type: ignore[union-attr]
    assert "stand-in" in text.value and "dutch oven" in text.value
    [citation] = text.annotations
    assert citation.file_citation.file_id == files["sourdough.txt"]  # type: ignore[union-attr]
    assert text.value[citation.start_index : citation.end_index] == citation.text


def test_local_model_answers_from_a_message_attachment(local_client: openai.OpenAI) -> None:
    file_id = upload(local_client, "tomatoes.txt", TOMATOES.encode())
    assistant_id = local_client.beta.assistants.create(
        model="local", tools=[{"type": "file_search"}]
    ).id
    attachment = {"file_id": file_id, "tools": [{"type": "file_search"}]}
    thread = local_client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "How much sun do tomatoes need?",
                "attachments": [attachment],
            }
        ]
    )

    run = local_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id
    )

    assert run.status == "completed", run.last_error
    [reply] = local_client.beta.threads.messages.list(thread.id, run_id=run.id).data
    text = reply.content[0].text  # type: ignore[union-attr]
    assert "full sun" in text.value
    assert [a.file_citation.file_id for a in text.annotations] == [file_id]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def no_embeddings_server(
    tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream
) -> Iterator[ServerProcess]:
    """A server (SQLite) whose embeddings endpoint does not answer: nothing listens there."""
    directory = tmp_path_factory.mktemp("no-embeddings")
    broken = {"RUNSTEP_EMBEDDINGS_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    with sqlite_server(directory, **broken, **upstream_env(upstream)) as process:
        yield process


def test_a_failing_search_fails_the_run_clearly(
    no_embeddings_server: ServerProcess, upstream: ScriptedUpstream
) -> None:
    with validating_client(no_embeddings_server.base_url, STATIC_KEY) as client:
        store = client.vector_stores.create(name="empty")
        model = searching_model(upstream, ["anything"], ["Unreachable."])
        assistant_id = searching_assistant(client, store.id)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])

        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant_id
        )

        assert run.status == "failed" and run.last_error is not None
        assert run.last_error.code == "server_error"
        assert run.last_error.message.startswith("file_search failed: Embeddings request")
        [step] = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
        assert step.type == "tool_calls" and step.status == "failed"
        assert step.last_error is not None and step.last_error.message == run.last_error.message
        assert len(model.bodies) == 1  # the model was not asked again
