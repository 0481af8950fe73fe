"""One key can neither read, list, modify nor delete another key's objects."""

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.conftest import RunningServer
from tests.support.validating_client import client as validating_client


@pytest.fixture
def owner(server: RunningServer) -> Iterator[openai.OpenAI]:
    with validating_client(server.base_url, server.new_key()) as official:
        yield official


@pytest.fixture
def intruder(server: RunningServer) -> Iterator[openai.OpenAI]:
    with validating_client(server.base_url, server.new_key()) as official:
        yield official


def test_other_projects_objects_are_invisible_and_untouchable(
    owner: openai.OpenAI, intruder: openai.OpenAI
) -> None:
    assistant = owner.beta.assistants.create(model="m", name="mine")
    thread = owner.beta.threads.create(messages=[{"role": "user", "content": "secret"}])
    message = owner.beta.threads.messages.list(thread.id).data[0]
    attempts: list[Callable[[], Any]] = [
        lambda: intruder.beta.assistants.retrieve(assistant.id),
        lambda: intruder.beta.assistants.update(assistant.id, name="stolen"),
        lambda: intruder.beta.assistants.delete(assistant.id),
        lambda: intruder.beta.threads.retrieve(thread.id),
        lambda: intruder.beta.threads.update(thread.id, metadata={"x": "y"}),
        lambda: intruder.beta.threads.delete(thread.id),
        lambda: intruder.beta.threads.messages.list(thread.id),
        lambda: intruder.beta.threads.messages.create(thread.id, role="user", content="x"),
        lambda: intruder.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        lambda: intruder.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={}),
        lambda: intruder.beta.threads.messages.delete(message.id, thread_id=thread.id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert intruder.beta.assistants.list().data == []
    assert owner.beta.assistants.retrieve(assistant.id).name == "mine"
    assert owner.beta.threads.retrieve(thread.id).metadata == {}
    assert [m.id for m in owner.beta.threads.messages.list(thread.id)] == [message.id]


def test_list_cursor_from_another_project_reveals_nothing(
    owner: openai.OpenAI, intruder: openai.OpenAI
) -> None:
    mine = owner.beta.assistants.create(model="m")
    intruder.beta.assistants.create(model="m")
    assert intruder.beta.assistants.list(after=mine.id).data == []
