"""Runs for the inspector tests: a finished function-calling run, a slow streaming run, and
a run written straight to the store with every kind of step detail the pages draw."""

import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from runstep import ids
from runstep.protocol.messages import MessageObject, text_part
from runstep.protocol.runs import RunObject, RunStepObject
from runstep.store import events as event_log
from runstep.store.collections import MESSAGES, RUN_STEPS, RUNS
from runstep.store.db import Database
from runstep.store.events import Event, encode
from tests.conftest import RunningServer
from tests.support.asyncio_bridge import run_sync
from tests.support.runs import WEATHER, scripted, wait_for_run
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    thread_id: str
    call_id: str


def project_of(server: RunningServer, key: str) -> str:
    response = httpx.get(
        f"{server.process.url}/inspector/api/session", headers={"Authorization": f"Bearer {key}"}
    )
    response.raise_for_status()
    project: str = response.json()["project_id"]
    return project


def prompt(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": tokens}


def finished_function_run(
    client: openai.OpenAI, upstream: ScriptedUpstream, metadata: dict[str, str] | None = None
) -> FinishedRun:
    """get_weather is called, its output submitted, and the run completes with an answer."""
    weather = ToolCall("get_weather", {"city": "Paris"})
    script = scripted(
        upstream,
        Script(tool_calls=[weather], usage=prompt(40)),
        Script(text=["Sunny", " in Paris."], usage=prompt(60)),
    )
    tools: Any = [WEATHER]
    assistant = client.beta.assistants.create(model="scripted-model", name="Weather", tools=tools)
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": script.say("Weather in Paris?")}],
        metadata=metadata or {},
    )
    runs = client.beta.threads.runs
    waiting = runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert waiting.status == "requires_action", waiting.status
    assert waiting.required_action is not None
    [call] = waiting.required_action.submit_tool_outputs.tool_calls
    runs.submit_tool_outputs(
        run_id=waiting.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "22C and sunny"}],
    )
    run = wait_for_run(client, thread.id, waiting.id)
    assert run.status == "completed", run.status
    return FinishedRun(run.id, thread.id, call.id)


def streaming_run(
    client: openai.OpenAI, upstream: ScriptedUpstream, chunks: int, delay: float
) -> tuple[str, str, str]:
    """Start a run whose answer streams ``chunks`` words ``delay`` seconds apart; returns the
    run id, the thread id and the whole answer."""
    words = [f" word{n}" for n in range(chunks)]
    script = scripted(upstream, Script(text=words, chunk_delay=delay, initial_delay=0.3))
    assistant = client.beta.assistants.create(model="scripted-model", name="Streamer")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": script.say("Go")}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    return run.id, thread.id, "".join(words)


# -- a run written to the store -----------------------------------------------------------------


def png(width: int = 48, height: int = 24, rgb: tuple[int, int, int] = (31, 78, 140)) -> bytes:
    """A solid-colour PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    thread_id: str
    image_file_id: str
    cited_file_id: str


def stored_failed_run(server: RunningServer, client: openai.OpenAI, key: str) -> StoredRun:
    """A failed run with a file_search step (results, scores, passages), a code_interpreter
    step (input, logs, an image), and an answer citing a file and showing an image."""
    image = client.files.create(file=("chart.png", png()), purpose="assistants")
    cited = client.files.create(
        file=("handbook.txt", b"Refunds take 14 days."), purpose="assistants"
    )
    assistant = client.beta.assistants.create(model="scripted-model", name="Analyst")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Refund time?"}])
    project = project_of(server, key)
    ids_ = _write_run(server.database_url, project, assistant.id, thread.id, image.id, cited.id)
    return StoredRun(ids_, thread.id, image.id, cited.id)


def _write_run(
    url: str, project: str, assistant_id: str, thread_id: str, image_id: str, cited_id: str
) -> str:
    at = int(time.time()) - 10
    run = RunObject(
        id=ids.new_id(ids.RUN),
        created_at=at,
        thread_id=thread_id,
        assistant_id=assistant_id,
        status="failed",
        expires_at=None,
        started_at=at + 1,
        failed_at=at + 7,
        last_error={"code": "server_error", "message": "The model server went away."},
        model="scripted-model",
        instructions="",
        tools=[{"type": "file_search"}, {"type": "code_interpreter"}],
        metadata={},
        usage={"prompt_tokens": 300, "completion_tokens": 45, "total_tokens": 345},
        temperature=1.0,
        top_p=1.0,
        max_prompt_tokens=None,
        max_completion_tokens=None,
        truncation_strategy={"type": "auto", "last_messages": None},
        tool_choice="auto",
        parallel_tool_calls=True,
        response_format="auto",
    ).wire()
    search_call = ids.new_id(ids.CALL)
    search = _step(run, at + 1, at + 3, {"tool_calls": [_search_call(search_call, cited_id)]})
    code = _step(run, at + 3, at + 5, {"tool_calls": [_code_call(image_id)]})
    message = MessageObject(
        id=ids.new_id(ids.MESSAGE),
        created_at=at + 5,
        thread_id=thread_id,
        status="completed",
        completed_at=at + 6,
        role="assistant",
        content=[
            text_part(
                "Refunds take 14 days【0:0†handbook.txt】. Chart: sandbox:/mnt/data/chart.png",
                [
                    {
                        "type": "file_citation",
                        "text": "【0:0†handbook.txt】",
                        "start_index": 20,
                        "end_index": 38,
                        "file_citation": {"file_id": cited_id},
                    },
                    {
                        "type": "file_path",
                        "text": "sandbox:/mnt/data/chart.png",
                        "start_index": 47,
                        "end_index": 74,
                        "file_path": {"file_id": image_id},
                    },
                ],
            ),
            {"type": "image_file", "image_file": {"file_id": image_id, "detail": "auto"}},
        ],
        assistant_id=assistant_id,
        run_id=run["id"],
    ).wire()
    answer = _step(
        run, at + 5, None, {"message_creation": {"message_id": message["id"]}}, failed=at + 7
    )
    options = {"usage": {}, "include": [], "tool_arguments": {search_call: '{"query": "refund"}'}}
    statuses = [("created", at), ("queued", at), ("in_progress", at + 1), ("failed", at + 7)]
    events = [Event(n, f"thread.run.{s}", encode(run)) for n, (s, _) in enumerate(statuses, 1)]

    async def write() -> None:
        db = Database(url)
        try:
            async with db.write() as conn:
                await RUNS.insert(
                    conn,
                    project,
                    run,
                    thread_id=thread_id,
                    status="failed",
                    options=options,
                    expires_at=None,
                    last_seq=len(events),
                )
                for step in (search, code, answer):
                    await RUN_STEPS.insert(
                        conn, project, step, thread_id=thread_id, run_id=run["id"]
                    )
                await MESSAGES.insert(conn, project, message, thread_id=thread_id, run_id=run["id"])
                for event, (_, when) in zip(events, statuses, strict=True):
                    await event_log.insert(conn, run["id"], [event], when)
        finally:
            await db.close()

    run_sync(write())
    return str(run["id"])


def _step(
    run: dict[str, Any],
    created: int,
    completed: int | None,
    details: dict[str, Any],
    failed: int | None = None,
) -> dict[str, Any]:
    kind = "tool_calls" if "tool_calls" in details else "message_creation"
    error = {"code": "server_error", "message": "The model server went away."} if failed else None
    return RunStepObject(
        id=ids.new_id(ids.STEP),
        created_at=created,
        assistant_id=run["assistant_id"],
        thread_id=run["thread_id"],
        run_id=run["id"],
        type=kind,
        status="failed" if failed else "completed",
        step_details={"type": kind, **details},
        last_error=error,
        completed_at=completed,
        failed_at=failed,
        usage={"prompt_tokens": 100, "completion_tokens": 15, "total_tokens": 115},
    ).wire()


def _search_call(call_id: str, file_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "file_search",
        "file_search": {
            "ranking_options": {"ranker": "auto", "score_threshold": 0.0},
            "results": [
                {
                    "file_id": file_id,
                    "file_name": "handbook.txt",
                    "score": 0.8731,
                    "content": [{"type": "text", "text": "Refunds take 14 days."}],
                },
                {
                    "file_id": file_id,
                    "file_name": "handbook.txt",
                    "score": 0.4125,
                    "content": [{"type": "text", "text": "Shipping is free over 50 EUR."}],
                },
            ],
        },
    }


def _code_call(image_id: str) -> dict[str, Any]:
    return {
        "id": ids.new_id(ids.CALL),
        "type": "code_interpreter",
        "code_interpreter": {
            "input": "import matplotlib\nprint(sum(range(10)))",
            "outputs": [
                {"type": "logs", "logs": "45"},
                {"type": "image", "image": {"file_id": image_id}},
            ],
        },
    }
