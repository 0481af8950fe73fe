"""Helpers every resource service shares: clocks, lookups that 404, and list pages."""

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.errors import NotFound
from runstep.protocol.common import ListQuery, deleted_object, list_object
from runstep.store.db import Database
from runstep.store.objects import ObjectTable, PageRequest


def now() -> int:
    """The current time as the API's integer Unix seconds."""
    return int(time.time())


async def get_or_404(
    conn: AsyncConnection,
    table: ObjectTable,
    kind: str,
    project_id: str,
    object_id: str,
    *,
    for_update: bool = False,
    **scope: Any,
) -> dict[str, Any]:
    """The object, or a 404 that does not reveal whether another project has it."""
    obj = await table.get(conn, project_id, object_id, for_update=for_update, **scope)
    if obj is None:
        raise NotFound.object(kind, object_id)
    return obj


async def update(
    db: Database,
    table: ObjectTable,
    kind: str,
    project_id: str,
    object_id: str,
    change: Callable[[dict[str, Any]], None],
    **scope: Any,
) -> dict[str, Any]:
    """Read an object under a row lock, apply ``change`` to it, and store it."""
    async with db.write() as conn:
        obj = await get_or_404(conn, table, kind, project_id, object_id, for_update=True, **scope)
        change(obj)
        await table.replace(conn, project_id, obj)
    return obj


async def delete(
    db: Database,
    table: ObjectTable,
    kind: str,
    deleted_as: str,
    project_id: str,
    object_id: str,
    **scope: Any,
) -> dict[str, Any]:
    """Delete one object; the response's ``object`` is ``deleted_as``."""
    async with db.write() as conn:
        if not await table.delete(conn, project_id, object_id, **scope):
            raise NotFound.object(kind, object_id)
    return deleted_object(object_id, deleted_as)


def set_metadata(request: Any) -> Callable[[dict[str, Any]], None]:
    """A change that applies a modify request's ``metadata``, when it gives one."""

    def change(obj: dict[str, Any]) -> None:
        if "metadata" in request.model_fields_set:
            obj["metadata"] = request.metadata or {}

    return change


async def retrieve(
    db: Database, table: ObjectTable, kind: str, project_id: str, object_id: str, **scope: Any
) -> dict[str, Any]:
    """Read one object in its own read transaction."""
    async with db.read() as conn:
        return await get_or_404(conn, table, kind, project_id, object_id, **scope)


async def list_page(
    db: Database, table: ObjectTable, project_id: str, query: ListQuery, **scope: Any
) -> dict[str, Any]:
    """A list response for one page of ``table`` within ``scope``."""
    request = PageRequest(
        limit=query.limit, order=query.order, after=query.after, before=query.before
    )
    async with db.read() as conn:
        page = await table.list(conn, project_id, request, **scope)
    return list_object(page.data, page.has_more)
