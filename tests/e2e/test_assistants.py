"""Assistants through the official client, on both stores."""

import openai
import pytest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_create_returns_every_field_with_defaults(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    assert assistant.id.startswith("asst_")
    assert assistant.object == "assistant"
    assert (assistant.name, assistant.description, assistant.instructions) == (None, None, None)
    assert assistant.tools == [] and assistant.metadata == {}
    assert (assistant.temperature, assistant.top_p, assistant.response_format) == (1.0, 1.0, "auto")


def test_create_retrieve_modify_delete_round_trip(client: openai.OpenAI) -> None:
    created = client.beta.assistants.create(
        model="gpt-4o",
        name="Weather bot",
        instructions="Answer about weather.",
        tools=[WEATHER, {"type": "code_interpreter"}, {"type": "file_search"}],
        tool_resources={"code_interpreter": {"file_ids": ["file-abc"]}},
        metadata={"team": "a"},
        temperature=0.2,
        response_format={"type": "json_object"},
    )
    fetched = client.beta.assistants.retrieve(created.id)
    assert fetched.model_dump() == created.model_dump()
    assert fetched.tools[0].function.name == "get_weather"
    assert fetched.tool_resources.code_interpreter.file_ids == ["file-abc"]

    modified = client.beta.assistants.update(
        created.id, name=None, metadata={"team": "b"}, tools=[], model="gpt-4.1"
    )
    assert (modified.name, modified.metadata, modified.tools, modified.model) == (
        None,
        {"team": "b"},
        [],
        "gpt-4.1",
    )
    assert modified.instructions == "Answer about weather."
    assert modified.tool_resources.code_interpreter.file_ids == ["file-abc"]

    deleted = client.beta.assistants.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "assistant.deleted", True)
    with pytest.raises(openai.NotFoundError) as raised:
        client.beta.assistants.retrieve(created.id)
    assert raised.value.body["message"] == f"No assistant found with id '{created.id}'."


def test_modify_tool_resources_replaces_each_given_list(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(
        model="m",
        tool_resources={
            "code_interpreter": {"file_ids": ["file-1", "file-2"]},
            "file_search": {"vector_store_ids": ["vs_1"]},
        },
    )
    updated = client.beta.assistants.update(
        assistant.id, tool_resources={"code_interpreter": {"file_ids": ["file-3"]}}
    )
    assert updated.tool_resources.code_interpreter.file_ids == ["file-3"]
    assert updated.tool_resources.file_search.vector_store_ids == ["vs_1"]


def test_list_paginates_in_both_orders_and_auto_paginates(client: openai.OpenAI) -> None:
    ids = [client.beta.assistants.create(model="m", name=str(i)).id for i in range(7)]
    first = client.beta.assistants.list(limit=3)
    assert [a.id for a in first.data] == ids[::-1][:3]
    assert first.has_more and first.first_id == ids[6] and first.last_id == ids[4]
    after = client.beta.assistants.list(limit=3, after=first.last_id)
    assert [a.id for a in after.data] == ids[::-1][3:6]
    before = client.beta.assistants.list(limit=2, before=after.first_id)
    assert [a.id for a in before.data] == ids[::-1][1:3]
    ascending = client.beta.assistants.list(limit=4, order="asc")
    assert [a.id for a in ascending.data] == ids[:4]
    assert [a.id for a in client.beta.assistants.list(limit=2, order="asc")] == ids
    assert [a.id for a in client.beta.assistants.list(limit=100)] == ids[::-1]


def test_empty_list_has_null_cursors(client: openai.OpenAI) -> None:
    page = client.beta.assistants.with_raw_response.list().http_response.json()
    assert page == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
