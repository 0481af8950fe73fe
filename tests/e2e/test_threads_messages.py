"""Threads and messages through the official client, on both stores."""

import openai
import pytest


def test_thread_create_with_messages_keeps_their_order(client: openai.OpenAI) -> None:
    file_id = client.files.create(file=("a.txt", b"hello"), purpose="assistants").id
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "text", "text": "second"}]},
            {
                "role": "user",
                "content": "third",
                "metadata": {"k": "v"},
                "attachments": [{"file_id": file_id, "tools": [{"type": "file_search"}]}],
            },
        ],
        metadata={"user": "42"},
        tool_resources={"code_interpreter": {"file_ids": ["file-x"]}},
    )
    assert thread.id.startswith("thread_") and thread.metadata == {"user": "42"}
    messages = client.beta.threads.messages.list(thread.id, order="asc").data
    assert [m.content[0].text.value for m in messages] == ["first", "second", "third"]
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    third = messages[2]
    assert third.status == "completed" and third.run_id is None and third.assistant_id is None
    assert third.attachments[0].file_id == file_id and third.metadata == {"k": "v"}


def test_thread_without_body_and_modify(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    assert thread.metadata == {} and thread.tool_resources is not None
    modified = client.beta.threads.update(thread.id, metadata={"a": "1"})
    assert modified.metadata == {"a": "1"}
    assert client.beta.threads.retrieve(thread.id).metadata == {"a": "1"}


def test_thread_delete_deletes_its_messages(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    message = client.beta.threads.messages.list(thread.id).data[0]
    deleted = client.beta.threads.delete(thread.id)
    assert (deleted.object, deleted.deleted) == ("thread.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)


def test_message_content_parts_round_trip(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(
        thread.id,
        role="user",
        content=[
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "image_file", "image_file": {"file_id": "file-img", "detail": "low"}},
        ],
    )
    assert [part.type for part in message.content] == ["text", "image_url", "image_file"]
    assert message.content[0].text.value == "look" and message.content[0].text.annotations == []
    assert message.content[1].image_url.detail == "auto"
    assert message.content[2].image_file.detail == "low"
    assert client.beta.threads.messages.retrieve(message.id, thread_id=thread.id) == message


def test_message_modify_delete_and_pagination(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    ids = [
        client.beta.threads.messages.create(thread.id, role="user", content=str(i)).id
        for i in range(5)
    ]
    modified = client.beta.threads.messages.update(ids[0], thread_id=thread.id, metadata={"x": "y"})
    assert modified.metadata == {"x": "y"}
    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=2)] == ids[::-1]
    deleted = client.beta.threads.messages.delete(ids[1], thread_id=thread.id)
    assert (deleted.object, deleted.deleted) == ("thread.message.deleted", True)
    remaining = client.beta.threads.messages.list(thread.id, order="asc").data
    assert [m.id for m in remaining] == [ids[0], *ids[2:]]


def test_messages_are_scoped_to_their_thread(client: openai.OpenAI) -> None:
    one = client.beta.threads.create(messages=[{"role": "user", "content": "a"}])
    two = client.beta.threads.create()
    message = client.beta.threads.messages.list(one.id).data[0]
    assert client.beta.threads.messages.list(two.id).data == []
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=two.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.create("thread_missing", role="user", content="x")


def test_message_list_filters_by_run_id(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "a"}])
    assert client.beta.threads.messages.list(thread.id, run_id="run_none").data == []
    assert len(client.beta.threads.messages.list(thread.id).data) == 1
