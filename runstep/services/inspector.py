"""Read-only views of one project's assistants, threads and runs, for people: the web run
inspector (``api/inspector.py``) and the terminal view (``runstep runs show``) share them.

Each view is read in one snapshot transaction, so a run's steps and messages match the event
sequence number reported with them: a live view continues from that ``seq``."""

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.errors import NotFound
from runstep.runs.states import RUN_TERMINAL
from runstep.store import tables
from runstep.store.collections import ASSISTANTS, THREADS
from runstep.store.db import Database
from runstep.store.objects import PageRequest

MAX_PAGE = 100
# The conversation shown with a run: its own messages and at most this many before them.
CONTEXT_MESSAGES = 100
RUN_ENDS = ("completed_at", "failed_at", "cancelled_at")
STEP_ENDS = ("completed_at", "failed_at", "cancelled_at", "expired_at")


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read transaction that sees one state for all its statements (SQLite's read
    transactions always do; PostgreSQL needs REPEATABLE READ for it)."""
    async with db.read() as conn:
        if not db.is_sqlite:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


# -- durations and tokens ---------------------------------------------------------------------


def run_end(run: dict[str, Any], last_event_at: int | None = None) -> int | None:
    """When a finished run ended: its stamp, or (incomplete and expired runs have none) the
    time of its last event."""
    if run["status"] not in RUN_TERMINAL:
        return None
    stamps = [run[name] for name in RUN_ENDS if run.get(name)]
    return max(stamps) if stamps else last_event_at


def step_end(step: dict[str, Any]) -> int | None:
    stamps = [step[name] for name in STEP_ENDS if step.get(name)]
    return max(stamps) if stamps else None


def tokens(run: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, int] | None:
    """The run's usage; while it runs, the totals of its model turns so far."""
    if run.get("usage"):
        return dict(run["usage"])
    running = (options or {}).get("usage")
    if not running:
        return None
    prompt, completion = running.get("prompt_tokens", 0), running.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def run_summary(
    run: dict[str, Any], options: dict[str, Any] | None = None, last_event_at: int | None = None
) -> dict[str, Any]:
    """One line about a run: status, model, when, how long (seconds) and tokens."""
    start = run.get("started_at") or run["created_at"]
    end = run_end(run, last_event_at)
    return {
        "id": run["id"],
        "thread_id": run["thread_id"],
        "assistant_id": run["assistant_id"],
        "status": run["status"],
        "model": run["model"],
        "created_at": run["created_at"],
        "started_at": run.get("started_at"),
        "ended_at": end,
        "duration_seconds": end - start if end is not None else None,
        "usage": tokens(run, options),
        "last_error": run.get("last_error"),
        "incomplete_details": run.get("incomplete_details"),
    }


# -- lists ------------------------------------------------------------------------------------


def _page_request(limit: int, after: str | None) -> PageRequest:
    return PageRequest(limit=max(1, min(limit, MAX_PAGE)), order="desc", after=after or None)


async def assistants(
    db: Database, project_id: str, limit: int = 20, after: str | None = None
) -> dict[str, Any]:
    """The project's assistants, newest first."""
    async with db.read() as conn:
        page = await ASSISTANTS.list(conn, project_id, _page_request(limit, after))
    return {"data": page.data, "has_more": page.has_more}


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def thread_filters(query: str | None) -> list[sa.ColumnElement[bool]]:
    """``key=value``: that metadata pair exactly; other text: a substring of the id or of the
    metadata (keys and values), ignoring case."""
    query = (query or "").strip()
    if not query:
        return []
    data = tables.threads.c.data
    key, equals, value = query.partition("=")
    if equals and key.strip():
        return [data[("metadata", key.strip())].as_string() == value.strip()]
    metadata_text = sa.func.lower(sa.cast(data["metadata"], sa.Text))
    # Non-ASCII text may be stored \u-escaped, as JSON serializers do by default.
    escaped = json.dumps(query)[1:-1]
    patterns = {_like(query), _like(escaped)}
    clauses = [sa.func.lower(tables.threads.c.id).like(_like(query), escape="\\")]
    clauses += [metadata_text.like(pattern, escape="\\") for pattern in patterns]
    return [sa.or_(*clauses)]


async def threads(
    db: Database,
    project_id: str,
    query: str | None = None,
    limit: int = 20,
    after: str | None = None,
) -> dict[str, Any]:
    """The project's threads, most recent first, each with its run count and latest run."""
    async with snapshot(db) as conn:
        page = await THREADS.list(
            conn, project_id, _page_request(limit, after), filters=thread_filters(query)
        )
        latest = await _latest_runs(conn, project_id, [thread["id"] for thread in page.data])
    data = [{**thread, "runs": latest.get(thread["id"], {"count": 0})} for thread in page.data]
    return {"data": data, "has_more": page.has_more}


async def _latest_runs(
    conn: AsyncConnection, project_id: str, thread_ids: list[str]
) -> dict[str, dict[str, Any]]:
    if not thread_ids:
        return {}
    runs = tables.runs.c
    counts = (
        sa.select(runs.thread_id, sa.func.count().label("count"), sa.func.max(runs.pk).label("pk"))
        .where(runs.project_id == project_id, runs.thread_id.in_(thread_ids))
        .group_by(runs.thread_id)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(counts.c.thread_id, counts.c.count, runs.data).join(
            tables.runs, runs.pk == counts.c.pk
        )
    )
    return {row.thread_id: {"count": row.count, "latest": run_summary(row.data)} for row in rows}


async def runs_of_thread(
    db: Database, project_id: str, thread_id: str, limit: int = 20, after: str | None = None
) -> dict[str, Any]:
    """One page of a thread's runs, newest first, as summaries."""
    runs = tables.runs.c
    page = _page_request(limit, after)
    where = [runs.project_id == project_id, runs.thread_id == thread_id]
    if page.after:
        cursor = sa.select(runs.pk).where(runs.id == page.after, *where).scalar_subquery()
        where.append(runs.pk < cursor)
    query = sa.select(runs.data, runs.options).where(*where)
    query = query.order_by(runs.pk.desc()).limit(page.limit + 1)
    async with snapshot(db) as conn:
        await _thread(conn, project_id, thread_id)
        rows = list(await conn.execute(query))
        ended = await _last_event_times(conn, [row.data["id"] for row in rows])
    data = [run_summary(row.data, row.options, ended.get(row.data["id"])) for row in rows]
    return {"data": data[: page.limit], "has_more": len(data) > page.limit}


async def _last_event_times(conn: AsyncConnection, run_ids: list[str]) -> dict[str, int]:
    if not run_ids:
        return {}
    events = tables.run_events.c
    rows = await conn.execute(
        sa.select(events.run_id, sa.func.max(events.created_at))
        .where(events.run_id.in_(run_ids))
        .group_by(events.run_id)
    )
    return {run_id: int(at) for run_id, at in rows}


# -- one thread, one run ----------------------------------------------------------------------


async def _thread(conn: AsyncConnection, project_id: str, thread_id: str) -> dict[str, Any]:
    thread = await THREADS.get(conn, project_id, thread_id)
    if thread is None:
        raise NotFound.object("thread", thread_id)
    return thread


async def thread_view(db: Database, project_id: str, thread_id: str) -> dict[str, Any]:
    """A thread, its latest messages (oldest first), its latest runs, and the names of the
    files its messages show or cite."""
    messages = tables.messages.c
    async with snapshot(db) as conn:
        thread = await _thread(conn, project_id, thread_id)
        rows = await conn.execute(
            sa.select(messages.data)
            .where(messages.project_id == project_id, messages.thread_id == thread_id)
            .order_by(messages.pk.desc())
            .limit(CONTEXT_MESSAGES + 1)
        )
        recent = list(rows.scalars())
        messages = list(reversed(recent[:CONTEXT_MESSAGES]))
        files = await _file_names(conn, project_id, _file_ids(messages, []))
    runs = await runs_of_thread(db, project_id, thread_id)
    return {
        "thread": thread,
        "messages": messages,
        "earlier_messages": len(recent) > CONTEXT_MESSAGES,
        "runs": runs,
        "files": files,
    }


async def run_project(db: Database, run_id: str) -> str:
    """The project a run belongs to (for the terminal view, which reads any project)."""
    return await _project_of(db, tables.runs, "run", run_id)


async def thread_project(db: Database, thread_id: str) -> str:
    return await _project_of(db, tables.threads, "thread", thread_id)


async def _project_of(db: Database, table: sa.Table, kind: str, object_id: str) -> str:
    async with db.read() as conn:
        project = (
            await conn.execute(sa.select(table.c.project_id).where(table.c.id == object_id))
        ).scalar_one_or_none()
    if project is None:
        raise NotFound.object(kind, object_id)
    return str(project)


async def vector_store_project(db: Database, store_id: str) -> str:
    return await _project_of(db, tables.vector_stores, "vector store", store_id)


async def vector_store_view(db: Database, project_id: str, store_id: str) -> dict[str, Any]:
    """A vector store, its files (oldest first, with their names) and how many of them are
    in each ingestion status now."""
    store_files = tables.vector_store_files.c
    async with snapshot(db) as conn:
        store = await _all(conn, tables.vector_stores, project_id, id=store_id)
        if not store:
            raise NotFound.object("vector store", store_id)
        rows = await conn.execute(
            sa.select(store_files.data)
            .where(store_files.project_id == project_id, store_files.vector_store_id == store_id)
            .order_by(store_files.pk)
        )
        files = list(rows.scalars())
        names = await _file_names(conn, project_id, {f["id"] for f in files})
    counts = dict.fromkeys(("in_progress", "completed", "failed", "cancelled"), 0)
    for item in files:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return {
        "vector_store": store[0],
        "files": [{**item, "filename": names.get(item["id"])} for item in files],
        "file_counts": {**counts, "total": len(files)},
    }


async def run_state(db: Database, project_id: str, run_id: str) -> tuple[str, int]:
    """The run's status and the seq of its newest event (404 outside the project)."""
    runs = tables.runs.c
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(runs.status, runs.last_seq).where(
                    runs.id == run_id, runs.project_id == project_id
                )
            )
        ).first()
    if row is None:
        raise NotFound.object("run", run_id)
    return row.status, int(row.last_seq)


async def run_view(db: Database, project_id: str, run_id: str) -> dict[str, Any]:
    """Everything about one run as of event ``seq``: the run, its steps (file_search passages
    included), the conversation up to it, its status history and the names of cited files."""
    async with snapshot(db) as conn:
        row = await _run_row(conn, project_id, run_id)
        run, options = row.data, row.options
        steps = await _all(conn, tables.run_steps, project_id, run_id=run_id)
        history = await _history(conn, run_id)
        messages = await _conversation(conn, project_id, run, history)
        files = await _file_names(conn, project_id, _file_ids(messages, steps))
    ended = history[-1]["created_at"] if history else None
    return {
        "seq": int(row.last_seq),
        "run": run,
        "summary": run_summary(run, options, ended),
        "steps": steps,
        "messages": messages,
        "history": history,
        "tool_arguments": options.get("tool_arguments") or {},
        "files": files,
    }


async def step_view(db: Database, project_id: str, run_id: str, step_id: str) -> dict[str, Any]:
    """One step of a run, file_search passages included."""
    async with db.read() as conn:
        found = await _all(conn, tables.run_steps, project_id, run_id=run_id, id=step_id)
    if not found:
        raise NotFound.object("run step", step_id)
    return found[0]


async def _run_row(conn: AsyncConnection, project_id: str, run_id: str) -> sa.Row[Any]:
    runs = tables.runs.c
    row = (
        await conn.execute(
            sa.select(runs.data, runs.options, runs.last_seq).where(
                runs.id == run_id, runs.project_id == project_id
            )
        )
    ).first()
    if row is None:
        raise NotFound.object("run", run_id)
    return row


async def _all(
    conn: AsyncConnection, table: sa.Table, project_id: str, **scope: Any
) -> list[dict[str, Any]]:
    where = [table.c.project_id == project_id, *(table.c[k] == v for k, v in scope.items())]
    rows = await conn.execute(sa.select(table.c.data).where(*where).order_by(table.c.pk))
    return list(rows.scalars())


async def _history(conn: AsyncConnection, run_id: str) -> list[dict[str, Any]]:
    """The run's status events (deltas left out), oldest first: when it was queued, started,
    waited for tool outputs, and ended."""
    events = tables.run_events.c
    rows = await conn.execute(
        sa.select(events.seq, events.event, events.created_at)
        .where(events.run_id == run_id, events.event.like("thread.run.%"))
        .where(events.event.not_like("thread.run.step.%"))
        .order_by(events.seq)
    )
    return [{"seq": seq, "event": event, "created_at": at} for seq, event, at in rows]


async def _conversation(
    conn: AsyncConnection, project_id: str, run: dict[str, Any], history: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The run's messages and up to ``CONTEXT_MESSAGES`` of the thread's before them (a
    finished run's page leaves out what later runs added)."""
    messages = tables.messages.c
    where = [messages.project_id == project_id, messages.thread_id == run["thread_id"]]
    first = (
        await conn.execute(
            sa.select(sa.func.min(messages.pk)).where(*where, messages.run_id == run["id"])
        )
    ).scalar_one_or_none()
    if first is not None:
        before = [messages.pk < first]
    else:  # no message of its own (yet): what the thread held when the run was created
        before = [messages.created_at <= run["created_at"]]
    earlier = await conn.execute(
        sa.select(messages.data)
        .where(*where, *before, sa.or_(messages.run_id.is_(None), messages.run_id != run["id"]))
        .order_by(messages.pk.desc())
        .limit(CONTEXT_MESSAGES)
    )
    context = list(reversed(list(earlier.scalars())))
    own = [] if first is None else await _all(conn, tables.messages, project_id, run_id=run["id"])
    return context + own


def _file_ids(messages: Iterable[dict[str, Any]], steps: Iterable[dict[str, Any]]) -> set[str]:
    """Files the page names: cited, shown as images, attached, or found by file_search."""
    found: set[str] = set()
    for message in messages:
        found.update(a["file_id"] for a in message.get("attachments") or [])
        for part in message.get("content") or []:
            if part.get("type") == "image_file":
                found.add(part["image_file"]["file_id"])
            for note in (part.get("text") or {}).get("annotations") or []:
                target = note.get("file_citation") or note.get("file_path") or {}
                if target.get("file_id"):
                    found.add(target["file_id"])
    for step in steps:
        for call in step["step_details"].get("tool_calls") or []:
            for output in (call.get("code_interpreter") or {}).get("outputs") or []:
                if output.get("type") == "image":
                    found.add(output["image"]["file_id"])
    return found


async def _file_names(conn: AsyncConnection, project_id: str, file_ids: set[str]) -> dict[str, str]:
    if not file_ids:
        return {}
    files = tables.files.c
    rows = await conn.execute(
        sa.select(files.id, files.filename).where(
            files.project_id == project_id, files.id.in_(sorted(file_ids))
        )
    )
    return {file_id: name for file_id, name in rows}
