"""Executes a leased run: model turns, tool calls, and every way a run can end."""

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from runstep import ids, observability
from runstep.config import Settings
from runstep.files.storage import blob_store
from runstep.observability import ACTIVE_RUNS, ERRORS, MODEL_FIRST_TOKEN, MODEL_TURN
from runstep.providers.base import (
    ChatRequest,
    Finish,
    Provider,
    ProviderError,
    TextDelta,
    ToolCallDelta,
)
from runstep.runs import context, hosted, images, objects
from runstep.runs.bus import LocalBus, wait
from runstep.runs.hosted import HostedTools, ToolFailed
from runstep.runs.recorder import LeaseLost, Recorder, Replay, replayed
from runstep.services.common import now
from runstep.store import runs as run_rows
from runstep.store.collections import MESSAGES, RUN_STEPS
from runstep.store.db import DATABASE_DOWN, Database
from runstep.tools.code_interpreter import model_tool as code_tool
from runstep.tools.code_interpreter.model_tool import CodeStream
from runstep.tools.file_search import tool as file_search

log = logging.getLogger("runstep.executor")

ERROR_CODES = {
    "rate_limit": "rate_limit_exceeded",
    "server": "server_error",
    "invalid": "invalid_prompt",
}
ZERO_USAGE = objects.usage(0, 0)


class CancelRequested(Exception):
    """The run was asked to stop."""


class RunInterrupted(Exception):
    """The run's worker stopped while executing it too many times in a row (a run that crashes
    every worker, say); the run fails with this message instead of being retried again."""


@dataclass
class Turn:
    """What one model turn produced."""

    finish: Finish | None = None
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # model index → our call
    replays: dict[int, Replay | None] = field(default_factory=dict)  # arguments after a crash
    hosted_arguments: dict[int, str] = field(default_factory=dict)  # of hosted-tool calls
    code: dict[int, CodeStream] = field(default_factory=dict)  # code_interpreter input so far


class Executor:
    """Drives runs for one worker; holds nothing between runs."""

    def __init__(self, db: Database, bus: LocalBus, provider: Provider, settings: Settings) -> None:
        self.db, self.bus, self.provider, self.settings = db, bus, provider, settings
        self.blobs = blob_store(settings)
        self.hosted = HostedTools(db, self.blobs, settings)

    async def execute(self, row: run_rows.RunRow, owner: str) -> None:
        """Run ``row`` (already leased to ``owner``) until it ends or waits for tool outputs."""
        recorder = await Recorder.open(
            self.db,
            self.bus,
            row,
            owner,
            self.settings.lease_seconds,
            self.settings.delta_flush_seconds,
        )
        task = asyncio.current_task()
        assert task is not None
        observability.run_id.set(row.id)  # this task's context: its log lines carry the run id
        ACTIVE_RUNS.inc()
        keeper = asyncio.create_task(self._keep_lease(recorder, task))
        try:
            await self._run_to_end(recorder, row.claims)
        except (LeaseLost, *DATABASE_DOWN) as error:
            recorder.abandoned = True
            log.warning("abandoning %s (%r); it resumes once its lease lapses", row.id, error)
        except asyncio.CancelledError:
            if recorder.abandoned:  # the lease keeper found the lease taken over
                task.uncancel()
                log.warning("abandoning %s: another worker owns it now", row.id)
            elif recorder.cancel_requested:
                task.uncancel()
                await recorder.finish("cancelled")
            else:
                raise  # the worker is shutting down: the run resumes elsewhere
        finally:
            ACTIVE_RUNS.dec()
            keeper.cancel()
            await recorder.release()

    async def _run_to_end(self, recorder: Recorder, claims: int) -> None:
        """Drive the run; every failure but a lost lease or database ends it visibly."""
        try:
            await self._drive(recorder, claims)
        except CancelRequested:
            await recorder.finish("cancelled")
        except ProviderError as error:
            ERRORS.labels(f"model_{error.kind}").inc()
            log.warning("run %s failed: %s", recorder.run["id"], error.message)
            await recorder.finish(
                "failed", {"code": ERROR_CODES[error.kind], "message": error.message}
            )
        except (ToolFailed, RunInterrupted) as error:
            ERRORS.labels("tool" if isinstance(error, ToolFailed) else "interrupted").inc()
            log.warning("run %s failed: %s", recorder.run["id"], error)
            await recorder.finish("failed", {"code": "server_error", "message": str(error)})
        except (LeaseLost, *DATABASE_DOWN):
            raise
        except Exception:
            ERRORS.labels("internal").inc()
            log.exception("run %s failed with an internal error", recorder.run["id"])
            await recorder.finish(
                "failed",
                {"code": "server_error", "message": "The server had an error while running."},
            )

    async def _keep_lease(self, recorder: Recorder, task: asyncio.Task[Any]) -> None:
        """Renew the lease every third of its length; stop ``task`` when a cancel is requested
        (woken at once by the control signal) or when the lease was lost."""
        control = f"control:{recorder.run['id']}"
        while True:
            await wait(self.bus.signal(control), self.settings.lease_seconds / 3)
            try:
                cancel = await recorder.renew()
            except DATABASE_DOWN:
                continue  # the lease may lapse; the next renewal or another worker decides
            if cancel is None:
                recorder.abandoned = True
            elif cancel:
                recorder.cancel_requested = True
            else:
                continue
            task.cancel()
            return

    async def _drive(self, recorder: Recorder, claims: int) -> None:
        """Execute the run (its ``claims``-th claim in a row) until it ends or waits."""
        if recorder.cancel_requested or recorder.run["status"] == "cancelling":
            raise CancelRequested
        if claims > self.settings.run_max_claims:
            raise RunInterrupted(
                f"The run was interrupted {claims - 1} times in a row (the worker executing it "
                "stopped each time); it is not retried again."
            )
        await recorder.start()
        while True:
            if recorder.run["expires_at"] is not None and now() >= recorder.run["expires_at"]:
                await recorder.finish("expired")
                return
            built = await self._context(recorder)
            if built.prompt_budget is not None and built.prompt_tokens > built.prompt_budget:
                await recorder.finish("incomplete", incomplete="max_prompt_tokens")
                return
            recorder.citations = file_search.citation_targets(built.searches)
            recorder.images = built.images
            turn = await self._model_turn(recorder, built.request)
            if not await self._after_turn(recorder, turn, built):
                return

    async def _context(self, recorder: Recorder) -> context.Context:
        run = recorder.run
        async with self.db.read() as conn:
            messages = await MESSAGES.all(conn, recorder.project_id, thread_id=run["thread_id"])
            steps = await RUN_STEPS.all(conn, recorder.project_id, run_id=run["id"])
        ids = images.image_file_ids(m for m in messages if m["role"] == "user")
        urls = await images.data_urls(self.db, self.blobs, recorder.project_id, ids) if ids else {}
        return context.build(
            run, recorder.options, messages, steps, self.settings.context_window_tokens, urls
        )

    async def _model_turn(self, recorder: Recorder, request: ChatRequest) -> Turn:
        turn = Turn()
        started, first = time.monotonic(), True
        request = replace(request, project_id=recorder.project_id)  # picks its upstream key
        async for event in self.provider.stream(request):
            if first:
                MODEL_FIRST_TOKEN.observe(time.monotonic() - started)
                first = False
            if recorder.cancel_requested:
                raise CancelRequested
            if isinstance(event, TextDelta):
                if recorder.step is not None and recorder.step["type"] == "tool_calls":
                    continue  # text after tool calls has nowhere to go
                if recorder.message is None:
                    recorder.open_message()
                recorder.add_text(event.text)
            elif isinstance(event, ToolCallDelta):
                self._tool_fragment(recorder, turn, event)
            else:
                turn.finish = event
            await recorder.flush_if_due()
            await asyncio.sleep(0)  # let streams send what was just published
        MODEL_TURN.observe(time.monotonic() - started)
        return turn

    def _tool_fragment(self, recorder: Recorder, turn: Turn, delta: ToolCallDelta) -> None:
        if recorder.message is not None:
            recorder.end_message()
            recorder.end_step(usage=ZERO_USAGE)
        if recorder.step is None:
            recorder.open_tool_step()
        call = turn.calls.get(delta.index) or self._new_call(recorder, turn, delta)
        kind = call["type"]
        if kind == file_search.NAME:  # its arguments are not on the wire
            turn.hosted_arguments[delta.index] += delta.arguments
            return
        if kind == code_tool.NAME:  # the code streams as the call's ``input``
            turn.hosted_arguments[delta.index] += delta.arguments
            text, key = turn.code[delta.index].feed(delta.arguments), "input"
        else:
            text, key = delta.arguments, "arguments"
        text, turn.replays[delta.index], diverged = replayed(
            turn.replays.get(delta.index), text, "tool call"
        )
        if diverged:
            call[kind][key] = ""
        if text:
            call[kind][key] += text
            position = recorder.tool_calls().index(call)
            recorder.touch_step({"index": position, "type": kind, kind: {key: text}})

    def _new_call(self, recorder: Recorder, turn: Turn, delta: ToolCallDelta) -> dict[str, Any]:
        """The call for a new model index: one a crashed worker recorded (replayed), or new."""
        recorded = recorder.tool_calls()
        if delta.index < len(recorded):  # resuming a step whose calls were being streamed
            call = recorded[delta.index]
            streamed = {"function": "arguments", code_tool.NAME: "input"}.get(call["type"])
            if streamed is not None:
                turn.replays[delta.index] = Replay(call[call["type"]][streamed])
        elif delta.name in context.hosted_tools(recorder.run):
            call, first = hosted.new_call(delta.name, recorder.run, len(recorded))
            recorder.add_tool_call(call, first)
        else:
            call = objects.function_call(ids.new_id(ids.CALL), delta.name or "", "")
            first = {"index": len(recorded), **call, "function": {**call["function"]}}
            recorder.add_tool_call(call, first)
        turn.calls[delta.index] = call
        if call["type"] != "function":
            turn.hosted_arguments[delta.index] = ""
            turn.code[delta.index] = CodeStream()
        return call

    async def _after_turn(self, recorder: Recorder, turn: Turn, built: context.Context) -> bool:
        """Record the turn's end; True if the run goes on with another turn."""
        finish = turn.finish or Finish(reason="stop")
        if any(call["type"] != "function" for call in turn.calls.values()):
            # Before running hosted tools (and before counting the turn's usage): streams in
            # other processes see the step and its calls while the tools run, and a worker that
            # resumes after a crash continues this step rather than starting another.
            await recorder.flush()
        prompt = finish.prompt_tokens or 0
        completion = finish.completion_tokens or 0
        recorder.add_usage(prompt, completion)
        step_usage = objects.usage(prompt, completion)
        if turn.calls:
            arguments = {
                turn.calls[index]["id"]: text for index, text in turn.hosted_arguments.items()
            }
            await self.hosted.execute(recorder, arguments, built)
            if any(call["type"] == "function" for call in turn.calls.values()):
                await recorder.require_action(step_usage)
                return False
            recorder.end_step(usage=step_usage)
            await recorder.flush()  # the hosted calls are done: a crash now does not redo them
            return True
        if recorder.message is None:
            recorder.open_message()
        run = recorder.run
        _, used_completion = recorder.used()
        budget_hit = (
            finish.reason == "length"
            and run["max_completion_tokens"] is not None
            and used_completion >= run["max_completion_tokens"]
        )
        if finish.reason == "length":
            recorder.end_message("max_tokens")
        else:
            recorder.end_message()
        recorder.end_step(usage=step_usage)
        if budget_hit:
            await recorder.finish("incomplete", incomplete="max_completion_tokens")
        else:
            await recorder.finish("completed")
        return False
