"""Run operations behind the API: create (also with a new thread), modify, cancel, submit."""

from dataclasses import dataclass
from typing import Any

from runstep import ids
from runstep.config import Settings
from runstep.errors import Conflict, InvalidRequest, NotFound
from runstep.protocol.runs import (
    CreateRunRequest,
    CreateThreadAndRunRequest,
    ModifyRunRequest,
    RunObject,
    SubmitToolOutputsRequest,
)
from runstep.protocol.threads import CreateThreadRequest
from runstep.protocol.tools import response_format_wire, tools_wire
from runstep.providers.catalog import Catalog
from runstep.runs import states
from runstep.runs.bus import LocalBus
from runstep.runs.recorder import Recorder
from runstep.services import messages, threads
from runstep.services.common import get_or_404, now, set_metadata, update
from runstep.services.resources import wake
from runstep.store import events as event_log
from runstep.store import runs as run_rows
from runstep.store.collections import ASSISTANTS, RUNS, THREADS
from runstep.store.db import Database
from runstep.store.events import Event, encode
from runstep.store.notify import CONTROL, WORK, notify, notify_now

KIND = "run"
CANCELLABLE = ("queued", "in_progress", "requires_action")


@dataclass(frozen=True)
class RunContext:
    """What run operations need from the process: the store, the bus, settings, and a name."""

    db: Database
    bus: LocalBus
    settings: Settings
    owner: str
    models: Catalog  # which models each project may run

    def recorder(self, run_id: str) -> Any:
        """Lease ``run_id`` for this API call (``None`` inside if a worker holds it)."""
        return Recorder.leased(
            self.db,
            self.bus,
            run_id,
            self.owner,
            self.settings.lease_seconds,
            self.settings.delta_flush_seconds,
        )


def _instructions(
    assistant: dict[str, Any], request: CreateRunRequest | CreateThreadAndRunRequest
) -> str:
    base = request.instructions if request.instructions is not None else assistant["instructions"]
    extra = getattr(request, "additional_instructions", None)
    return "\n\n".join(part for part in (base, extra) if part)


def _check_tool_choice(run: dict[str, Any]) -> None:
    choice = run["tool_choice"]
    if isinstance(choice, dict) and choice["type"] == "function":
        name = choice["function"]["name"]
        names = {t["function"]["name"] for t in run["tools"] if t["type"] == "function"}
        if name not in names:
            raise InvalidRequest(
                f"Invalid 'tool_choice': no function named '{name}' among the run's tools.",
                param="tool_choice",
            )
    elif isinstance(choice, dict) and not any(t["type"] == choice["type"] for t in run["tools"]):
        raise InvalidRequest(
            f"Invalid 'tool_choice': the run has no {choice['type']} tool.", param="tool_choice"
        )


def new_run(
    assistant: dict[str, Any],
    thread_id: str,
    request: CreateRunRequest | CreateThreadAndRunRequest,
    expiry_seconds: int,
) -> dict[str, Any]:
    """The wire object of a queued run of ``assistant`` on ``thread_id``."""
    created_at = now()
    given = request.model_fields_set

    def pick(name: str, default: Any) -> Any:
        value = getattr(request, name)
        return value if value is not None else assistant.get(name, default)

    run = RunObject(
        id=ids.new_id(ids.RUN),
        created_at=created_at,
        thread_id=thread_id,
        assistant_id=assistant["id"],
        expires_at=created_at + expiry_seconds,
        model=request.model or assistant["model"],
        instructions=_instructions(assistant, request),
        tools=tools_wire(request.tools) if request.tools is not None else assistant["tools"],
        metadata=request.metadata or {},
        temperature=pick("temperature", 1.0),
        top_p=pick("top_p", 1.0),
        max_prompt_tokens=request.max_prompt_tokens,
        max_completion_tokens=request.max_completion_tokens,
        truncation_strategy=(
            request.truncation_strategy.model_dump(mode="json")
            if request.truncation_strategy
            else {"type": "auto", "last_messages": None}
        ),
        tool_choice=(
            request.tool_choice
            if isinstance(request.tool_choice, str)
            else request.tool_choice.model_dump(mode="json", exclude_none=True)
            if request.tool_choice
            else "auto"
        ),
        parallel_tool_calls=request.parallel_tool_calls is not False,
        response_format=(
            response_format_wire(request.response_format)
            if "response_format" in given and request.response_format is not None
            else assistant["response_format"] or "auto"
        ),
    ).wire()
    _check_tool_choice(run)
    return run


def initial_events(run: dict[str, Any]) -> list[Event]:
    """The first events of every run's log, written with the run itself."""
    data = encode(run)
    return [Event(1, "thread.run.created", data), Event(2, "thread.run.queued", data)]


async def _insert_run(
    ctx: RunContext, conn: Any, project_id: str, run: dict[str, Any], options: dict[str, Any]
) -> None:
    created = initial_events(run)
    await RUNS.insert(
        conn,
        project_id,
        run,
        thread_id=run["thread_id"],
        status="queued",
        options=options,
        expires_at=run["expires_at"],
        last_seq=created[-1].seq,
    )
    await event_log.insert(conn, run["id"], created, run["created_at"])


def _options(assistant: dict[str, Any], request: Any, include: list[str]) -> dict[str, Any]:
    effort = getattr(request, "reasoning_effort", None) or assistant.get("reasoning_effort")
    return {
        "reasoning_effort": effort,
        "include": include,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
    }


async def create(
    ctx: RunContext, project_id: str, thread_id: str, request: CreateRunRequest, include: list[str]
) -> dict[str, Any]:
    access = await ctx.models.access(project_id)
    async with ctx.db.write() as conn:
        # Locked: ``additional_messages`` may give the thread a vector store.
        thread = await get_or_404(conn, THREADS, "thread", project_id, thread_id, for_update=True)
        assistant = await get_or_404(
            conn, ASSISTANTS, "assistant", project_id, request.assistant_id
        )
        active = await run_rows.active_on_thread(conn, thread_id)
        if active is not None:
            raise InvalidRequest(f"Thread {thread_id} already has an active run {active}.")
        run = new_run(assistant, thread_id, request, ctx.settings.run_expiry_seconds)
        access.check(run["model"])
        _, queued = await messages.add_user_messages(
            conn,
            project_id,
            thread,
            request.additional_messages or [],
            now(),
            "additional_messages",
        )
        await _insert_run(ctx, conn, project_id, run, _options(assistant, request, include))
        await notify(conn, WORK)
    wake(ctx.bus, queued)
    ctx.bus.wake_workers()
    return run


async def create_thread_and_run(
    ctx: RunContext, project_id: str, request: CreateThreadAndRunRequest
) -> tuple[dict[str, Any], dict[str, Any]]:
    thread_request = request.thread or CreateThreadRequest()
    resources_param = None
    if request.tool_resources is not None:  # they belong to the new thread
        thread_request = thread_request.model_copy(
            update={"tool_resources": request.tool_resources}
        )
        resources_param = "tool_resources"
    access = await ctx.models.access(project_id)
    async with ctx.db.write() as conn:
        assistant = await get_or_404(
            conn, ASSISTANTS, "assistant", project_id, request.assistant_id
        )
        access.check(request.model or assistant["model"])
        thread, queued = await threads.insert(
            conn, project_id, thread_request, prefix="thread.", resources_param=resources_param
        )
        run = new_run(assistant, thread["id"], request, ctx.settings.run_expiry_seconds)
        await _insert_run(ctx, conn, project_id, run, _options(assistant, request, []))
        await notify(conn, WORK)
    wake(ctx.bus, queued)
    ctx.bus.wake_workers()
    return thread, run


async def modify(
    ctx: RunContext, project_id: str, thread_id: str, run_id: str, request: ModifyRunRequest
) -> dict[str, Any]:
    return await update(
        ctx.db, RUNS, KIND, project_id, run_id, set_metadata(request), thread_id=thread_id
    )


async def cancel(ctx: RunContext, project_id: str, thread_id: str, run_id: str) -> dict[str, Any]:
    """Ask the run to stop; finish the cancellation here when no worker holds it."""
    async with ctx.db.write() as conn:
        run = await get_or_404(
            conn, RUNS, KIND, project_id, run_id, for_update=True, thread_id=thread_id
        )
        if run["status"] not in CANCELLABLE:
            raise InvalidRequest(f"Cannot cancel run with status '{run['status']}'.")
        await run_rows.set_state(conn, run_id, cancel_requested=True)
        await notify(conn, CONTROL, run_id)
    ctx.bus.notify(f"control:{run_id}")
    async with ctx.recorder(run_id) as recorder:
        if recorder is not None and recorder.run["status"] not in states.RUN_TERMINAL:
            await recorder.finish("cancelled")
    return {**run, "status": "cancelling"}


def _check_outputs(run: dict[str, Any], request: SubmitToolOutputsRequest) -> dict[str, str]:
    """Every pending call needs exactly one output, all in one request."""
    if run["status"] != "requires_action":
        raise InvalidRequest(
            f'Runs in status "{run["status"]}" do not accept tool outputs.', param="tool_outputs"
        )
    pending = [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
    outputs: dict[str, str] = {}
    for index, item in enumerate(request.tool_outputs):
        param = f"tool_outputs[{index}].tool_call_id"
        if item.tool_call_id not in pending:
            raise InvalidRequest(
                f"Invalid '{param}': no pending tool call with id '{item.tool_call_id}'.",
                param=param,
            )
        if item.tool_call_id in outputs:
            raise InvalidRequest(
                f"Invalid '{param}': duplicate output for '{item.tool_call_id}'.", param=param
            )
        outputs[item.tool_call_id] = item.output or ""
    missing = [call_id for call_id in pending if call_id not in outputs]
    if missing:
        raise InvalidRequest(
            f"Expected tool outputs for call_ids {pending}, got {list(outputs)}. "
            "Submit every output in one request.",
            param="tool_outputs",
        )
    return outputs


async def submit_tool_outputs(
    ctx: RunContext,
    project_id: str,
    thread_id: str,
    run_id: str,
    request: SubmitToolOutputsRequest,
) -> tuple[dict[str, Any], int]:
    """Returns the queued run and the seq after which its new events start."""
    async with ctx.db.read() as conn:
        await get_or_404(conn, RUNS, KIND, project_id, run_id, thread_id=thread_id)
    async with ctx.recorder(run_id) as recorder:
        if recorder is None:
            raise Conflict("The run is being updated; retry shortly.")
        outputs = _check_outputs(recorder.run, request)
        after_seq = recorder.last_seq
        await recorder.submit_outputs(outputs)
        run = dict(recorder.run)
    await notify_now(ctx.db, WORK)
    ctx.bus.wake_workers()
    return run, after_seq


async def retrieve_run(
    ctx: RunContext, project_id: str, thread_id: str, run_id: str
) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        run = await RUNS.get(conn, project_id, run_id, thread_id=thread_id)
    if run is None:
        raise NotFound.object(KIND, run_id)
    return run
