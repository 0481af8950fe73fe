"""The terminal view of runs and threads: ``runstep runs show|tail`` and ``runstep threads show``.

They read the database the server uses (``RUNSTEP_DATABASE_URL`` / ``RUNSTEP_DATA_DIR``, like
``runstep keys``), so they need no API key and see every project: an operator's tool, run
where the server runs. ``--json`` prints the same data for scripts."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from runstep.config import Settings
from runstep.errors import NotFound
from runstep.runs.bus import LocalBus
from runstep.runs.states import RUN_TERMINAL
from runstep.services import inspector
from runstep.store import migrate
from runstep.store.db import Database

runs_app = typer.Typer(help="Look at runs: their steps, timings and tokens, or follow one live.")
threads_app = typer.Typer(help="Look at threads: their messages and runs.")
stores_app = typer.Typer(help="Look at vector stores: their files and how ingestion goes.")
console = Console(highlight=False)
T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
POLL_SECONDS = 0.2
STYLE = {
    "completed": "green",
    "in_progress": "blue",
    "queued": "blue",
    "requires_action": "yellow",
    "failed": "red",
    "expired": "red",
    "incomplete": "dark_orange",
    "cancelled": "bright_black",
    "cancelling": "bright_black",
}


# -- the database -----------------------------------------------------------------------------


def _read(action: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``action`` on the configured database (never created or migrated here); a missing
    object or database ends the command with a message."""
    settings = Settings.from_env()
    url = settings.resolved_database_url
    if settings.is_sqlite:
        path = sa.make_url(url).database
        if path and path != ":memory:" and not Path(path).exists():
            _fail(f"No Runstep database at {path}: start `runstep serve` or set RUNSTEP_DATA_DIR.")

    async def main() -> T:
        db = Database(url)
        try:
            if await migrate.current_revision(db.engine) is None:
                _fail("The database has no Runstep schema yet: run `runstep migrate`.")
            return await action(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except NotFound as error:
        _fail(error.message)


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(code=1)


async def _run_view(db: Database, run_id: str) -> dict[str, Any]:
    return await inspector.run_view(db, await inspector.run_project(db, run_id), run_id)


async def _thread_view(db: Database, thread_id: str) -> dict[str, Any]:
    project = await inspector.thread_project(db, thread_id)
    view = await inspector.thread_view(db, project, thread_id)
    view["runs"] = await inspector.runs_of_thread(db, project, thread_id, limit=inspector.MAX_PAGE)
    return view


async def _store_view(db: Database, store_id: str) -> dict[str, Any]:
    project = await inspector.vector_store_project(db, store_id)
    return await inspector.vector_store_view(db, project, store_id)


def _show(
    view: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], Iterable[Any]]
) -> None:
    """Print ``view`` as indented JSON, or as the rich blocks ``render`` makes of it."""
    if as_json:
        typer.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    for block in render(view):
        console.print(block)


# -- formatting -------------------------------------------------------------------------------


def _when(seconds: int | None) -> str:
    if not seconds:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    """A whole-seconds duration from the API's timestamps (0 means under a second)."""
    if value is None:
        return "—"
    if value < 1:
        return "<1 s"
    return f"{value:.0f} s" if value < 60 else f"{int(value // 60)} min {int(value % 60)} s"


def _tokens(usage: dict[str, int] | None) -> str:
    if not usage:
        return "—"
    return (
        f"{usage['total_tokens']} tokens ({usage['prompt_tokens']} prompt + "
        f"{usage['completion_tokens']} completion)"
    )


def _status(status: str) -> Text:
    return Text(status, style=STYLE.get(status, ""))


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _bar(start: float, end: float | None, origin: float, span: float, width: int = 24) -> str:
    """A step's place on the run's time axis, drawn in ``width`` cells."""
    first = int((start - origin) / span * width)
    last = int(((end if end is not None else origin + span) - origin) / span * width)
    first = min(max(first, 0), width - 1)
    last = min(max(last, first + 1), width)
    return "▕" + " " * first + "█" * (last - first) + " " * (width - last) + "▏"


def message_text(message: dict[str, Any]) -> str:
    parts = []
    for part in message.get("content") or []:
        if part.get("type") == "text":
            parts.append(part["text"]["value"])
        elif part.get("type") == "image_file":
            parts.append(f"[image {part['image_file']['file_id']}]")
        elif part.get("type") == "image_url":
            parts.append(f"[image {part['image_url']['url'][:60]}]")
    return "\n".join(parts)


def _call_node(parent: Tree, call: dict[str, Any], arguments: dict[str, str]) -> None:
    kind = call.get("type")
    if kind == "function":
        function = call["function"]
        output = function.get("output")
        shown = "(no output yet)" if output is None else _short(output, 120)
        parent.add(
            Text.assemble(
                ("function ", "bold"),
                f"{function['name']}({_short(function['arguments'], 120)}) → ",
                (shown, "italic" if output is None else ""),
            )
        )
    elif kind == "file_search":
        search = call.get("file_search") or {}
        results = search.get("results") or []
        query = _query(arguments.get(call["id"]))
        node = parent.add(
            Text.assemble(
                ("file_search ", "bold"),
                f"{query!r} → " if query else "",
                f"{len(results)} results",
            )
        )
        for result in results:
            passage = " ".join(c.get("text", "") for c in result.get("content") or [])
            line = f"{result['score']:.3f}  {result.get('file_name') or ''} ({result['file_id']})"
            node.add(Text(line + (f": {_short(passage, 100)}" if passage else "")))
    elif kind == "code_interpreter":
        code = call.get("code_interpreter") or {}
        node = parent.add(
            Text.assemble(("code_interpreter ", "bold"), _short(code.get("input", "")))
        )
        for output in code.get("outputs") or []:
            if output.get("type") == "logs":
                node.add(Text(f"logs: {_short(output['logs'])}"))
            elif output.get("type") == "image":
                node.add(Text(f"image {output['image']['file_id']}"))
    else:
        parent.add(Text(json.dumps(call)[:160]))


def _query(arguments: str | None) -> str | None:
    if not arguments:
        return None
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        return parsed.get("query") or " · ".join(parsed.get("queries") or []) or arguments
    return arguments


def run_tree(view: dict[str, Any]) -> Tree:
    """A run as a tree: the run with its timings and tokens, then each step, drawn to scale."""
    run, summary = view["run"], view["summary"]
    head = Text.assemble(
        ("Run ", "bold"),
        (run["id"], "bold"),
        "  ",
        _status(run["status"]),
        f"  model {run['model']} · thread {run['thread_id']} · assistant {run['assistant_id']}",
    )
    tree = Tree(head)
    started = run.get("started_at")
    queued = started - run["created_at"] if started else None
    tree.add(
        Text(
            f"created {_when(run['created_at'])} · queued {_seconds(queued)} · "
            f"ran {_seconds(summary['duration_seconds'])} · {_tokens(summary['usage'])}"
        )
    )
    if run.get("last_error"):
        error = run["last_error"]
        tree.add(Text(f"last_error {error['code']}: {error['message']}", style="bold red"))
    if run.get("incomplete_details"):
        reason = run["incomplete_details"].get("reason")
        tree.add(Text(f"incomplete: {reason}", style="bold dark_orange"))
    origin = run["created_at"]
    ends = [inspector.step_end(step) or time.time() for step in view["steps"]]
    span = max([summary["ended_at"] or time.time(), *ends]) - origin or 1
    messages = {m["id"]: m for m in view["messages"]}
    for number, step in enumerate(view["steps"], start=1):
        _step_node(tree, number, step, origin, span, messages, view["tool_arguments"])
    return tree


def _step_node(
    tree: Tree,
    number: int,
    step: dict[str, Any],
    origin: int,
    span: float,
    messages: dict[str, dict[str, Any]],
    arguments: dict[str, str],
) -> None:
    end = inspector.step_end(step)
    took = _seconds(end - step["created_at"]) if end is not None else "running"
    usage = step.get("usage")
    node = tree.add(
        Text.assemble(
            f"{number}. ",
            (step["type"], "bold"),
            "  ",
            _status(step["status"]),
            f"  {_bar(step['created_at'], end, origin, span)} +{step['created_at'] - origin} s"
            f" → {f'+{end - origin} s' if end is not None else 'now'} ({took})",
            f" · {usage['total_tokens']} tokens" if usage else "",
            (f"  {step['id']}", "bright_black"),
        )
    )
    if step.get("last_error"):
        error = step["last_error"]
        node.add(Text(f"{error['code']}: {error['message']}", style="bold red"))
    if step["type"] == "message_creation":
        message_id = step["step_details"]["message_creation"]["message_id"]
        message = messages.get(message_id)
        text = _short(message_text(message)) if message else ""
        node.add(Text(f"message {message_id}: {text}"))
        return
    for call in step["step_details"].get("tool_calls") or []:
        _call_node(node, call, arguments)


def thread_report(view: dict[str, Any]) -> list[Any]:
    thread = view["thread"]
    pairs = ", ".join(f"{k}={v}" for k, v in (thread.get("metadata") or {}).items())
    header = Text.assemble(
        ("Thread ", "bold"),
        (thread["id"], "bold"),
        f"  created {_when(thread['created_at'])}",
        f" · metadata {pairs}" if pairs else "",
    )
    runs = Table("run", "status", "model", "created", "duration", "tokens", title="Runs")
    for run in view["runs"]["data"]:
        usage = run["usage"]
        runs.add_row(
            run["id"],
            _status(run["status"]),
            run["model"],
            _when(run["created_at"]),
            _seconds(run["duration_seconds"]),
            str(usage["total_tokens"]) if usage else "—",
        )
    conversation = Tree(Text("Messages (oldest first)", style="bold"))
    for message in view["messages"]:
        who = message["role"] + (f" ({message['run_id']})" if message.get("run_id") else "")
        conversation.add(Text.assemble((who, "bold"), ": ", _short(message_text(message), 300)))
    return [header, runs, conversation]


def store_report(view: dict[str, Any]) -> list[Any]:
    store, counts = view["vector_store"], view["file_counts"]
    header = Text.assemble(
        ("Vector store ", "bold"),
        (store["id"], "bold"),
        f" {store.get('name') or ''}  ",
        _status(store["status"]),
        f"  {counts['completed']}/{counts['total']} files ingested",
        f", {counts['failed']} failed" if counts["failed"] else "",
        f" · {store.get('usage_bytes', 0)} bytes",
    )
    files = Table("file", "name", "status", "bytes", "error", title="Files")
    for item in view["files"]:
        error = item.get("last_error") or {}
        files.add_row(
            item["id"],
            item.get("filename") or "",
            _status(item["status"]),
            str(item.get("usage_bytes", 0)),
            f"{error['code']}: {error['message']}" if error else "",
        )
    return [header, files]


def _watch_ingestion(store_id: str) -> dict[str, Any]:
    """Poll the store until no file is in progress, drawing a progress bar meanwhile."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

    async def watch(db: Database) -> dict[str, Any]:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"Ingesting files into {store_id}", total=None)
            while True:
                view = await _store_view(db, store_id)
                counts = view["file_counts"]
                settled = counts["total"] - counts["in_progress"]
                progress.update(task, total=counts["total"], completed=settled)
                if not counts["in_progress"]:
                    return view
                await asyncio.sleep(POLL_SECONDS * 2)

    return _read(watch)


# -- following a run ----------------------------------------------------------------------------


class PollingBus(LocalBus):
    """Wake-ups from the server do not reach this process: check the log every
    ``POLL_SECONDS`` instead."""

    def signal(self, run_id: str) -> asyncio.Event:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(POLL_SECONDS, event.set)
        return event


class EventPrinter:
    """Prints a run's events as they come: status changes, steps with their durations, tool
    calls, and message text as it streams. A step seen live from start to end (its events
    after seq ``live_after``) is timed here, finer than the API's whole seconds."""

    def __init__(self, out: Console, live_after: int) -> None:
        self.out = out
        self.live_after = live_after
        self.started: dict[str, float] = {}
        self.streamed: set[str] = set()  # messages whose text arrived as deltas
        self.open_line = False

    def _line(self, text: Text | str) -> None:
        if self.open_line:
            self.out.print()
            self.open_line = False
        self.out.print(text)

    def __call__(self, seq: int, name: str, data: dict[str, Any]) -> None:
        if name == "thread.message.delta":
            self._text(data)
        elif name.startswith("thread.run.step."):
            self._step(seq, name, data)
        elif name.startswith("thread.message."):
            self._message(name, data)
        elif name.startswith("thread.run."):
            self._run(name, data)

    def _run(self, name: str, run: dict[str, Any]) -> None:
        moved = name.removeprefix("thread.run.")
        line = Text.assemble(("run ", "bold"), _status(moved))
        if run["status"] == "requires_action":
            calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
            wanted = (f"{c['function']['name']}({c['function']['arguments']})" for c in calls)
            line.append(": waiting for tool outputs: " + ", ".join(wanted))
        if run.get("usage"):
            line.append(f" · {_tokens(run['usage'])}")
        self._line(line)
        if run.get("last_error"):
            error = run["last_error"]
            self._line(Text(f"last_error {error['code']}: {error['message']}", style="bold red"))
        if run.get("incomplete_details"):
            reason = run["incomplete_details"].get("reason")
            self._line(Text(f"incomplete: {reason}", style="bold dark_orange"))

    def _step(self, seq: int, name: str, step: dict[str, Any]) -> None:
        if name == "thread.run.step.delta":
            return  # tool calls are printed whole when their step ends or waits
        status = step["status"]
        if status == "in_progress":
            if name.endswith(".created"):
                if seq > self.live_after:
                    self.started[step["id"]] = time.monotonic()
                self._line(Text.assemble("step ", (step["type"], "bold"), f" {step['id']} started"))
            return
        seen = self.started.pop(step["id"], None)
        end = inspector.step_end(step)
        if seen is not None:
            took = f" in {time.monotonic() - seen:.2f} s"
        else:
            took = f" in {_seconds(end - step['created_at'])}" if end is not None else ""
        usage = step.get("usage")
        line = Text.assemble("step ", (step["type"], "bold"), " ", _status(status), took)
        if usage:
            line.append(f" · {usage['total_tokens']} tokens")
        self._line(line)
        tree = Tree("", hide_root=True)
        for call in step["step_details"].get("tool_calls") or []:
            _call_node(tree, call, {})
        if tree.children:
            self.out.print(tree)
        if step.get("last_error"):
            error = step["last_error"]
            self._line(Text(f"{error['code']}: {error['message']}", style="bold red"))

    def _message(self, name: str, message: dict[str, Any]) -> None:
        if name.endswith(".created") and message["role"] == "assistant":
            if self.open_line:
                self.out.print()
            self.out.print(Text("assistant: ", style="bold"), end="")
            self.open_line = True
        elif message["status"] != "in_progress":
            if message["id"] not in self.streamed:  # its deltas were not in the log
                self.out.print(message_text(message), end="", markup=False)
                self.open_line = True
            if message["status"] == "incomplete":
                reason = (message.get("incomplete_details") or {}).get("reason")
                self._line(Text(f"(message incomplete: {reason})", style="dark_orange"))
            elif self.open_line:
                self.out.print()
                self.open_line = False

    def _text(self, delta: dict[str, Any]) -> None:
        self.streamed.add(delta["id"])
        for part in delta["delta"].get("content") or []:
            if part.get("type") == "text":
                self.out.print(part["text"].get("value", ""), end="", markup=False)
                self.open_line = True


async def _follow(
    db: Database, run_id: str, after: int, started: Callable[[int], None]
) -> AsyncIterator[tuple[int, str, str]]:
    """The run's events after ``after`` until it ends; ``started`` learns the seq of the
    newest event already recorded when following began."""
    from runstep.api.inspector import follow

    project = await inspector.run_project(db, run_id)
    status, last_seq = await inspector.run_state(db, project, run_id)
    started(last_seq)
    if status in RUN_TERMINAL and after >= last_seq:
        return
    async for event in follow(db, PollingBus(), run_id, after):
        yield event.seq, event.event, event.data


# -- commands -----------------------------------------------------------------------------------


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run id (run_...).")],
    as_json: JsonOption = False,
) -> None:
    """A run's steps as a tree: timings (drawn to scale), tokens, tool calls, errors."""
    _show(_read(lambda db: _run_view(db, run_id)), as_json, lambda view: [run_tree(view)])


@runs_app.command("tail")
def runs_tail(
    run_id: Annotated[str, typer.Argument(help="The run id (run_...).")],
    after: Annotated[
        int, typer.Option(help="Start after this event seq (0: the whole log so far).")
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per event: seq, event, data.")
    ] = False,
) -> None:
    """Follow a run live: its events from the log, then new ones until the run ends (through
    waits for tool outputs). A finished run's log is printed and the command ends."""
    printer = EventPrinter(console, live_after=0)

    def started(last_seq: int) -> None:
        printer.live_after = last_seq

    async def follow(db: Database) -> None:
        async for seq, name, data in _follow(db, run_id, after, started):
            if as_json:
                typer.echo(json.dumps({"seq": seq, "event": name, "data": json.loads(data)}))
            else:
                printer(seq, name, json.loads(data))

    try:
        _read(follow)
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None


@stores_app.command("show")
def vector_stores_show(
    store_id: Annotated[str, typer.Argument(help="The vector store id (vs_...).")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Show ingestion progress until no file is pending.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """A vector store's files and their ingestion status (completed, failed with the reason,
    or still in progress)."""
    try:
        view = _watch_ingestion(store_id) if wait else _read(lambda db: _store_view(db, store_id))
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    _show(view, as_json, store_report)


@threads_app.command("show")
def threads_show(
    thread_id: Annotated[str, typer.Argument(help="The thread id (thread_...).")],
    as_json: JsonOption = False,
) -> None:
    """A thread: its metadata, its runs (status, model, duration, tokens) and messages."""
    _show(_read(lambda db: _thread_view(db, thread_id)), as_json, thread_report)
