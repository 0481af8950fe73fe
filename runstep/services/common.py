"""Helpers every resource service shares: clocks, lookups that 404, and list pages."""

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from runstep.errors import NotFound
from runstep.protocol.common import ListQuery, list_object
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
