"""Run a real client (another SDK, in its own process) against the test server.

The scripts under tests/compat print one JSON object on stdout; a failure shows the client's
stderr and the tail of the server log, which is where a server-side cause would be.
"""

import json
import os
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import RunningServer
from tests.support.scripted_upstream import ScriptedUpstream

COMPAT = Path(__file__).resolve().parent
ROOT = COMPAT.parents[1]
TIMEOUT_SECONDS = 90

# The events of a run that calls one function (its argument fragments as step deltas)...
FUNCTION_CALL_STREAM = [
    "thread.run.created",
    "thread.run.queued",
    "thread.run.in_progress",
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.run.step.delta*",
    "thread.run.requires_action",
]
# ...and of its submit_tool_outputs stream, up to the text answer.
TOOL_OUTPUTS_STREAM = [
    "thread.run.step.completed",  # the tool_calls step, now holding the output
    "thread.run.queued",
    "thread.run.in_progress",
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
    "thread.message.delta*",
    "thread.message.completed",
    "thread.run.step.completed",
    "thread.run.completed",
]
# A text-only run streamed from POST /threads/runs.
THREAD_AND_RUN_STREAM = ["thread.created", "thread.run.created", *TOOL_OUTPUTS_STREAM[1:]]


def unique(prefix: str) -> str:
    """A script name no other test registers (the upstream is shared by the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def tool_results_sent(upstream: ScriptedUpstream, script: str) -> list[dict[str, Any]]:
    """The ``tool`` messages the server sent upstream in requests that used ``script``."""
    return [
        message
        for request in upstream.requests
        if request.source == f"named:{script}"
        for message in request.body.get("messages", [])
        if message.get("role") == "tool"
    ]


def run_client(
    command: Sequence[str], server: RunningServer, api_key: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``command`` with BASE_URL / API_KEY set; return the JSON it printed."""
    full_env = {**os.environ, "BASE_URL": server.base_url, "API_KEY": api_key, **(env or {})}
    for leak in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        full_env.pop(leak, None)
    done = subprocess.run(
        list(command),
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        log = server.process.log_path.read_text(errors="replace")[-4000:]
        raise AssertionError(
            f"{command[0]} exited {done.returncode}\n--- stderr ---\n{done.stderr[-6000:]}"
            f"\n--- stdout ---\n{done.stdout[-2000:]}\n--- server log (tail) ---\n{log}"
        )
    lines = done.stdout.strip().splitlines()
    assert lines, f"{command[0]} printed nothing; stderr:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def collapse(events: Sequence[str]) -> list[str]:
    """Event names with each run of repeated delta events folded into one ``name*``."""
    folded: list[str] = []
    for name in events:
        if name.endswith(".delta") and folded and folded[-1] in (name, f"{name}*"):
            folded[-1] = f"{name}*"
        elif name.endswith(".delta"):
            folded.append(f"{name}*")
        else:
            folded.append(name)
    return folded
