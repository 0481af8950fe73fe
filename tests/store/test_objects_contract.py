"""The contract of ``ObjectTable``, pinned on both stores (every test runs on SQLite and
PostgreSQL through the ``db`` fixture)."""

import asyncio
import json
from itertools import count
from typing import Any

import pytest
import sqlalchemy as sa

from runstep.store import tables
from runstep.store.collections import ASSISTANTS, MESSAGES, THREADS
from runstep.store.db import Database
from runstep.store.objects import ObjectTable, Order, Page, PageRequest

PROJECT = "proj_a"
OTHER_PROJECT = "proj_b"
BASE_TIME = 1_700_000_000
_serial = count()


def make_object(prefix: str, created_at: int = BASE_TIME, **fields: Any) -> dict[str, Any]:
    """A wire object whose id sorts *against* creation order (so id order can't fake pk order)."""
    return {"id": f"{prefix}_{999_999 - next(_serial):06d}", "created_at": created_at, **fields}


def canonical(obj: Any) -> str:
    """A text form that tells apart ``1``, ``1.0`` and ``True`` (dict equality does not)."""
    return json.dumps(obj, sort_keys=True)


async def insert(
    db: Database, table: ObjectTable, obj: dict[str, Any], project: str = PROJECT, **columns: Any
) -> dict[str, Any]:
    async with db.write() as conn:
        await table.insert(conn, project, obj, **columns)
    return obj


async def seed(
    db: Database, table: ObjectTable, n: int, project: str = PROJECT, **columns: Any
) -> list[str]:
    """Insert ``n`` objects in one transaction (two per second); their ids in insertion order."""
    objects = [make_object("obj", BASE_TIME + i // 2) for i in range(n)]
    async with db.write() as conn:
        for obj in objects:
            await table.insert(conn, project, obj, **columns)
    return [obj["id"] for obj in objects]


async def get(
    db: Database, table: ObjectTable, object_id: str, project: str = PROJECT, **scope: Any
) -> dict[str, Any] | None:
    async with db.read() as conn:
        return await table.get(conn, project, object_id, **scope)


async def list_page(
    db: Database, table: ObjectTable, request: PageRequest, project: str = PROJECT, **scope: Any
) -> Page:
    async with db.read() as conn:
        return await table.list(conn, project, request, **scope)


async def page_ids(
    db: Database, table: ObjectTable, request: PageRequest, project: str = PROJECT, **scope: Any
) -> tuple[list[str], bool]:
    page = await list_page(db, table, request, project, **scope)
    return [obj["id"] for obj in page.data], page.has_more


def expected_page(inserted: list[str], request: PageRequest) -> tuple[list[str], bool]:
    """The reference: ids in the requested order, the page next to the cursor, and has_more."""
    ordered = inserted if request.order == "asc" else inserted[::-1]
    if request.after is not None:
        window = ordered[ordered.index(request.after) + 1 :]
        return window[: request.limit], len(window) > request.limit
    if request.before is not None:
        window = ordered[: ordered.index(request.before)]
        return window[-request.limit :], len(window) > request.limit
    return ordered[: request.limit], len(ordered) > request.limit


# --- insert / get -------------------------------------------------------------------------


async def test_get_returns_the_exact_inserted_json(db: Database) -> None:
    """Nested dicts and lists, unicode, nulls and number types survive the round trip."""
    obj = make_object(
        "asst",
        object="assistant",
        name="Ünïcödé ✓ 日本語 עברית 👩‍🔬 e\u0301",
        description=None,
        instructions='quotes " and \\ backslashes\nnew lines\ttabs and a NUL \u0000 char',
        metadata={"": "", "k": "v", "ключ": "значение"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"a": [1, None, {}]}}}],
        nested={"a": {"b": {"c": {"d": [[], {}, [None, False, True]]}}}},
        numbers={
            "int": 7,
            "big": 2**53 + 1,
            "negative": -3,
            "float": 0.1,
            "tiny": 1e-7,
            "whole_float": 1.0,
            "zero": 0,
        },
    )
    await insert(db, ASSISTANTS, obj)

    stored = await get(db, ASSISTANTS, obj["id"])

    assert stored == obj
    assert canonical(stored) == canonical(obj)


async def test_get_of_unknown_id_returns_none(db: Database) -> None:
    assert await get(db, ASSISTANTS, "asst_missing") is None


async def test_get_of_another_projects_id_returns_none(db: Database) -> None:
    obj = await insert(db, ASSISTANTS, make_object("asst"))

    assert await get(db, ASSISTANTS, obj["id"], project=OTHER_PROJECT) is None
    assert await get(db, ASSISTANTS, obj["id"]) == obj


async def test_get_with_mismatched_scope_returns_none(db: Database) -> None:
    """A message is only found through the thread it was stored in."""
    message = await insert(db, MESSAGES, make_object("msg"), thread_id="thread_1")

    assert await get(db, MESSAGES, message["id"], thread_id="thread_2") is None
    assert await get(db, MESSAGES, message["id"], thread_id="thread_1") == message


async def test_get_for_update_inside_a_write_returns_the_object(db: Database) -> None:
    obj = await insert(db, THREADS, make_object("thread"))

    async with db.write() as conn:
        assert await THREADS.get(conn, PROJECT, obj["id"], for_update=True) == obj


async def test_tables_do_not_share_ids(db: Database) -> None:
    """An object is only visible through the table it was inserted into."""
    obj = await insert(db, THREADS, make_object("thread"))

    assert await get(db, ASSISTANTS, obj["id"]) is None


# --- replace ------------------------------------------------------------------------------


async def test_replace_overwrites_the_stored_json(db: Database) -> None:
    obj = await insert(db, ASSISTANTS, make_object("asst", name="old", metadata={"a": "1"}))
    updated = {**obj, "name": "new", "metadata": {}, "description": None}

    async with db.write() as conn:
        await ASSISTANTS.replace(conn, PROJECT, updated)

    assert canonical(await get(db, ASSISTANTS, obj["id"])) == canonical(updated)


async def test_replace_from_another_project_changes_nothing(db: Database) -> None:
    obj = await insert(db, ASSISTANTS, make_object("asst", name="mine"))

    async with db.write() as conn:
        await ASSISTANTS.replace(conn, OTHER_PROJECT, {**obj, "name": "hijacked"})

    assert await get(db, ASSISTANTS, obj["id"]) == obj
    assert await get(db, ASSISTANTS, obj["id"], project=OTHER_PROJECT) is None


async def test_replace_updates_indexed_columns(db: Database) -> None:
    message = await insert(db, MESSAGES, make_object("msg"), thread_id="thread_1")

    async with db.write() as conn:
        await MESSAGES.replace(conn, PROJECT, {**message, "run_id": "run_1"}, run_id="run_1")
    async with db.read() as conn:
        run_id = (
            await conn.execute(
                sa.select(tables.messages.c.run_id).where(tables.messages.c.id == message["id"])
            )
        ).scalar_one()

    assert run_id == "run_1"


# --- delete -------------------------------------------------------------------------------


async def delete(
    db: Database, table: ObjectTable, object_id: str, project: str = PROJECT, **scope: Any
) -> bool:
    async with db.write() as conn:
        return await table.delete(conn, project, object_id, **scope)


async def test_delete_returns_true_once_then_false(db: Database) -> None:
    obj = await insert(db, ASSISTANTS, make_object("asst"))

    assert await delete(db, ASSISTANTS, obj["id"]) is True
    assert await delete(db, ASSISTANTS, obj["id"]) is False
    assert await get(db, ASSISTANTS, obj["id"]) is None


async def test_delete_from_another_project_keeps_the_object(db: Database) -> None:
    obj = await insert(db, ASSISTANTS, make_object("asst"))

    assert await delete(db, ASSISTANTS, obj["id"], project=OTHER_PROJECT) is False
    assert await get(db, ASSISTANTS, obj["id"]) == obj


async def test_delete_with_mismatched_scope_keeps_the_object(db: Database) -> None:
    message = await insert(db, MESSAGES, make_object("msg"), thread_id="thread_1")

    assert await delete(db, MESSAGES, message["id"], thread_id="thread_2") is False
    assert await get(db, MESSAGES, message["id"], thread_id="thread_1") == message


async def test_delete_where_deletes_only_its_scope(db: Database) -> None:
    """Only the given thread's messages, and only in the given project, are deleted."""
    doomed = await seed(db, MESSAGES, 3, thread_id="thread_1")
    same_project = await seed(db, MESSAGES, 2, thread_id="thread_2")
    other_project = await seed(db, MESSAGES, 2, project=OTHER_PROJECT, thread_id="thread_1")

    async with db.write() as conn:
        await MESSAGES.delete_where(conn, PROJECT, thread_id="thread_1")

    everything = PageRequest(limit=100, order="asc")
    assert await page_ids(db, MESSAGES, everything, thread_id="thread_1") == ([], False)
    assert await page_ids(db, MESSAGES, everything, thread_id="thread_2") == (same_project, False)
    assert await page_ids(
        db, MESSAGES, everything, project=OTHER_PROJECT, thread_id="thread_1"
    ) == (other_project, False)
    assert all([await get(db, MESSAGES, i) is None for i in doomed])


# --- list ---------------------------------------------------------------------------------


async def test_list_defaults_to_newest_first(db: Database) -> None:
    inserted = await seed(db, ASSISTANTS, 5)

    assert await page_ids(db, ASSISTANTS, PageRequest()) == (inserted[::-1], False)


async def test_list_asc_is_insertion_order(db: Database) -> None:
    inserted = await seed(db, ASSISTANTS, 5)

    assert await page_ids(db, ASSISTANTS, PageRequest(order="asc")) == (inserted, False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_list_limit_sets_has_more(db: Database, order: Order) -> None:
    """``has_more`` is True exactly when objects remain beyond the limit."""
    inserted = await seed(db, ASSISTANTS, 4)

    for limit in (1, 3, 4, 5):
        request = PageRequest(limit=limit, order=order)
        assert await page_ids(db, ASSISTANTS, request) == expected_page(inserted, request), limit


async def test_list_of_an_empty_table_is_an_empty_page(db: Database) -> None:
    assert await page_ids(db, ASSISTANTS, PageRequest()) == ([], False)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("cursor", ["after", "before"])
async def test_list_cursor_pages_match_the_reference(
    db: Database, order: Order, cursor: str
) -> None:
    """Every cursor position and several limits give the reference ids and has_more."""
    inserted = await seed(db, ASSISTANTS, 7)
    await seed(db, ASSISTANTS, 3, project=OTHER_PROJECT)  # interleaved pks of another tenant
    inserted += await seed(db, ASSISTANTS, 2)

    for cursor_id in inserted:
        for limit in (1, 2, 3, 20):
            request = PageRequest(limit=limit, order=order, **{cursor: cursor_id})
            expected = expected_page(inserted, request)
            assert await page_ids(db, ASSISTANTS, request) == expected, request


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_list_paging_with_after_visits_every_object_once(db: Database, order: Order) -> None:
    inserted = await seed(db, ASSISTANTS, 11)
    seen: list[str] = []
    request = PageRequest(limit=3, order=order)

    while True:
        ids, has_more = await page_ids(db, ASSISTANTS, request)
        seen += ids
        if not has_more:
            break
        request = PageRequest(limit=3, order=order, after=ids[-1])

    assert seen == expected_page(inserted, PageRequest(limit=100, order=order))[0]


@pytest.mark.parametrize("cursor", ["after", "before"])
async def test_list_with_another_projects_cursor_is_empty(db: Database, cursor: str) -> None:
    await seed(db, ASSISTANTS, 3)
    foreign = await seed(db, ASSISTANTS, 1, project=OTHER_PROJECT)

    for order in ("asc", "desc"):
        request = PageRequest(order=order, **{cursor: foreign[0]})
        assert await page_ids(db, ASSISTANTS, request) == ([], False), request


@pytest.mark.parametrize("cursor", ["after", "before"])
async def test_list_with_an_unknown_cursor_is_empty(db: Database, cursor: str) -> None:
    await seed(db, ASSISTANTS, 3)

    for order in ("asc", "desc"):
        request = PageRequest(order=order, **{cursor: "asst_unknown"})
        assert await page_ids(db, ASSISTANTS, request) == ([], False), request


async def test_list_with_a_cursor_from_another_scope_is_empty(db: Database) -> None:
    await seed(db, MESSAGES, 3, thread_id="thread_1")
    elsewhere = await seed(db, MESSAGES, 1, thread_id="thread_2")

    request = PageRequest(after=elsewhere[0])
    assert await page_ids(db, MESSAGES, request, thread_id="thread_1") == ([], False)


async def test_list_is_scoped_to_project_and_thread(db: Database) -> None:
    mine = await seed(db, MESSAGES, 2, thread_id="thread_1")
    await seed(db, MESSAGES, 2, thread_id="thread_2")
    await seed(db, MESSAGES, 2, project=OTHER_PROJECT, thread_id="thread_1")
    mine += await seed(db, MESSAGES, 2, thread_id="thread_1")

    request = PageRequest(order="asc")
    assert await page_ids(db, MESSAGES, request, thread_id="thread_1") == (mine, False)


async def test_list_order_is_stable_within_one_created_at_second(db: Database) -> None:
    """Many objects created in the same second list in insertion order, across pages."""
    objects = [make_object("asst", BASE_TIME) for _ in range(40)]
    for obj in objects:  # separate transactions, like separate API calls
        await insert(db, ASSISTANTS, obj)
    inserted = [obj["id"] for obj in objects]
    assert inserted != sorted(inserted), "ids must not sort like insertion order"

    for order in ("asc", "desc"):
        full = PageRequest(limit=100, order=order)
        for _ in range(3):
            assert await page_ids(db, ASSISTANTS, full) == expected_page(inserted, full)
        middle = PageRequest(limit=7, order=order, after=expected_page(inserted, full)[0][9])
        assert await page_ids(db, ASSISTANTS, middle) == expected_page(inserted, middle)


# --- transactions -------------------------------------------------------------------------


class Boom(Exception):
    """Raised inside a write block to force a rollback."""


async def test_failed_write_rolls_back_and_frees_the_writer(db: Database) -> None:
    """Nothing of a raising write is kept, and the next write (same id) goes through."""
    first, second = make_object("asst"), make_object("asst")

    with pytest.raises(Boom):
        async with db.write() as conn:
            await ASSISTANTS.insert(conn, PROJECT, first)
            await ASSISTANTS.insert(conn, PROJECT, second)
            raise Boom

    assert await page_ids(db, ASSISTANTS, PageRequest()) == ([], False)
    await asyncio.wait_for(insert(db, ASSISTANTS, first), timeout=10)
    assert await get(db, ASSISTANTS, first["id"]) == first


async def test_concurrent_writers_all_land_with_distinct_pks(db: Database) -> None:
    objects = [make_object("asst", BASE_TIME) for _ in range(50)]

    await asyncio.wait_for(
        asyncio.gather(*(insert(db, ASSISTANTS, obj) for obj in objects)), timeout=60
    )

    async with db.read() as conn:
        rows = (await conn.execute(sa.select(tables.assistants.c.pk, tables.assistants.c.id))).all()
    pks = [pk for pk, _ in rows]
    assert len(set(pks)) == len(objects)
    assert {object_id for _, object_id in rows} == {obj["id"] for obj in objects}
    by_pk = [object_id for _, object_id in sorted(rows)]
    assert await page_ids(db, ASSISTANTS, PageRequest(limit=100, order="asc")) == (by_pk, False)
