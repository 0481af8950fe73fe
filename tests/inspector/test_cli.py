"""``runstep runs show|tail`` and ``runstep threads show``, reading a real server's database."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai

from tests.conftest import RunningServer
from tests.inspector.helpers import finished_function_run
from tests.support.runs import WEATHER, scripted, wait_for_run
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall


def command(server: RunningServer, *args: str) -> list[str]:
    return [sys.executable, "-m", "runstep", *args]


def environment(server: RunningServer) -> dict[str, str]:
    return {**os.environ, "RUNSTEP_DATABASE_URL": server.database_url, "COLUMNS": "200"}


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(server, *args),
        env=environment(server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_show_prints_a_runs_steps_and_a_threads_runs_for_people_and_scripts(
    server: RunningServer, client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    done = finished_function_run(client, upstream, metadata={"customer": "acme"})

    tree = cli(server, "runs", "show", done.run_id)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert done.run_id in lines[0] and "completed" in lines[0]
    assert "ran " in lines[1] and "(100 prompt + " in lines[1]
    [tool] = [line for line in lines if "1. tool_calls" in line]
    [message] = [line for line in lines if "2. message_creation" in line]
    for step in (tool, message):
        assert "completed" in step and " tokens" in step and "█" in step and " → +" in step
    assert any('get_weather({"city":"Paris"}) → 22C and sunny' in line for line in lines)
    assert any("Sunny in Paris." in line for line in lines)

    shown = json.loads(cli(server, "runs", "show", done.run_id, "--json").stdout)
    assert shown["run"]["id"] == done.run_id
    assert [s["type"] for s in shown["steps"]] == ["tool_calls", "message_creation"]
    assert shown["summary"]["usage"] == shown["run"]["usage"]

    thread = cli(server, "threads", "show", done.thread_id)
    assert thread.returncode == 0, thread.stderr
    assert "customer=acme" in thread.stdout and done.run_id in thread.stdout
    assert "user: Weather in Paris?" in thread.stdout
    assert f"assistant ({done.run_id}): Sunny in Paris." in thread.stdout
    listed = json.loads(cli(server, "threads", "show", done.thread_id, "--json").stdout)
    assert [run["id"] for run in listed["runs"]["data"]] == [done.run_id]

    missing = cli(server, "runs", "show", "run_nope")
    assert missing.returncode == 1 and "No run found with id 'run_nope'" in missing.stderr


def test_tail_follows_a_run_live_through_a_wait_for_tool_outputs_until_it_ends(
    server: RunningServer, client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    words = [f" word{n}" for n in range(12)]
    script = scripted(
        upstream,
        Script(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]),
        Script(text=words, chunk_delay=0.1),
    )
    tools: Any = [WEATHER]
    assistant = client.beta.assistants.create(model="scripted-model", tools=tools)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": script.say("Hi")}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    waiting = wait_for_run(client, thread.id, run.id)
    assert waiting.required_action is not None
    [pending] = waiting.required_action.submit_tool_outputs.tool_calls

    arrivals: list[tuple[float, dict[str, Any]]] = []
    with subprocess.Popen(
        command(server, "runs", "tail", run.id, "--json"),
        env=environment(server),
        stdout=subprocess.PIPE,
        text=True,
    ) as tail:
        assert tail.stdout is not None
        for line in tail.stdout:
            arrivals.append((time.monotonic(), json.loads(line)))
            if arrivals[-1][1]["event"] == "thread.run.requires_action":
                client.beta.threads.runs.submit_tool_outputs(
                    run_id=run.id,
                    thread_id=thread.id,
                    tool_outputs=[{"tool_call_id": pending.id, "output": "-3C"}],
                )
    assert tail.returncode == 0
    names = [event["event"] for _, event in arrivals]
    assert names[:2] == ["thread.run.created", "thread.run.queued"]
    assert names[-1] == "thread.run.completed"
    assert [event["seq"] for _, event in arrivals] == list(range(1, len(arrivals) + 1))
    deltas = [at for at, event in arrivals if event["event"] == "thread.message.delta"]
    assert deltas[-1] - deltas[0] > 0.5  # printed as the text streamed, not at the end

    # Once the run has ended, tail prints its whole story and returns at once.
    story = cli(server, "runs", "tail", run.id)
    assert story.returncode == 0, story.stderr
    waiting_line = 'run requires_action: waiting for tool outputs: get_weather({"city":"Oslo"})'
    assert waiting_line in story.stdout
    assert 'get_weather({"city":"Oslo"}) → -3C' in story.stdout
    assert f"assistant: {''.join(words)}" in story.stdout
    assert "step message_creation completed" in story.stdout
    assert story.stdout.splitlines()[-1].startswith("run completed · ")


def test_vector_stores_show_waits_for_ingestion_with_progress(
    server: RunningServer, client: openai.OpenAI
) -> None:
    odd = client.files.create(file=("blob.bin", b"\x00\x01\x02"), purpose="assistants")
    store = client.vector_stores.create(name="Odd files", file_ids=[odd.id])

    waited = cli(server, "vector-stores", "show", store.id, "--wait")

    assert waited.returncode == 0, waited.stderr
    assert f"Ingesting files into {store.id}" in waited.stdout and "1/1" in waited.stdout
    assert "0/1 files ingested, 1 failed" in waited.stdout
    assert "blob.bin" in waited.stdout and "unsupported_file" in waited.stdout
    shown = json.loads(cli(server, "vector-stores", "show", store.id, "--json").stdout)
    assert shown["file_counts"] == {
        "in_progress": 0,
        "completed": 0,
        "failed": 1,
        "cancelled": 0,
        "total": 1,
    }
    assert shown["files"][0]["filename"] == "blob.bin"


def test_migrate_brings_a_new_database_to_the_newest_revision(tmp_path: Path) -> None:
    env = {**os.environ, "RUNSTEP_DATA_DIR": str(tmp_path), "RUNSTEP_DATABASE_URL": ""}
    migrated = subprocess.run(
        [sys.executable, "-m", "runstep", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "Database at revision" in migrated.stdout
    assert (tmp_path / "runstep.sqlite3").exists()
