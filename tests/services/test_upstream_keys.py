"""Projects' own upstream keys: sealed at rest, bound to their project and provider, opened
by any listed secret, never listed."""

import pytest
import sqlalchemy as sa

from runstep.errors import NotFound
from runstep.providers.router import KeyUnavailable
from runstep.services import upstream_keys
from runstep.services.upstream_keys import ProjectKeys, Sealer, SecretMissing, new_secret
from runstep.store import tables
from runstep.store.db import Database

KEY = "sk-project-upstream-key-0123456789"


def test_a_sealed_key_opens_only_for_its_project_and_provider() -> None:
    sealer = Sealer(new_secret())
    sealed = sealer.seal(KEY, "proj_a", "openai")
    assert KEY not in sealed and sealed.startswith("v1.")
    assert sealer.open(sealed, "proj_a", "openai") == KEY
    for project, provider in (("proj_b", "openai"), ("proj_a", "other")):
        with pytest.raises(KeyUnavailable, match="not sealed for this project and provider"):
            sealer.open(sealed, project, provider)


def test_rotation_seals_with_the_first_secret_and_opens_with_any() -> None:
    old, new = new_secret(), new_secret()
    sealed_before = Sealer(old).seal(KEY, "proj_a", "openai")
    rotated = Sealer(f"{new},{old}")
    assert rotated.open(sealed_before, "proj_a", "openai") == KEY
    sealed_after = rotated.seal(KEY, "proj_a", "openai")
    assert Sealer(new).open(sealed_after, "proj_a", "openai") == KEY
    with pytest.raises(KeyUnavailable, match="does not hold"):
        Sealer(old).open(sealed_after, "proj_a", "openai")
    with pytest.raises(KeyUnavailable, match="RUNSTEP_SECRET_KEY is not set"):
        Sealer(None).open(sealed_after, "proj_a", "openai")


def test_a_malformed_secret_or_none_refuses_to_seal() -> None:
    with pytest.raises(SecretMissing, match="32 bytes"):
        Sealer("not-a-key")
    with pytest.raises(SecretMissing, match="runstep keys new-secret"):
        Sealer(None).seal(KEY, "proj_a", "openai")
    assert not Sealer("").ready


async def test_stored_keys_are_sealed_replaced_listed_without_secrets_and_removed(
    db: Database,
) -> None:
    sealer = Sealer(new_secret())
    await upstream_keys.set_key(db, sealer, "proj_a", "openai", "sk-first-key-000000")
    await upstream_keys.set_key(db, sealer, "proj_a", "openai", KEY)
    await upstream_keys.set_key(db, sealer, "proj_b", "ollama", "sk-other-key-111111")
    async with db.read() as conn:
        stored = [dict(row._mapping) for row in await conn.execute(sa.select(tables.upstream_keys))]
    assert len(stored) == 2 and all(KEY not in str(row) for row in stored)

    listed = await upstream_keys.list_keys(db)
    assert [(row["project_id"], row["provider"]) for row in listed] == [
        ("proj_a", "openai"),
        ("proj_b", "ollama"),
    ]
    assert set(listed[0]) == {"project_id", "provider", "created_at", "updated_at"}
    assert len(await upstream_keys.list_keys(db, "proj_b")) == 1

    keys = ProjectKeys(db, sealer, cache_seconds=0)
    assert await keys.key("proj_a", "openai") == KEY
    assert await keys.key("proj_a", "ollama") is None
    assert await keys.providers("proj_a") == frozenset({"openai"})

    await upstream_keys.delete_key(db, "proj_a", "openai")
    assert await keys.key("proj_a", "openai") is None
    with pytest.raises(NotFound):
        await upstream_keys.delete_key(db, "proj_a", "openai")


async def test_a_key_moved_to_another_projects_row_does_not_open(db: Database) -> None:
    sealer = Sealer(new_secret())
    await upstream_keys.set_key(db, sealer, "proj_a", "openai", KEY)
    async with db.write() as conn:
        await conn.execute(
            tables.upstream_keys.update()
            .where(tables.upstream_keys.c.project_id == "proj_a")
            .values(project_id="proj_b")
        )
    with pytest.raises(KeyUnavailable):
        await ProjectKeys(db, sealer).key("proj_b", "openai")
