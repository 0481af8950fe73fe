"""API keys at rest: only a SHA-256 digest is stored, never the key; the key authenticates,
a revoked, wrong or near-miss key does not."""

import hashlib

import pytest
import sqlalchemy as sa

from runstep.errors import Unauthenticated
from runstep.services.keys import Authenticator, create_key, revoke_key
from runstep.store import tables
from runstep.store.db import Database


async def test_only_the_digest_of_a_key_is_stored(db: Database) -> None:
    issued = await create_key(db, "ci")
    async with db.read() as conn:
        rows = [row._mapping for row in await conn.execute(sa.select(tables.api_keys))]
    [row] = rows
    assert row["key_hash"] == hashlib.sha256(issued.key.encode()).hexdigest()
    assert all(issued.key not in str(value) for value in row.values())
    assert row["hint"] == issued.key[-4:]


async def test_keys_authenticate_exactly(db: Database) -> None:
    issued = await create_key(db, "ci")
    static = "sk-static-key-for-this-test"
    authenticator = Authenticator(db, (static,), open_mode=False)
    assert await authenticator.project_for(issued.key, "10.0.0.1") == issued.project_id
    assert (await authenticator.project_for(static, "10.0.0.1")).startswith("proj_")
    for wrong in (issued.key[:-1], issued.key + "x", issued.key.upper(), static[:-1], ""):
        with pytest.raises(Unauthenticated) as refused:
            await authenticator.project_for(wrong or None, "10.0.0.1")
        assert not wrong or wrong not in refused.value.message
    await revoke_key(db, issued.id)
    with pytest.raises(Unauthenticated):
        await authenticator.project_for(issued.key, "10.0.0.1")
