"""Generic queries over an object table: insert, get, replace, delete and cursor pages."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class PageRequest:
    """A list request: ``limit``, ``order`` and the ``after``/``before`` object-id cursors."""

    limit: int = 20
    order: Order = "desc"
    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page:
    data: list[dict[str, Any]]
    has_more: bool


class ObjectTable:
    """The queries for one table built by ``tables._object_table``, always scoped by project."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table

    def _where(self, project_id: str, scope: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
        clauses = [self.table.c.project_id == project_id]
        clauses += [self.table.c[name] == value for name, value in scope.items()]
        return clauses

    async def insert(
        self, conn: AsyncConnection, project_id: str, obj: dict[str, Any], **columns: Any
    ) -> None:
        """Store a new wire object; ``columns`` fill the table's extra indexed columns."""
        await conn.execute(
            self.table.insert().values(
                id=obj["id"],
                project_id=project_id,
                created_at=obj["created_at"],
                data=obj,
                **columns,
            )
        )

    async def get(
        self,
        conn: AsyncConnection,
        project_id: str,
        object_id: str,
        *,
        for_update: bool = False,
        **scope: Any,
    ) -> dict[str, Any] | None:
        """The wire object, or None if it does not exist in this project and scope."""
        query = sa.select(self.table.c.data).where(
            self.table.c.id == object_id, *self._where(project_id, scope)
        )
        if for_update:
            query = query.with_for_update()
        data: dict[str, Any] | None = (await conn.execute(query)).scalar_one_or_none()
        return data

    async def replace(
        self, conn: AsyncConnection, project_id: str, obj: dict[str, Any], **columns: Any
    ) -> None:
        """Overwrite a stored object (and any indexed columns given)."""
        await conn.execute(
            self.table.update()
            .where(self.table.c.id == obj["id"], self.table.c.project_id == project_id)
            .values(data=obj, **columns)
        )

    async def delete(
        self, conn: AsyncConnection, project_id: str, object_id: str, **scope: Any
    ) -> bool:
        """Delete one object; True if it existed."""
        result = await conn.execute(
            self.table.delete().where(self.table.c.id == object_id, *self._where(project_id, scope))
        )
        return bool(result.rowcount)

    async def delete_where(self, conn: AsyncConnection, project_id: str, **scope: Any) -> None:
        """Delete every object of this project matching ``scope``."""
        await conn.execute(self.table.delete().where(*self._where(project_id, scope)))

    async def all(
        self, conn: AsyncConnection, project_id: str, **scope: Any
    ) -> list[dict[str, Any]]:
        """Every object in ``scope``, oldest first."""
        query = (
            sa.select(self.table.c.data)
            .where(*self._where(project_id, scope))
            .order_by(self.table.c.pk)
        )
        return list((await conn.execute(query)).scalars())

    async def list(
        self,
        conn: AsyncConnection,
        project_id: str,
        page: PageRequest,
        *,
        filters: Sequence[sa.ColumnElement[bool]] = (),
        **scope: Any,
    ) -> Page:
        """One page in insertion order (``pk``), after or before a cursor object. ``filters``
        narrow the page, not the cursor lookup (a cursor object may have left the page)."""
        where = self._where(project_id, scope)
        pk = self.table.c.pk
        cursor_id = page.after or page.before
        backwards = page.after is None and page.before is not None
        descending = (page.order == "desc") != backwards  # walk back from `before`, then flip
        if cursor_id is not None:
            cursor = sa.select(pk).where(self.table.c.id == cursor_id, *where).scalar_subquery()
            where.append(pk < cursor if descending else pk > cursor)
        where.extend(filters)
        query = (
            sa.select(self.table.c.data)
            .where(*where)
            .order_by(pk.desc() if descending else pk.asc())
            .limit(page.limit + 1)
        )
        rows = list((await conn.execute(query)).scalars())
        has_more = len(rows) > page.limit
        rows = rows[: page.limit]
        if backwards:
            rows.reverse()
        return Page(data=rows, has_more=has_more)
