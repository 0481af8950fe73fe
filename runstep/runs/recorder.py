"""The single writer of a run: its status, steps, messages and event log.

Whoever holds the run's lease (a worker executing it, or an API call cancelling, submitting
or expiring it) records through a ``Recorder``. Status events are persisted before they are
published, so a client that saw ``thread.run.completed`` reads ``completed`` from GET run.
Deltas are published at once and persisted in batches; the log stays in order either way."""

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from runstep.observability import RUNS_FINISHED
from runstep.protocol.messages import text_part
from runstep.runs import objects, states
from runstep.runs.bus import LocalBus
from runstep.services.common import now
from runstep.store import events as event_log
from runstep.store import runs as run_rows
from runstep.store.collections import MESSAGES, RUN_STEPS, RUNS
from runstep.store.db import Database
from runstep.store.events import Event, encode
from runstep.store.objects import ObjectTable
from runstep.tools.code_interpreter import model_tool as code_tool
from runstep.tools.file_search import tool as file_search

log = logging.getLogger("runstep.recorder")

# How an unfinished step or message ends when its run ends with a given status.
STEP_END = {"cancelled": "cancelled", "failed": "failed", "expired": "expired"}
MESSAGE_END = {"cancelled": "run_cancelled", "failed": "run_failed", "expired": "run_expired"}


class Replay:
    """Text a crashed worker had already recorded. The resumed run regenerates it; only what
    goes beyond it is streamed again, so a reader's stream continues where it stopped."""

    def __init__(self, recorded: str) -> None:
        self.recorded = recorded
        self.regenerated = ""

    def fresh(self, text: str) -> str | None:
        """The part of ``text`` past the recorded text; None if the regeneration diverged."""
        before = len(self.regenerated)
        self.regenerated += text
        if self.recorded.startswith(self.regenerated):
            return ""
        if self.regenerated.startswith(self.recorded):
            return self.regenerated[max(before, len(self.recorded)) :]
        return None

    @property
    def done(self) -> bool:
        return len(self.regenerated) >= len(self.recorded)


def replayed(replay: "Replay | None", text: str, what: str) -> tuple[str, "Replay | None", bool]:
    """Filter ``text`` through ``replay``: (text to record, the replay still active, whether
    the recorded text must be replaced by the regeneration because it diverged)."""
    if replay is None:
        return text, None, False
    fresh = replay.fresh(text)
    if fresh is None:
        log.warning("resumed %s diverged from what was recorded; replacing it", what)
        return replay.regenerated, None, True
    return fresh, (None if replay.done else replay), False


class LeaseLost(Exception):
    """Another process holds the run now; this one must stop writing."""


class Recorder:
    """Records one run while ``owner`` holds its lease."""

    def __init__(
        self,
        db: Database,
        bus: LocalBus,
        row: run_rows.RunRow,
        owner: str,
        lease_seconds: float,
        flush_seconds: float,
    ) -> None:
        self.db, self.bus, self.owner = db, bus, owner
        self.run, self.options = row.data, row.options
        self.project_id = row.project_id
        self.cancel_requested = row.cancel_requested
        self.abandoned = False  # lease or database lost: leave the run for another worker
        self.released = False
        self.step: dict[str, Any] | None = None
        self.message: dict[str, Any] | None = None
        self.replay: Replay | None = None  # the open message's text, after a crash
        self._lease_seconds, self._flush_seconds = lease_seconds, flush_seconds
        self._seq = row.last_seq
        self._pending: list[Event] = []
        self._new: list[tuple[ObjectTable, dict[str, Any], dict[str, Any]]] = []
        self._dirty: dict[str, tuple[ObjectTable, dict[str, Any]]] = {}
        self._last_flush = time.monotonic()
        self._first_text_pending = False
        # (marker source, result) → file id: what the open message's markers can cite
        self.citations: dict[tuple[int, int], str] = {}
        self.images: list[str] = []  # file ids of images the next message shows

    @classmethod
    async def open(
        cls,
        db: Database,
        bus: LocalBus,
        row: run_rows.RunRow,
        owner: str,
        lease_seconds: float,
        flush_seconds: float,
    ) -> "Recorder":
        """Take over a leased run, with its open step and message if it has them."""
        recorder = cls(db, bus, row, owner, lease_seconds, flush_seconds)
        if row.status != "queued":  # a queued run has no open step
            await recorder._load_open_step()
        bus.open_feed(row.id, row.last_seq + 1)
        return recorder

    async def _load_open_step(self) -> None:
        async with self.db.read() as conn:
            steps = await RUN_STEPS.all(conn, self.project_id, run_id=self.run["id"])
            self.step = next((s for s in steps if s["status"] == "in_progress"), None)
            if self.step is None or self.step["type"] != "message_creation":
                return
            message_id = self.step["step_details"]["message_creation"]["message_id"]
            self.message = await MESSAGES.get(conn, self.project_id, message_id)
        if self.message is not None and self.message["content"]:
            self.replay = Replay(self.message["content"][0]["text"]["value"])

    @classmethod
    @asynccontextmanager
    async def leased(
        cls,
        db: Database,
        bus: LocalBus,
        run_id: str,
        owner: str,
        lease_seconds: float,
        flush_seconds: float,
    ) -> AsyncIterator["Recorder | None"]:
        """Lease one run if nobody holds it and record through it (None if it is held)."""
        async with db.write() as conn:
            at = time.time()
            if not await run_rows.acquire(conn, run_id, owner, at, at + lease_seconds):
                yield None
                return
            row = await run_rows.row(conn, run_id)
        assert row is not None
        recorder = await cls.open(db, bus, row, owner, lease_seconds, flush_seconds)
        try:
            yield recorder
        finally:
            await recorder.release()

    # -- persistence ---------------------------------------------------------------------

    def _event(self, name: str, obj: Mapping[str, Any]) -> Event:
        self._seq += 1
        return Event(seq=self._seq, event=name, data=encode(obj))

    def _insert(self, table: ObjectTable, obj: dict[str, Any], **columns: Any) -> None:
        self._new.append((table, obj, columns))

    def _touch(self, table: ObjectTable, obj: dict[str, Any]) -> None:
        self._dirty[obj["id"]] = (table, obj)

    def emit(self, name: str, obj: Mapping[str, Any]) -> None:
        """Publish an event now (as ``obj`` is now); it is persisted with the next flush."""
        event = self._event(name, obj)
        self._pending.append(event)
        self.bus.publish(self.run["id"], [event])

    async def commit(self, name: str, run: Mapping[str, Any], release: bool = False) -> None:
        """Persist everything pending plus this run status event, then publish it: whoever
        sees the event can read the status. ``release`` gives up the lease in the same
        transaction."""
        event = self._event(name, run)
        self._pending.append(event)
        await self.flush(release)
        self.bus.publish(self.run["id"], [event])

    async def flush_if_due(self) -> None:
        due = time.monotonic() - self._last_flush >= self._flush_seconds
        if self._pending and (due or self._first_delta_waiting):
            await self.flush()

    @property
    def _first_delta_waiting(self) -> bool:
        """A message's first text waits unpersisted. Readers in other processes (PostgreSQL
        deployments) see only persisted events, so it is written at once: their time to first
        token does not wait for the flush interval."""
        return not self.db.is_sqlite and self._first_text_pending

    async def flush(self, release: bool = False) -> None:
        """One transaction: renew (or release) the lease, which fences out a stale holder,
        then write new and changed objects and the pending events."""
        async with self.db.write() as conn:
            until = None if release else time.time() + self._lease_seconds
            state = await run_rows.renew(
                conn, self.run["id"], self.owner, until=until, last_seq=self._seq
            )
            if state is None:
                raise LeaseLost(self.run["id"])
            for table, obj, columns in self._new:
                await table.insert(conn, self.project_id, obj, **columns)
            inserted = {obj["id"] for _, obj, _ in self._new}
            for table, obj in self._dirty.values():
                if obj["id"] not in inserted and obj is not self.run:
                    await table.replace(conn, self.project_id, obj)
            if self.run["id"] in self._dirty:
                self.run["metadata"] = state.metadata  # it may have been modified meanwhile
                await RUNS.replace(
                    conn,
                    self.project_id,
                    self.run,
                    status=self.run["status"],
                    options=self.options,
                    expires_at=self.run["expires_at"],
                )
            await event_log.insert(conn, self.run["id"], self._pending, now())
        self._pending, self._new, self._dirty = [], [], {}
        self._first_text_pending = False
        self._last_flush = time.monotonic()
        self.cancel_requested = self.cancel_requested or state.cancel_requested
        self.released = release

    async def renew(self) -> bool | None:
        """Extend the lease; whether a cancel was requested, or None if the lease is lost."""
        async with self.db.write() as conn:
            state = await run_rows.renew(
                conn,
                self.run["id"],
                self.owner,
                until=time.time() + self._lease_seconds,
                last_seq=None,  # the flushes record it, with the events they write
            )
        return None if state is None else state.cancel_requested

    async def release(self) -> None:
        """Persist what is pending and give up the lease (unless that already happened, or the
        run was abandoned: then its lease lapses), and drop the in-memory feed."""
        try:
            if not (self.abandoned or self.released):
                await self.flush(release=True)
        finally:
            self.bus.close_feed(self.run["id"])

    @property
    def last_seq(self) -> int:
        """The seq of the newest event recorded so far."""
        return self._seq

    # -- status moves ----------------------------------------------------------------------

    def _move(self, table: ObjectTable, obj: dict[str, Any], target: str) -> None:
        transitions = {RUNS: states.RUN_TRANSITIONS, RUN_STEPS: states.STEP_TRANSITIONS}
        states.check(transitions.get(table, states.MESSAGE_TRANSITIONS), obj["status"], target)
        obj["status"] = target
        stamp = states.STAMPS.get(target)
        if stamp in obj and not (stamp == "started_at" and obj[stamp]):
            obj[stamp] = now()
        self._touch(table, obj)

    def move_run(self, target: str) -> dict[str, Any]:
        self._move(RUNS, self.run, target)
        return self.run

    async def start(self) -> None:
        """queued → in_progress (a resumed run that is already in progress stays so)."""
        if self.run["status"] == "queued":
            await self.commit("thread.run.in_progress", self.move_run("in_progress"))

    # -- messages --------------------------------------------------------------------------

    def open_message(self) -> None:
        """Open a message_creation step and its assistant message."""
        at = now()
        message = objects.assistant_message(self.run, at)
        step = objects.message_step(self.run, message["id"], at)
        self._insert(RUN_STEPS, step, thread_id=self.run["thread_id"], run_id=self.run["id"])
        self._insert(MESSAGES, message, thread_id=self.run["thread_id"], run_id=self.run["id"])
        self.step, self.message = step, message
        self._emit_step("thread.run.step.created", step)
        self._emit_step("thread.run.step.in_progress", step)
        self.emit("thread.message.created", message)
        self.emit("thread.message.in_progress", message)

    def add_text(self, text: str) -> None:
        assert self.message is not None
        text, self.replay, diverged = replayed(self.replay, text, "message")
        content = self.message["content"]
        if diverged:
            content.clear()
        if not text:
            return
        first = not content
        if first:
            content.append(text_part(""))
            self._first_text_pending = True
        part = content[0]["text"]
        part["value"] += text
        cited = self._new_citations(part, text)
        self._touch(MESSAGES, self.message)
        self.emit(
            "thread.message.delta",
            objects.message_delta(self.message["id"], 0, text, first, cited),
        )

    def _new_citations(self, part: dict[str, Any], text: str) -> list[dict[str, Any]]:
        """Annotate the source markers ``text`` completed; the new annotations, indexed."""
        if "】" not in text or not self.citations:
            return []
        known = part["annotations"]
        start = known[-1]["end_index"] if known else 0
        new = file_search.citations(part["value"], self.citations, start)
        known.extend(new)
        return [{"index": len(known) - len(new) + n, **a} for n, a in enumerate(new)]

    def end_message(self, reason: str | None = None) -> None:
        """Complete the open message, or end it incomplete with ``reason``."""
        assert self.message is not None
        message, self.message = self.message, None
        if reason is None:
            self._attach_code_outputs(message)
            self._move(MESSAGES, message, "completed")
            self.emit("thread.message.completed", message)
            return
        self._move(MESSAGES, message, "incomplete")
        message["incomplete_details"] = {"reason": reason}
        self.emit("thread.message.incomplete", message)

    def _attach_code_outputs(self, message: dict[str, Any]) -> None:
        """Annotate the answer's links to files the run's code saved, and show the images it
        made since the last message, as the hosted API did."""
        content = message["content"]
        parts: list[dict[str, Any]] = []
        if content:
            text = content[0]["text"]
            links = code_tool.file_paths(text["value"], self.options.get("sandbox_files", {}))
            if links:
                start = len(text["annotations"])
                text["annotations"].extend(links)
                indexed = [{"index": start + n, **link} for n, link in enumerate(links)]
                parts.append({"index": 0, "type": "text", "text": {"annotations": indexed}})
        for file_id in self.images:
            content.append({"type": "image_file", "image_file": {"file_id": file_id}})
            parts.append({"index": len(content) - 1, **content[-1]})
        self.images = []
        if parts:
            self._touch(MESSAGES, message)
            delta = {"content": parts}
            self.emit(
                "thread.message.delta",
                {"id": message["id"], "object": "thread.message.delta", "delta": delta},
            )

    # -- steps -----------------------------------------------------------------------------

    def open_tool_step(self) -> None:
        step = objects.tool_calls_step(self.run, now())
        self._insert(RUN_STEPS, step, thread_id=self.run["thread_id"], run_id=self.run["id"])
        self.step = step
        self._emit_step("thread.run.step.created", step)
        self._emit_step("thread.run.step.in_progress", step)

    def tool_calls(self) -> list[dict[str, Any]]:
        assert self.step is not None and self.step["type"] == "tool_calls"
        calls: list[dict[str, Any]] = self.step["step_details"]["tool_calls"]
        return calls

    def add_tool_call(self, call: dict[str, Any], delta: dict[str, Any]) -> None:
        """Append a tool call to the open step and stream its first fragment."""
        self.tool_calls().append(call)
        self.touch_step(delta)

    def touch_step(self, delta: dict[str, Any] | None = None) -> None:
        """Mark the open step changed and stream ``delta`` (one tool-call fragment), if any."""
        assert self.step is not None
        self._touch(RUN_STEPS, self.step)
        if delta is not None:
            self.emit("thread.run.step.delta", objects.step_delta(self.step["id"], delta))

    def note_call(
        self,
        call_id: str,
        arguments: str,
        output: str | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        """Keep what the model asked a hosted tool and, where the step cannot say it, what it
        read back (the model sees both again in later turns), and the files the call saved
        (name → file id: the answer's ``sandbox:`` links to them are annotated)."""
        self.options.setdefault("tool_arguments", {})[call_id] = arguments
        if output is not None:
            self.options.setdefault("tool_outputs", {})[call_id] = output
        if files:
            self.options.setdefault("sandbox_files", {}).update(files)
        self._touch(RUNS, self.run)

    def end_step(
        self,
        status: str = "completed",
        usage: dict[str, int] | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        assert self.step is not None
        step, self.step = self.step, None
        self._move(RUN_STEPS, step, status)
        step["usage"], step["last_error"] = usage, error
        self._emit_step(f"thread.run.step.{status}", step)

    def _emit_step(self, name: str, step: dict[str, Any]) -> None:
        """Steps stream as the run's ``include`` asks (file_search passages or not)."""
        self.emit(name, objects.present_step(step, self.options.get("include") or []))

    # -- run outcomes ----------------------------------------------------------------------

    def add_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Add one model turn's usage to the run's running totals."""
        totals = self.options.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0})
        totals["prompt_tokens"] += prompt_tokens
        totals["completion_tokens"] += completion_tokens
        self._touch(RUNS, self.run)

    def used(self) -> tuple[int, int]:
        totals = self.options.get("usage", {})
        return totals.get("prompt_tokens", 0), totals.get("completion_tokens", 0)

    async def require_action(self, step_usage: dict[str, int]) -> None:
        """Wait for function outputs: the tool_calls step stays open, the lease is given up."""
        assert self.step is not None
        self.options["pending_step_usage"] = step_usage
        self.move_run("requires_action")
        self.run["required_action"] = objects.required_action(self.step)
        self.step = None
        await self.commit("thread.run.requires_action", self.run, release=True)

    async def submit_outputs(self, outputs: dict[str, str]) -> None:
        """Store function outputs on the waiting step, complete it, and queue the run again."""
        assert self.step is not None
        for call in self.tool_calls():
            if call["id"] in outputs:
                call["function"]["output"] = outputs[call["id"]]
        self.end_step("completed", self.options.pop("pending_step_usage", None))
        self.move_run("queued")
        self.run["required_action"] = None
        await self.commit("thread.run.queued", self.run, release=True)

    async def finish(
        self,
        status: str,
        error: dict[str, str] | None = None,
        incomplete: str | None = None,
    ) -> None:
        """End the run with ``status``, closing its open message and step to match."""
        if status == "cancelled" and self.run["status"] != "cancelling":
            self.emit("thread.run.cancelling", self.move_run("cancelling"))
        if self.message is not None:
            self.end_message(MESSAGE_END.get(status))
        if self.step is not None:  # includes a tool_calls step still waiting for outputs
            self.end_step(STEP_END.get(status, "completed"), None, _step_error(error))
        self.move_run(status)
        prompt, completion = self.used()
        self.run.update(
            required_action=None,
            last_error=error,
            usage=objects.usage(prompt, completion),
            incomplete_details={"reason": incomplete} if incomplete else None,
        )
        if status != "expired":
            self.run["expires_at"] = None
        await self.commit(f"thread.run.{status}", self.run, release=True)
        RUNS_FINISHED.labels(status).inc()


def _step_error(error: dict[str, str] | None) -> dict[str, str] | None:
    """Steps know only ``server_error`` and ``rate_limit_exceeded``."""
    if error is None or error["code"] in ("server_error", "rate_limit_exceeded"):
        return error
    return {"code": "server_error", "message": error["message"]}
