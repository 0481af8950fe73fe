"""API keys and projects: each key is its own project (tenant).

Keys are random 256-bit tokens, so a SHA-256 digest is a safe stored form: lookups go by
digest, and the plaintext is shown once, at creation."""

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runstep import ids
from runstep.errors import NotFound, Unauthenticated
from runstep.services.common import now
from runstep.store import tables
from runstep.store.db import Database

DEFAULT_PROJECT = "proj_default"
KEY_PREFIX = "sk-rs-"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def static_project_id(key: str) -> str:
    """A stable project id for a key given in ``RUNSTEP_API_KEYS``."""
    return ids.PROJECT + digest("project:" + key)[:24]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class IssuedKey:
    id: str
    project_id: str
    name: str
    key: str


async def create_key(db: Database, name: str, project_id: str | None = None) -> IssuedKey:
    """Issue a key (in a new project unless one is given); the plaintext is returned once."""
    key = KEY_PREFIX + ids.random_token(43)
    created_at = now()
    async with db.write() as conn:
        if project_id is None:
            project_id = ids.new_id(ids.PROJECT)
            await conn.execute(
                tables.projects.insert().values(id=project_id, name=name, created_at=created_at)
            )
        elif (
            await conn.execute(
                sa.select(tables.projects.c.id).where(tables.projects.c.id == project_id)
            )
        ).first() is None:
            raise NotFound(f"No project found with id '{project_id}'.")
        key_id = ids.new_id(ids.API_KEY)
        await conn.execute(
            tables.api_keys.insert().values(
                id=key_id,
                project_id=project_id,
                name=name,
                key_hash=digest(key),
                hint=key[-4:],
                created_at=created_at,
            )
        )
    return IssuedKey(id=key_id, project_id=project_id, name=name, key=key)


async def check_project(db: Database, project_id: str, static_keys: tuple[str, ...]) -> None:
    """404 unless ``project_id`` is a project: stored, a static key's, or the open default."""
    if project_id == DEFAULT_PROJECT or project_id in map(static_project_id, static_keys):
        return
    query = sa.select(tables.projects.c.id).where(tables.projects.c.id == project_id)
    async with db.read() as conn:
        if (await conn.execute(query)).first() is None:
            raise NotFound(f"No project found with id '{project_id}'.")


async def list_keys(db: Database) -> list[dict[str, Any]]:
    """Every stored key (never the secret), oldest first."""
    columns = tables.api_keys.c
    query = sa.select(
        columns.id,
        columns.project_id,
        columns.name,
        columns.hint,
        columns.created_at,
        columns.revoked_at,
    ).order_by(columns.created_at, columns.id)
    async with db.read() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def revoke_key(db: Database, key_id: str) -> None:
    columns = tables.api_keys.c
    async with db.write() as conn:
        result = await conn.execute(
            tables.api_keys.update()
            .where(columns.id == key_id, columns.revoked_at.is_(None))
            .values(revoked_at=now())
        )
    if not result.rowcount:
        raise NotFound(f"No active key found with id '{key_id}'.")


async def active_key_count(db: Database) -> int:
    async with db.read() as conn:
        query = sa.select(sa.func.count()).where(tables.api_keys.c.revoked_at.is_(None))
        return int((await conn.execute(query)).scalar_one())


class Authenticator:
    """Maps a bearer token to its project.

    Closed mode (static or stored keys exist): only those keys are accepted. Open mode (no
    keys at all): any token is accepted from loopback clients, all in one default project."""

    def __init__(self, db: Database, static_keys: tuple[str, ...], open_mode: bool) -> None:
        self._db = db
        self._static = {digest(key): static_project_id(key) for key in static_keys}
        self.open_mode = open_mode

    async def project_for(self, token: str | None, client_host: str | None) -> str:
        if self.open_mode:
            if client_host is not None and not is_loopback(client_host):
                raise Unauthenticated("Runstep runs without API keys and serves loopback only.")
            return DEFAULT_PROJECT
        if not token:
            raise Unauthenticated(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        token_digest = digest(token)
        for known, project_id in self._static.items():
            if hmac.compare_digest(known, token_digest):
                return project_id
        project_id = await self._stored_project(token_digest)
        if project_id is None:
            raise Unauthenticated(f"Incorrect API key provided: {_redact(token)}.")
        return project_id

    async def _stored_project(self, token_digest: str) -> str | None:
        columns = tables.api_keys.c
        query = sa.select(columns.project_id).where(
            columns.key_hash == token_digest, columns.revoked_at.is_(None)
        )
        async with self._db.read() as conn:
            project_id: str | None = (await conn.execute(query)).scalar_one_or_none()
        return project_id


def _redact(token: str) -> str:
    return token[:3] + "*" * 8 + token[-4:] if len(token) > 10 else "*" * len(token)
