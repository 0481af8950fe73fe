"""One tenant's objects of every kind, made through the API, and snapshots of everything a
tenant has in the database, to assert that a request changed nothing.

``World.build`` gives a project an assistant, a thread with a message, a completed run with its
steps, a run waiting for tool outputs, a file, a vector store holding it and a file batch: an
id for every path parameter of the API (``World.ids``). ``Snapshot.of`` reads every row of the
project, in every table that has a ``project_id`` (and the event logs of its runs)."""

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import openai
import sqlalchemy as sa

from runstep.store import tables
from tests.support.databases import sync_url
from tests.support.runs import WEATHER, scripted, wait_for_run
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.upstream_script import Script, ToolCall
from tests.support.validating_client import client as validating_client

MODEL = "gpt-4o"
ACTIVE_RUNS = ("queued", "in_progress", "cancelling")


@contextmanager
def engine_for(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(sync_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


@dataclass(frozen=True)
class World:
    """The ids of one project's objects, by the name of the path parameter they fill."""

    key: str
    project_id: str
    ids: dict[str, str]

    @classmethod
    def build(cls, base_url: str, key: str, project_id: str, upstream: ScriptedUpstream) -> "World":
        with validating_client(base_url, key) as client:
            return cls(key, project_id, _objects(client, upstream))


def _objects(client: openai.OpenAI, upstream: ScriptedUpstream) -> dict[str, str]:
    assistant = client.beta.assistants.create(model=MODEL, name="world", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    message = client.beta.threads.messages.list(thread.id).data[0]
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]
    calls = scripted(upstream, Script(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
    waiting = client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": calls.say("weather?")}]},
    )
    waiting = wait_for_run(client, waiting.thread_id, waiting.id)
    assert waiting.status == "requires_action" and waiting.required_action, waiting
    [call] = waiting.required_action.submit_tool_outputs.tool_calls
    upload = ("notes.txt", io.BytesIO(b"The lighthouse keeper feeds the cat at dawn."))
    file = client.files.create(file=upload, purpose="assistants")
    store = client.vector_stores.create(name="world")
    attached = client.vector_stores.files.create_and_poll(file_id=file.id, vector_store_id=store.id)
    assert attached.status == "completed", attached
    batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=[file.id])
    return {
        "assistant_id": assistant.id,
        "thread_id": thread.id,
        "message_id": message.id,
        "run_id": run.id,
        "step_id": step.id,
        "file_id": file.id,
        "vector_store_id": store.id,
        "batch_id": batch.id,
        "model": MODEL,
        "waiting_thread_id": waiting.thread_id,
        "waiting_run_id": waiting.id,
        "tool_call_id": call.id,
    }


def world(server: Any, upstream: ScriptedUpstream) -> World:
    """A ``World`` in a new project of the tests' ``RunningServer``."""
    key, project_id = server.new_tenant()
    return World.build(server.base_url, key, project_id, upstream)


# --- snapshots ----------------------------------------------------------------------------------

TENANT_TABLES = [table for table in tables.metadata.sorted_tables if "project_id" in table.c]


def _rows(conn: sa.Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    return [tuple(repr(value) for value in row) for row in conn.execute(query)]


@dataclass(frozen=True)
class Snapshot:
    """Every stored row of one project, as comparable text."""

    rows: dict[str, list[tuple[Any, ...]]]

    @classmethod
    def of(cls, engine: sa.Engine, project_id: str) -> "Snapshot":
        rows: dict[str, list[tuple[Any, ...]]] = {}
        with engine.connect() as conn:
            for table in TENANT_TABLES:
                order = list(table.primary_key.columns) or list(table.c)
                query = sa.select(table).where(table.c.project_id == project_id).order_by(*order)
                rows[table.name] = _rows(conn, query)
            runs, events = tables.runs, tables.run_events
            mine = sa.select(runs.c.id).where(runs.c.project_id == project_id)
            query = (
                sa.select(events)
                .where(events.c.run_id.in_(mine))
                .order_by(events.c.run_id, events.c.seq)
            )
            rows["run_events"] = _rows(conn, query)
        return cls(rows)

    def changes(self, other: "Snapshot") -> dict[str, tuple[int, int]]:
        """The tables whose rows differ: {table: (rows before, rows after)}."""
        return {
            name: (len(rows), len(other.rows[name]))
            for name, rows in self.rows.items()
            if rows != other.rows[name]
        }


def busy(engine: sa.Engine, project_id: str) -> bool:
    """Whether the project has a run executing or a file being ingested."""
    runs, files = tables.runs, tables.vector_store_files
    with engine.connect() as conn:
        running = conn.execute(
            sa.select(sa.func.count()).where(
                runs.c.project_id == project_id, runs.c.status.in_(ACTIVE_RUNS)
            )
        ).scalar_one()
        ingesting = conn.execute(
            sa.select(sa.func.count()).where(
                files.c.project_id == project_id, files.c.status == "in_progress"
            )
        ).scalar_one()
    return bool(running or ingesting)


def settle(engine: sa.Engine, project_id: str, timeout: float = 20.0) -> None:
    """Wait until nothing of the project is executing or ingesting (runs and files settle by
    themselves: the scripted model answers at once)."""
    deadline = time.monotonic() + timeout
    while busy(engine, project_id):
        assert time.monotonic() < deadline, f"project {project_id} still busy after {timeout}s"
        time.sleep(0.05)
