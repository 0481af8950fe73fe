"""The tool resources of ``file_search`` through the official client, on both stores: the
create-time ``vector_stores`` helper (assistants, threads, createThreadAndRun) and message
``file_search`` attachments filling the thread's vector store (POST messages, thread create,
run ``additional_messages``, createThreadAndRun ``thread.messages``); unknown files are 404s
that leave nothing behind. Every response is checked against the spec by ``client``."""

from collections.abc import Callable
from typing import Any

import openai
import pytest

from runstep.protocol.vector_stores import DAY_SECONDS
from tests.conftest import RunningServer
from tests.e2e.test_vector_stores import JUPITER, SOURDOUGH, TOMATOES, counts, upload, wait_until
from tests.support.validating_client import client as validating_client

THREAD_EXPIRY = {"anchor": "last_active_at", "days": 7}
STATIC = {"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}}


def store_ids(obj: Any) -> list[str]:
    """The vector store ids in an assistant's or thread's ``tool_resources``."""
    return obj.tool_resources.file_search.vector_store_ids


def ingested(client: openai.OpenAI, store_id: str, file_ids: set[str]) -> Any:
    """Wait until the store holds exactly ``file_ids``, all ``completed``; the store."""

    def ready() -> Any:
        store = client.vector_stores.retrieve(store_id)
        return store if store.status == "completed" else None

    store = wait_until(ready)
    files = client.vector_stores.files.list(store_id).data
    assert {f.id for f in files} == file_ids
    assert all(f.status == "completed" for f in files)
    assert counts(store) == {
        "in_progress": 0,
        "completed": len(file_ids),
        "failed": 0,
        "cancelled": 0,
        "total": len(file_ids),
    }
    return store


def thread_store(client: openai.OpenAI, thread_id: str) -> str:
    (store_id,) = store_ids(client.beta.threads.retrieve(thread_id))
    return store_id


def helper(*file_ids: str, **store: Any) -> Any:
    """``tool_resources`` with the ``vector_stores`` helper (``Any``: the SDK's types for
    modify and createThreadAndRun leave it out)."""
    return {"file_search": {"vector_stores": [{"file_ids": list(file_ids), **store}]}}


def attach(file_id: str, *tools: str) -> dict[str, Any]:
    return {"file_id": file_id, "tools": [{"type": tool} for tool in tools]}


def not_found(call: Callable[[], Any], param: str, file_id: str = "file-missing") -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        call()
    assert raised.value.body["message"] == f"No such File object: {file_id}"
    assert raised.value.body["param"] == param


# --- the vector_stores helper -----------------------------------------------------------------


def test_assistant_helper_makes_a_store_that_never_expires(client: openai.OpenAI) -> None:
    jupiter = upload(client, "jupiter.txt", JUPITER.encode())
    bread = upload(client, "bread.txt", SOURDOUGH.encode())
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "file_search"}],
        tool_resources={
            **helper(jupiter, bread, chunking_strategy=STATIC, metadata={"k": "v"}),
            "code_interpreter": {"file_ids": [jupiter]},
        },
    )
    (store_id,) = store_ids(assistant)
    fetched = client.beta.assistants.retrieve(assistant.id)
    assert store_ids(fetched) == [store_id]
    assert fetched.tool_resources.code_interpreter.file_ids == [jupiter]

    store = ingested(client, store_id, {jupiter, bread})
    assert (store.name, store.metadata, store.expires_after, store.expires_at) == (
        "",
        {"k": "v"},
        None,
        None,
    )
    assert store.usage_bytes > 0
    for listed in client.vector_stores.files.list(store_id).data:
        assert listed.chunking_strategy.model_dump() == STATIC
    hits = client.vector_stores.search(store_id, query="a storm on a giant planet").data
    assert hits[0].file_id == jupiter

    # Modify has no helper; vector_store_ids still replace the list.
    with pytest.raises(openai.BadRequestError) as raised:
        client.beta.assistants.update(assistant.id, tool_resources=helper(bread))
    assert raised.value.body["param"] == "tool_resources.file_search.vector_stores"
    updated = client.beta.assistants.update(
        assistant.id, tool_resources={"file_search": {"vector_store_ids": []}}
    )
    assert store_ids(updated) == []
    assert len(client.vector_stores.list().data) == 1


def test_thread_helper_makes_a_store_that_expires_after_seven_days(client: openai.OpenAI) -> None:
    tomatoes = upload(client, "tomatoes.txt", TOMATOES.encode())
    thread = client.beta.threads.create(
        tool_resources={**helper(tomatoes), "code_interpreter": {"file_ids": []}},
        metadata={"t": "1"},
    )
    (store_id,) = store_ids(thread)
    assert thread.tool_resources.code_interpreter.file_ids == []
    assert thread_store(client, thread.id) == store_id
    store = ingested(client, store_id, {tomatoes})
    assert store.expires_after.model_dump() == THREAD_EXPIRY
    assert store.expires_at == store.last_active_at + 7 * DAY_SECONDS
    auto = client.vector_stores.files.retrieve(tomatoes, vector_store_id=store_id)
    assert auto.chunking_strategy.static.max_chunk_size_tokens == 800

    with pytest.raises(openai.BadRequestError):  # modify has no helper
        client.beta.threads.update(thread.id, tool_resources=helper(tomatoes))
    empty = client.beta.threads.create(tool_resources={"file_search": {"vector_stores": [{}]}})
    assert ingested(client, store_ids(empty)[0], set()).file_counts.total == 0


# --- message attachments ----------------------------------------------------------------------


def test_attachments_fill_the_thread_store_made_on_demand(client: openai.OpenAI) -> None:
    jupiter = upload(client, "jupiter.txt", JUPITER.encode())
    bread = upload(client, "bread.txt", SOURDOUGH.encode())
    tomatoes = upload(client, "tomatoes.txt", TOMATOES.encode())
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "one", "attachments": [attach(jupiter, "file_search")]},
            {"role": "user", "content": "two", "attachments": [attach(bread, "code_interpreter")]},
        ],
        tool_resources={"code_interpreter": {"file_ids": [bread]}},
    )
    (store_id,) = store_ids(thread)
    assert thread.tool_resources.code_interpreter.file_ids == [bread]
    store = ingested(client, store_id, {jupiter})  # the code_interpreter file is not in it
    assert (store.name, store.expires_after.model_dump()) == ("", THREAD_EXPIRY)
    first = client.vector_stores.files.retrieve(jupiter, vector_store_id=store_id)

    message = client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="three",
        attachments=[
            attach(tomatoes, "file_search", "code_interpreter"),
            attach(jupiter, "file_search"),
        ],
    )
    assert [a.file_id for a in message.attachments] == [tomatoes, jupiter]
    assert [t.type for t in message.attachments[0].tools] == ["file_search", "code_interpreter"]
    assert thread_store(client, thread.id) == store_id  # the same store, one more file
    ingested(client, store_id, {jupiter, tomatoes})
    again = client.vector_stores.files.retrieve(jupiter, vector_store_id=store_id)
    assert again.model_dump() == first.model_dump()  # already there: left as it was
    assert len(client.vector_stores.list().data) == 1

    # code_interpreter-only attachments make no store.
    plain = client.beta.threads.create()
    client.beta.threads.messages.create(
        plain.id, role="user", content="x", attachments=[attach(bread, "code_interpreter")]
    )
    assert client.beta.threads.retrieve(plain.id).tool_resources.file_search is None
    assert len(client.vector_stores.list().data) == 1


def test_attachments_go_into_the_helper_store_or_replace_a_missing_one(
    client: openai.OpenAI,
) -> None:
    jupiter = upload(client, "jupiter.txt", JUPITER.encode())
    bread = upload(client, "bread.txt", SOURDOUGH.encode())
    thread = client.beta.threads.create(
        tool_resources=helper(jupiter),
        messages=[{"role": "user", "content": "x", "attachments": [attach(bread, "file_search")]}],
    )
    ingested(client, store_ids(thread)[0], {jupiter, bread})

    mine = client.vector_stores.create(name="mine")
    named = client.beta.threads.create(
        tool_resources={"file_search": {"vector_store_ids": [mine.id]}}
    )
    client.beta.threads.messages.create(
        named.id, role="user", content="x", attachments=[attach(bread, "file_search")]
    )
    assert thread_store(client, named.id) == mine.id
    assert ingested(client, mine.id, {bread}).name == "mine"

    client.vector_stores.delete(mine.id)
    client.beta.threads.messages.create(
        named.id, role="user", content="x", attachments=[attach(jupiter, "file_search")]
    )
    replacement = thread_store(client, named.id)
    assert replacement != mine.id
    ingested(client, replacement, {jupiter})


def test_runs_add_attachments_to_the_thread_store(client: openai.OpenAI) -> None:
    jupiter = upload(client, "jupiter.txt", JUPITER.encode())
    bread = upload(client, "bread.txt", SOURDOUGH.encode())
    tomatoes = upload(client, "tomatoes.txt", TOMATOES.encode())
    assistant = client.beta.assistants.create(model="gpt-4o")

    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_messages=[
            {"role": "user", "content": "x", "attachments": [attach(jupiter, "file_search")]}
        ],
    )
    assert run.status == "completed"
    ingested(client, thread_store(client, thread.id), {jupiter})

    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={
            "messages": [
                {"role": "user", "content": "x", "attachments": [attach(bread, "file_search")]}
            ],
            "tool_resources": helper(tomatoes),
        },
    )
    assert run.status == "completed"
    store = ingested(client, thread_store(client, run.thread_id), {bread, tomatoes})
    assert store.expires_after.model_dump() == THREAD_EXPIRY

    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, tool_resources=helper(jupiter)
    )
    ingested(client, thread_store(client, run.thread_id), {jupiter})
    assert len(client.vector_stores.list().data) == 3


# --- errors -----------------------------------------------------------------------------------


def test_unknown_files_are_404s_and_nothing_is_created(
    client: openai.OpenAI, server: RunningServer
) -> None:
    known = upload(client, "known.txt", JUPITER.encode())
    missing = helper(known, "file-missing")
    param = "tool_resources.file_search.vector_stores[0].file_ids"
    not_found(lambda: client.beta.assistants.create(model="m", tool_resources=missing), param)
    assert client.beta.assistants.list().data == []
    not_found(lambda: client.beta.threads.create(tool_resources=missing), param)

    assistant = client.beta.assistants.create(model="m")
    not_found(
        lambda: client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"tool_resources": missing}
        ),
        f"thread.{param}",
    )
    not_found(
        lambda: client.beta.threads.create_and_run(
            assistant_id=assistant.id, tool_resources=missing
        ),
        param,
    )
    bad = [attach(known, "file_search"), attach("file-missing", "code_interpreter")]
    not_found(
        lambda: client.beta.threads.create(
            messages=[
                {"role": "user", "content": "ok"},
                {"role": "user", "content": "x", "attachments": bad},
            ]
        ),
        "messages[1].attachments[1].file_id",
    )
    not_found(  # the helper's store was made before the attachments were checked: undone
        lambda: client.beta.threads.create_and_run(
            assistant_id=assistant.id,
            thread={
                "tool_resources": helper(known),
                "messages": [{"role": "user", "content": "x", "attachments": bad}],
            },
        ),
        "thread.messages[0].attachments[1].file_id",
    )

    thread = client.beta.threads.create(metadata={"k": "v"})
    not_found(
        lambda: client.beta.threads.messages.create(
            thread.id, role="user", content="x", attachments=bad
        ),
        "attachments[1].file_id",
    )
    not_found(
        lambda: client.beta.threads.runs.create(
            thread.id,
            assistant_id=assistant.id,
            additional_messages=[{"role": "user", "content": "x", "attachments": bad}],
        ),
        "additional_messages[0].attachments[1].file_id",
    )
    assert client.beta.threads.messages.list(thread.id).data == []
    assert client.beta.threads.runs.list(thread.id).data == []
    assert client.beta.threads.retrieve(thread.id).model_dump() == thread.model_dump()
    assert client.vector_stores.list().data == []
    assert [a.id for a in client.beta.assistants.list().data] == [assistant.id]

    # Another project's file is unknown too.
    with validating_client(server.base_url, server.new_key()) as intruder:
        not_found(
            lambda: intruder.beta.threads.create(
                messages=[
                    {"role": "user", "content": "x", "attachments": [attach(known, "file_search")]}
                ]
            ),
            "messages[0].attachments[0].file_id",
            known,
        )
        not_found(
            lambda: intruder.beta.assistants.create(model="m", tool_resources=helper(known)),
            param,
            known,
        )
        assert intruder.vector_stores.list().data == []


def test_ids_and_helper_together_are_refused(client: openai.OpenAI) -> None:
    both = {"file_search": {"vector_store_ids": ["vs_x"], "vector_stores": [{"file_ids": []}]}}
    for create in (
        lambda: client.beta.assistants.create(model="m", tool_resources=both),
        lambda: client.beta.threads.create(tool_resources=both),
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            create()
        assert raised.value.body["param"].startswith("tool_resources.file_search")
    two = {"file_search": {"vector_stores": [{"file_ids": []}, {"file_ids": []}]}}
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.create(tool_resources=two)
    assert client.beta.assistants.list().data == []
    assert client.vector_stores.list().data == []
