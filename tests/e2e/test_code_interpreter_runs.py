"""The hosted code_interpreter tool inside runs, through the official client, on both stores:
the scripted model writes code, the run records a ``tool_calls`` step with a
``code_interpreter`` call (``input`` streamed as step deltas, ``logs`` and ``image`` outputs),
runs it in the thread's sandboxed session, hands the output back to the model, and the answer
links the files the code saved (``file_path`` annotations) and shows its figures
(``image_file`` parts). Also the local model's offline path and a sandbox that cannot start.
Every response is validated against the spec."""

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import STATIC_KEY, sqlite_server, upstream_env
from tests.support.runs import Scripted, recording_client, scripted
from tests.support.scripted_upstream import Script, ScriptedUpstream, ToolCall
from tests.support.server import ServerProcess
from tests.support.validating_client import client as validating_client

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def coding_model(upstream: ScriptedUpstream, code: str, answer: list[str]) -> Scripted:
    """A model that runs ``code`` with code_interpreter, then answers with ``answer``."""
    return scripted(
        upstream,
        Script(
            tool_calls=[ToolCall("code_interpreter", {"code": code}, fragments=6)],
            usage={"prompt_tokens": 30, "completion_tokens": 9},
        ),
        Script(text=answer, usage={"prompt_tokens": 60, "completion_tokens": 5}),
    )


def coding_assistant(client: openai.OpenAI, **resources: Any) -> str:
    return client.beta.assistants.create(
        model="scripted-model",
        tools=[{"type": "code_interpreter"}],
        tool_resources=resources or None,  # type: ignore[arg-type]
    ).id


def run_once(client: openai.OpenAI, model: Scripted, assistant_id: str, text: str = "Go") -> Any:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say(text)}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    assert run.status == "completed", run.last_error
    return run


def first_call(client: openai.OpenAI, run: Any) -> Any:
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")
    return steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]


def test_code_runs_and_its_logs_reach_the_model(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    code = "x = 21 * 2\nprint('answer:', x)"
    model = coding_model(upstream, code, ["It is 42."])
    run = run_once(client, model, coding_assistant(client))

    assert run.usage is not None and run.usage.total_tokens == 30 + 9 + 60 + 5
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")
    code_step, message_step = steps.data
    assert code_step.status == "completed" and message_step.type == "message_creation"
    [call] = code_step.step_details.tool_calls  # type: ignore[union-attr]
    assert call.type == "code_interpreter" and call.id.startswith("call_")
    assert call.code_interpreter.input == code
    [logs] = call.code_interpreter.outputs
    assert logs.type == "logs" and logs.logs == "answer: 42\n"

    first, second = model.bodies
    assert "code_interpreter" in [tool["function"]["name"] for tool in first["tools"]]
    [asked] = [m for m in second["messages"] if m.get("tool_calls")]
    assert json.loads(asked["tool_calls"][0]["function"]["arguments"]) == {"code": code}
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "answer: 42",
    }


def test_figures_and_saved_files_become_files_the_answer_shows(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\n"
        "plt.show()\n"
        "open('/mnt/data/squares.csv', 'w').write('n,square\\n3,9\\n')\n"
    )
    answer = ["Here is the table: ", "[squares](sandbox:/mnt/data/squares.csv)", "."]
    model = coding_model(upstream, code, answer)
    run = run_once(client, model, coding_assistant(client))

    call = first_call(client, run)
    image = next(o for o in call.code_interpreter.outputs if o.type == "image")
    figure = client.files.retrieve(image.image.file_id)
    assert figure.purpose == "assistants_output"
    assert client.files.content(figure.id).content.startswith(PNG_MAGIC)
    assert (
        "Files saved for the user: sandbox:/mnt/data/squares.csv"
        in (model.bodies[1]["messages"][-1]["content"])
    )

    [reply] = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data
    text_part, image_part = reply.content
    text = text_part.text  # type: ignore[union-attr]
    assert text.value == "".join(answer)
    [link] = text.annotations
    assert link.type == "file_path" and link.text == "sandbox:/mnt/data/squares.csv"
    assert text.value[link.start_index : link.end_index] == link.text
    saved = client.files.retrieve(link.file_path.file_id)  # type: ignore[union-attr]
    assert (saved.filename, saved.purpose) == ("squares.csv", "assistants_output")
    assert client.files.content(saved.id).content == b"n,square\n3,9\n"
    assert image_part.type == "image_file"
    assert image_part.image_file.file_id == figure.id  # type: ignore[union-attr]


def test_input_files_and_the_session_persist_across_runs_of_a_thread(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    data = client.files.create(file=("data.csv", b"a,b\n1,2\n3,4\n"), purpose="assistants")
    assistant_id = coding_assistant(client, code_interpreter={"file_ids": [data.id]})
    reading = coding_model(
        upstream,
        "import pandas as pd\ntotal = int(pd.read_csv('/mnt/data/data.csv')['b'].sum())\n"
        "print(total)",
        ["Six."],
    )
    first = run_once(client, reading, assistant_id)
    assert first_call(client, first).code_interpreter.outputs[0].logs == "6\n"

    again = coding_model(upstream, "print(total * 10)", ["Sixty."])
    client.beta.threads.messages.create(first.thread_id, role="user", content=again.say("More"))
    second = client.beta.threads.runs.create_and_poll(
        thread_id=first.thread_id, assistant_id=assistant_id
    )
    assert second.status == "completed", second.last_error
    assert first_call(client, second).code_interpreter.outputs[0].logs == "60\n"


def test_errors_and_limits_come_back_as_logs(
    client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    model = coding_model(upstream, "1 / 0", ["Oops."])
    run = run_once(client, model, coding_assistant(client))
    logs = first_call(client, run).code_interpreter.outputs[0].logs
    assert "ZeroDivisionError" in logs and "Traceback" in logs


def test_streamed_code_input_and_outputs_arrive_as_step_deltas(
    server: Any, api_key: str, client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    code = "for n in range(3):\n    print(n * n)"
    model = coding_model(upstream, code, ["Done."])
    assistant_id = coding_assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])
    recording, log = recording_client(server.base_url, api_key)

    with recording.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id) as s:
        s.until_done()

    deltas = [
        call
        for frame in log.last()
        if frame.event == "thread.run.step.delta"
        for call in frame.json()["delta"]["step_details"]["tool_calls"]
    ]
    first, *rest = deltas
    assert first["type"] == "code_interpreter" and first["code_interpreter"]["outputs"] == []
    inputs = [d["code_interpreter"]["input"] for d in [first, *rest] if "input" in d[d["type"]]]
    assert len(inputs) > 2 and "".join(inputs) == code
    [outputs] = [d["code_interpreter"]["outputs"] for d in rest if "outputs" in d[d["type"]]]
    assert outputs == [{"index": 0, "type": "logs", "logs": "0\n1\n4\n"}]


def test_local_model_runs_a_fenced_python_block(local_client: openai.OpenAI) -> None:
    assistant_id = local_client.beta.assistants.create(
        model="local", tools=[{"type": "code_interpreter"}]
    ).id
    thread = local_client.beta.threads.create(
        messages=[{"role": "user", "content": "Run this:\n```python\nprint(sum(range(10)))\n```"}]
    )
    run = local_client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id
    )
    assert run.status == "completed", run.last_error
    assert first_call(local_client, run).code_interpreter.outputs[0].logs == "45\n"
    [reply] = local_client.beta.threads.messages.list(thread.id, run_id=run.id).data
    assert "45" in reply.content[0].text.value  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def no_sandbox_server(
    tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream
) -> Iterator[ServerProcess]:
    """A server (SQLite) whose sandbox cannot start: its interpreter does not exist."""
    directory = tmp_path_factory.mktemp("no-sandbox")
    broken = {"RUNSTEP_CODE_INTERPRETER_PYTHON": str(directory / "missing" / "python")}
    with sqlite_server(directory, **broken, **upstream_env(upstream)) as process:
        yield process


def test_a_sandbox_that_cannot_start_fails_the_run_clearly(
    no_sandbox_server: ServerProcess, upstream: ScriptedUpstream
) -> None:
    with validating_client(no_sandbox_server.base_url, STATIC_KEY) as client:
        model = coding_model(upstream, "print('never runs')", ["Unreachable."])
        thread = client.beta.threads.create(messages=[{"role": "user", "content": model.say()}])
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=coding_assistant(client)
        )

        assert run.status == "failed" and run.last_error is not None
        assert run.last_error.message.startswith("code_interpreter could not run the code:")
        [step] = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
        assert step.status == "failed" and step.last_error is not None
        assert len(model.bodies) == 1


# -- escape attempts through a run: each contained, with a clear error, the run completes -----

ESCAPES = {
    "socket to the server's port": (
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
        "ConnectionRefusedError",
    ),
    "socket to the internet": (
        "import socket\nsocket.create_connection(('1.1.1.1', 443), timeout=2)",
        "OSError",
    ),
    "reading the database file": ("open({database!r}, 'rb').read(16)", "FileNotFoundError"),
    "listing the data directory": ("import os\nos.listdir({data_dir!r})", "FileNotFoundError"),
    "reading /proc/1/environ": ("open('/proc/1/environ', 'rb').read()", "PermissionError"),
    "writing outside the working directory": (
        "open('/usr/evil.py', 'w').write('x')",
        "OSError: [Errno 30] Read-only file system",
    ),
    "a fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "[sandbox] Execution stopped",
    ),
    "a memory bomb": ("hog = bytearray(4 * 1024 ** 3)", "MemoryError"),
    "an infinite loop": ("while True:\n    pass", "[sandbox] Execution stopped"),
    "printing 1 GB": (
        "for _ in range(1024):\n    print('x' * 1024 * 1024)",
        "[sandbox] Execution stopped: it wrote more than the output limit",
    ),
}


@pytest.mark.parametrize("attempt", list(ESCAPES))
def test_escape_attempts_are_contained_with_a_clear_error(
    attempt: str, server: Any, client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    template, evidence = ESCAPES[attempt]
    data_dir = server.process.env["RUNSTEP_DATA_DIR"]
    database = server.database_url.split("///")[-1] if server.backend == "sqlite" else data_dir
    code = template.format(port=server.process.port, database=database, data_dir=data_dir)
    model = coding_model(upstream, code, ["Contained."])
    run = run_once(client, model, coding_assistant(client))

    logs = first_call(client, run).code_interpreter.outputs[0].logs
    assert evidence in logs, logs
    assert "sk-upstream" not in logs and "RUNSTEP_" not in logs
    after = coding_model(upstream, "print('still here')", ["Fine."])
    outputs = first_call(client, run_once(client, after, coding_assistant(client))).code_interpreter
    assert outputs.outputs[0].logs == "still here\n"
