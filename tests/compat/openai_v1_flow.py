"""openai-python 1.109.1 (the last 1.x, on httpx) against a running Runstep server.

Run in its own process with the SDK's install directory first on the path (see
tests/compat/test_openai_v1.py), never with the project's venv openai::

    PYTHONPATH=.cache/openai-1.109.1 BASE_URL=http://127.0.0.1:PORT/v1 API_KEY=sk-... \\
        .venv/bin/python tests/compat/openai_v1_flow.py TEXT_SCRIPT STREAM_SCRIPT POLL_SCRIPT

TEXT_SCRIPT names a scripted-upstream queue answering with text; STREAM_SCRIPT and POLL_SCRIPT
each name a queue that calls get_weather once, then answers with text. Only the SDK's own
helpers are used. Prints one JSON object on stdout. Imports nothing from the project: its
dependencies (pydantic, httpx) here are the SDK's, not the server's.
"""

import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import openai
from openai import AssistantEventHandler, OpenAI
from typing_extensions import override

warnings.simplefilter("ignore", DeprecationWarning)  # "The Assistants API is deprecated"

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
OUTPUT = json.dumps({"city": "Paris", "celsius": 21})
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


class Recorder(AssistantEventHandler):
    """Every event name, and what the SDK's accumulators handed to the callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.text_deltas: list[str] = []
        self.texts_done: list[str] = []
        self.tool_calls_done: list[dict[str, Any]] = []
        self.messages_done: list[dict[str, Any]] = []
        self.steps_done: list[dict[str, Any]] = []

    @override
    def on_event(self, event: Any) -> None:
        self.events.append(event.event)

    @override
    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text_deltas.append(delta.value or "")

    @override
    def on_text_done(self, text: Any) -> None:
        self.texts_done.append(text.value)

    @override
    def on_tool_call_done(self, tool_call: Any) -> None:
        function = tool_call.function
        self.tool_calls_done.append(
            {"id": tool_call.id, "name": function.name, "arguments": function.arguments}
        )

    @override
    def on_message_done(self, message: Any) -> None:
        self.messages_done.append(
            {"id": message.id, "status": message.status, "text": message_text(message)}
        )

    @override
    def on_run_step_done(self, run_step: Any) -> None:
        self.steps_done.append({"type": run_step.type, "status": run_step.status})


class PollLog:
    """Watches the helpers' GET-run polls: how many, and the interval the server asked for."""

    def __init__(self) -> None:
        self.polls = 0
        self.poll_after_ms: set[str] = set()

    def __call__(self, response: httpx.Response) -> None:
        if response.request.headers.get("x-stainless-poll-helper") == "true":
            self.polls += 1
            self.poll_after_ms.add(response.headers.get("openai-poll-after-ms", "missing"))


def message_text(message: Any) -> str:
    return "".join(part.text.value for part in message.content if part.type == "text")


def call_record(call: Any) -> dict[str, Any]:
    return {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}


def user_message(text: str, script: str) -> Any:
    return {"role": "user", "content": f"{text} [[script:{script}]]"}


def create_and_poll(client: OpenAI, assistant_id: str, script: str) -> dict[str, Any]:
    """A plain text run through create_and_poll."""
    thread = client.beta.threads.create(messages=[user_message("Say hello.", script)])
    started = time.monotonic()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    elapsed = time.monotonic() - started
    messages = client.beta.threads.messages.list(thread.id, order="desc", run_id=run.id)
    return {
        "status": run.status,
        "seconds": round(elapsed, 3),
        "usage": run.usage.model_dump() if run.usage else None,
        "texts": [message_text(m) for m in messages],
    }


def stream_function_call(client: OpenAI, assistant_id: str, script: str) -> dict[str, Any]:
    """runs.stream up to requires_action, then submit_tool_outputs_stream to the end."""
    thread = client.beta.threads.create(messages=[user_message("Weather in Paris?", script)])
    first = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, event_handler=first
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
        first_steps = stream.get_final_run_steps()
    after_first = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status
    action = run.required_action
    calls = action.submit_tool_outputs.tool_calls if action else []

    second = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": OUTPUT} for call in calls],
        event_handler=second,
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()
        snapshots = stream.get_final_messages()
    after_second = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status
    # Steps through auto-pagination one per page, with the include[] query the SDK builds.
    steps = client.beta.threads.runs.steps.list(
        run.id, thread_id=thread.id, order="asc", limit=1, include=[FILE_SEARCH_CONTENT]
    )
    step_list = list(steps)
    return {
        "run_id": run.id,
        "same_run": final.id == run.id,
        "events": {"first": first.events, "second": second.events},
        "statuses": {
            "first_stream": run.status,
            "after_first_stream": after_first,
            "second_stream": final.status,
            "after_second_stream": after_second,
        },
        "tool_calls": [call_record(call) for call in calls],
        "streamed_tool_calls": first.tool_calls_done,
        "first_steps": [
            {"type": s.type, "status": s.status, "details": s.step_details.type}
            for s in first_steps
        ],
        "steps_done": {"first": first.steps_done, "second": second.steps_done},
        "text_deltas": second.text_deltas,
        "texts_done": second.texts_done,
        "messages_done": second.messages_done,
        "snapshot_texts": [message_text(m) for m in snapshots],
        "steps": [
            {
                "type": s.type,
                "status": s.status,
                "outputs": [c.function.output for c in getattr(s.step_details, "tool_calls", [])],
            }
            for s in step_list
        ],
        "usage": final.usage.model_dump() if final.usage else None,
    }


def poll_function_call(client: OpenAI, assistant_id: str, script: str) -> dict[str, Any]:
    """create_and_poll to requires_action, then submit_tool_outputs_and_poll."""
    thread = client.beta.threads.create(messages=[user_message("Weather in Paris?", script)])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    action = run.required_action
    calls = action.submit_tool_outputs.tool_calls if action else []
    final = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": OUTPUT} for call in calls],
    )
    latest = client.beta.threads.messages.list(thread.id, order="desc", limit=1).data
    return {
        "statuses": [run.status, final.status],
        "tool_calls": [call_record(call) for call in calls],
        "text": message_text(latest[0]) if latest else None,
    }


def create_and_run(client: OpenAI, assistant_id: str, script: str) -> dict[str, Any]:
    """POST /threads/runs through create_and_run_poll and create_and_run_stream."""
    polled = client.beta.threads.create_and_run_poll(
        assistant_id=assistant_id,
        thread={"messages": [user_message("Hello there.", script)]},
    )
    polled_messages = client.beta.threads.messages.list(polled.thread_id, order="asc").data
    recorder = Recorder()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant_id,
        thread={"messages": [user_message("Hello again.", script)]},
        event_handler=recorder,
    ) as stream:
        stream.until_done()
        streamed = stream.get_final_run()
    return {
        "poll": {
            "status": polled.status,
            "roles": [m.role for m in polled_messages],
            "text": message_text(polled_messages[-1]),
        },
        "stream": {
            "status": streamed.status,
            "events": recorder.events,
            "texts_done": recorder.texts_done,
        },
    }


def paginate(client: OpenAI) -> dict[str, Any]:
    """Auto-pagination of a 7-message thread, 2 per page, both orders."""
    texts = [f"message {i}" for i in range(7)]
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": text} for text in texts]
    )
    ascending = client.beta.threads.messages.list(thread.id, order="asc", limit=2)
    pages = list(ascending.iter_pages())
    descending = client.beta.threads.messages.list(thread.id, order="desc", limit=2)
    return {
        "expected": texts,
        "asc": [message_text(m) for m in ascending],
        "desc": [message_text(m) for m in descending],
        "page_sizes": [len(page.data) for page in pages],
        "first_page_has_more": ascending.has_more,
    }


def guarded(section: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The section's result, or its error: one failing flow must not hide the others."""
    try:
        return section()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def main() -> None:
    text_script, stream_script, poll_script = sys.argv[1:4]
    polls = PollLog()
    client = OpenAI(
        base_url=os.environ["BASE_URL"],
        api_key=os.environ["API_KEY"],
        max_retries=0,
        timeout=30,
        http_client=openai.DefaultHttpxClient(event_hooks={"response": [polls]}),
    )
    assistant = client.beta.assistants.create(
        model="scripted-model",
        name="python-v1-compat",
        instructions="Use get_weather when asked about the weather.",
        tools=[WEATHER_TOOL],
    )
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "create_and_poll": lambda: create_and_poll(client, assistant.id, text_script),
        "stream": lambda: stream_function_call(client, assistant.id, stream_script),
        "poll_function": lambda: poll_function_call(client, assistant.id, poll_script),
        "create_and_run": lambda: create_and_run(client, assistant.id, text_script),
        "pagination": lambda: paginate(client),
    }
    result: dict[str, Any] = {
        "sdk_version": openai.__version__,
        "sdk_path": openai.__file__,
        "httpx_version": httpx.__version__,
    }
    for name, section in sections.items():
        result[name] = guarded(section)
    result["polls"] = {"count": polls.polls, "poll_after_ms": sorted(polls.poll_after_ms)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
