"""Hosted tools inside runs: the calls the server executes itself (``file_search`` and
``code_interpreter``) instead of handing them to the client as ``requires_action``.

The model sees each hosted tool as a function (``context.hosted_tools``). Its call is recorded
as the tool's own call type; what the model asked (the arguments, which that call type has no
field for) and, for code, what it read back are kept in the run's options (``note_call``), so
later turns show the model the same conversation."""

import logging
from typing import Any

from runstep import ids
from runstep.config import Settings
from runstep.errors import NotFound
from runstep.files.storage import BlobStore
from runstep.providers.base import content_text
from runstep.runs import context, objects
from runstep.runs.recorder import Recorder
from runstep.services import files, vector_stores
from runstep.services.vector_stores import shared_embedder
from runstep.store.collections import ASSISTANTS, MESSAGES, THREADS
from runstep.store.db import Database
from runstep.tools.code_interpreter import InputFile, Sandbox, SandboxError
from runstep.tools.code_interpreter import model_tool as code_tool
from runstep.tools.file_search import retrieval
from runstep.tools.file_search import tool as file_search
from runstep.tools.file_search.embeddings import EmbeddingError

log = logging.getLogger("runstep.hosted")

OUTPUT_PURPOSE = "assistants_output"


class ToolFailed(Exception):
    """A hosted tool could not run; the run fails with this message."""


def new_call(kind: str, run: dict[str, Any], index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new call of hosted tool ``kind`` as its step records it, and its first step delta."""
    call_id = ids.new_id(ids.CALL)
    if kind == file_search.NAME:
        ranking = file_search.ranking_options(tool_settings(run, kind))
        call = objects.file_search_call(call_id, ranking)
        return call, {"index": index, "id": call_id, "type": kind, kind: {}}
    call = {"id": call_id, "type": kind, kind: {"input": "", "outputs": []}}
    return call, {"index": index, **call, kind: {"input": "", "outputs": []}}


def tool_settings(run: dict[str, Any], kind: str) -> dict[str, Any]:
    """The settings of the run's hosted tool ``kind`` (e.g. ``file_search.max_num_results``)."""
    tool = next((tool for tool in run["tools"] if tool["type"] == kind), {})
    settings: dict[str, Any] = tool.get(kind) or {}
    return settings


class HostedTools:
    """Executes hosted tool calls for one worker process."""

    def __init__(self, db: Database, blobs: BlobStore, settings: Settings) -> None:
        self.db, self.blobs, self.settings = db, blobs, settings
        self.sandbox = Sandbox.from_settings(settings)

    async def start(self) -> None:
        """Remove what code sessions of killed processes left on this machine's disk."""
        await self.sandbox.sweep_stale()

    async def close(self) -> None:
        await self.sandbox.close()

    async def execute(
        self, recorder: Recorder, arguments: dict[str, str], built: context.Context
    ) -> None:
        """Run the hosted calls of the open step (``arguments``: by call id), in step order."""
        source = len(built.searches)
        for position, call in enumerate(recorder.tool_calls()):
            if call["id"] not in arguments:
                continue
            if call["type"] == file_search.NAME:
                await self._search(recorder, call, arguments[call["id"]], built, source)
                source += 1
            else:
                await self._run_code(recorder, call, arguments[call["id"]], position)

    # -- file_search -----------------------------------------------------------------------

    async def _search(
        self,
        recorder: Recorder,
        call: dict[str, Any],
        arguments: str,
        built: context.Context,
        source: int,
    ) -> None:
        """Search the run's vector stores; the results go on the call, citable by marker."""
        project_id = recorder.project_id
        store_ids = await self._resource_ids(recorder, file_search.NAME, "vector_store_ids")
        stores = await retrieval.ready_stores(
            self.db, project_id, store_ids, self.settings.file_search_wait_seconds
        )
        queries = file_search.queries_in(arguments) or _last_user_text(built)
        settings = tool_settings(recorder.run, file_search.NAME)
        try:
            results = await file_search.search(
                self.db, shared_embedder(), project_id, stores, queries, settings
            )
        except EmbeddingError as error:
            raise ToolFailed(f"file_search failed: {error}") from error
        call[file_search.NAME]["results"] = results
        recorder.note_call(call["id"], arguments)
        for number, result in enumerate(results):
            recorder.citations[(source, number)] = result["file_id"]
        recorder.touch_step()
        if stores:
            await vector_stores.touch(self.db, project_id, stores)

    # -- code_interpreter ------------------------------------------------------------------

    async def _run_code(
        self, recorder: Recorder, call: dict[str, Any], arguments: str, position: int
    ) -> None:
        """Execute the code in the thread's sandbox session; logs and images become the call's
        outputs, written files become files the answer can link."""
        code = code_tool.code_in(arguments)
        details = call[code_tool.NAME]
        details["input"] = code
        inputs = await self._input_files(recorder)
        try:
            execution = await self.sandbox.execute(recorder.run["thread_id"], code, inputs)
        except SandboxError as error:
            raise ToolFailed(f"code_interpreter could not run the code: {error}") from error
        outputs: list[dict[str, Any]] = [{"type": "logs", "logs": execution.logs}]
        for number, image in enumerate(execution.images):
            obj = await self._save(recorder, f"{call['id']}-{number}.png", image)
            outputs.append({"type": "image", "image": {"file_id": obj["id"]}})
        saved = {
            output.name: (await self._save(recorder, output.name, output.content))["id"]
            for output in execution.files
        }
        details["outputs"] = outputs
        output = code_tool.model_output(
            execution.logs, execution.error, list(saved), len(execution.images)
        )
        recorder.note_call(call["id"], arguments, output, saved)
        indexed = [{"index": n, **o} for n, o in enumerate(outputs)]
        kind = code_tool.NAME
        recorder.touch_step(
            {"index": position, "type": kind, kind: {"outputs": indexed}},
        )

    async def _save(self, recorder: Recorder, name: str, data: bytes) -> dict[str, Any]:
        filename = name.rsplit("/", 1)[-1]
        return await files.create_from_bytes(
            self.db, self.blobs, recorder.project_id, filename, data, OUTPUT_PURPOSE
        )

    async def _input_files(self, recorder: Recorder) -> list[InputFile]:
        """The assistant's and thread's code_interpreter files, and the thread's message
        attachments meant for code_interpreter, by file name."""
        file_ids = await self._resource_ids(recorder, code_tool.NAME, "file_ids")
        async with self.db.read() as conn:
            messages = await MESSAGES.all(
                conn, recorder.project_id, thread_id=recorder.run["thread_id"]
            )
        for message in messages:
            for attachment in message.get("attachments") or []:
                if any(tool["type"] == code_tool.NAME for tool in attachment["tools"]):
                    file_ids.append(attachment["file_id"])
        inputs: dict[str, InputFile] = {}
        for file_id in dict.fromkeys(file_ids):
            try:
                obj, data = await files.read_all(self.db, self.blobs, recorder.project_id, file_id)
            except NotFound:
                log.warning("input file %s is gone; the code will not see it", file_id)
                continue
            inputs[obj["filename"]] = InputFile(obj["filename"], data)
        return list(inputs.values())

    # -- shared ------------------------------------------------------------------------------

    async def _resource_ids(self, recorder: Recorder, kind: str, key: str) -> list[str]:
        """The ids of tool resource ``kind.key`` of the run's assistant, then its thread."""
        run, project_id = recorder.run, recorder.project_id
        async with self.db.read() as conn:
            owners = [
                await ASSISTANTS.get(conn, project_id, run["assistant_id"]),
                await THREADS.get(conn, project_id, run["thread_id"]),
            ]
        found = [
            resource_id
            for owner in owners
            if owner is not None
            for resource_id in ((owner.get("tool_resources") or {}).get(kind) or {}).get(key, [])
        ]
        return list(dict.fromkeys(found))


def _last_user_text(built: context.Context) -> list[str]:
    """The last user message's text: what to search for when the model gave no query."""
    users = [m for m in built.request.messages if m["role"] == "user"]
    text = content_text(users[-1]["content"]) if users else ""
    return [text] if text.strip() else []
