"""Projects' own upstream keys: set from the command line, sealed at rest, read by the router.

A key is sealed with AES-256-GCM under ``RUNSTEP_SECRET_KEY`` (32 random bytes, URL-safe
base64; ``runstep keys new-secret`` makes one), bound to its project and provider so that a
sealed key copied to another row does not open. ``RUNSTEP_SECRET_KEY`` may list several keys,
comma-separated: the first seals, any opens (rotation). No endpoint returns a key and none is
logged.
"""

import base64
import binascii
import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runstep.errors import InvalidRequest, NotFound
from runstep.providers.router import KeyUnavailable
from runstep.services.common import now
from runstep.store import tables
from runstep.store.db import Database

VERSION = "v1"
NONCE_BYTES = 12
CACHE_SECONDS = 5.0  # how long a worker keeps a project's key (or its absence) in memory
CACHE_ENTRIES = 10_000


NO_SECRET = (
    "Set RUNSTEP_SECRET_KEY to store projects' upstream keys "
    "(make one with `runstep keys new-secret`)."
)


class SecretMissing(Exception):
    """``RUNSTEP_SECRET_KEY`` is not set or not a valid key."""


def new_secret() -> str:
    """A fresh value for ``RUNSTEP_SECRET_KEY``."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"runstep-secret:" + key).hexdigest()[:8]


def _aad(project_id: str, provider: str) -> bytes:
    return f"runstep-upstream-key\0{project_id}\0{provider}".encode()


class Sealer:
    """Seals and opens keys with the secret(s) of ``RUNSTEP_SECRET_KEY``."""

    def __init__(self, secret: str | None) -> None:
        self._keys: dict[str, AESGCM] = {}
        self._sealing: str | None = None
        for part in (secret or "").split(","):
            if not part.strip():
                continue
            try:
                raw = base64.urlsafe_b64decode(part.strip().encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise SecretMissing(
                    "RUNSTEP_SECRET_KEY must be 32 bytes in URL-safe base64 "
                    "(make one with `runstep keys new-secret`)."
                )
            self._keys[_key_id(raw)] = AESGCM(raw)
            self._sealing = self._sealing or _key_id(raw)

    @property
    def ready(self) -> bool:
        return self._sealing is not None

    def seal(self, plaintext: str, project_id: str, provider: str) -> str:
        if self._sealing is None:
            raise SecretMissing(NO_SECRET)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._sealing].encrypt(
            nonce, plaintext.encode(), _aad(project_id, provider)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{VERSION}.{self._sealing}.{body}"

    def open(self, sealed: str, project_id: str, provider: str) -> str:
        """The plaintext; ``KeyUnavailable`` when no configured secret opens it."""
        what = f"The project's own key for provider '{provider}'"
        if not self._keys:
            raise KeyUnavailable(f"{what} cannot be read: RUNSTEP_SECRET_KEY is not set.")
        version, key_id, body = ([*sealed.split(".", 2), "", ""])[:3]
        cipher = self._keys.get(key_id)
        if version != VERSION or cipher is None:
            raise KeyUnavailable(
                f"{what} was sealed with a secret that RUNSTEP_SECRET_KEY does not hold."
            )
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            nonce, sealed_bytes = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
            return cipher.decrypt(nonce, sealed_bytes, _aad(project_id, provider)).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise KeyUnavailable(
                f"{what} does not open: it was not sealed for this project and provider."
            ) from None


COLUMNS = tables.upstream_keys.c


async def set_key(db: Database, sealer: Sealer, project_id: str, provider: str, key: str) -> None:
    """Store (or replace) the project's key for ``provider``."""
    if not key or key != key.strip() or "\n" in key:
        raise InvalidRequest("The key is empty or has surrounding whitespace.")
    sealed = sealer.seal(key, project_id, provider)
    stamp = now()
    async with db.write() as conn:
        where = (COLUMNS.project_id == project_id, COLUMNS.provider == provider)
        created = (
            await conn.execute(sa.select(COLUMNS.created_at).where(*where))
        ).scalar_one_or_none()
        await conn.execute(tables.upstream_keys.delete().where(*where))
        await conn.execute(
            tables.upstream_keys.insert().values(
                project_id=project_id,
                provider=provider,
                sealed=sealed,
                created_at=created or stamp,
                updated_at=stamp,
            )
        )


async def delete_key(db: Database, project_id: str, provider: str) -> None:
    async with db.write() as conn:
        result = await conn.execute(
            tables.upstream_keys.delete().where(
                COLUMNS.project_id == project_id, COLUMNS.provider == provider
            )
        )
    if not result.rowcount:
        raise NotFound(f"Project '{project_id}' has no key for provider '{provider}'.")


async def list_keys(db: Database, project_id: str | None = None) -> list[dict[str, Any]]:
    """Which projects hold keys for which providers (never the keys)."""
    query = sa.select(
        COLUMNS.project_id, COLUMNS.provider, COLUMNS.created_at, COLUMNS.updated_at
    ).order_by(COLUMNS.project_id, COLUMNS.provider)
    if project_id is not None:
        query = query.where(COLUMNS.project_id == project_id)
    async with db.read() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


@dataclass
class ProjectKeys:
    """The router's ``KeySource``: keys read from the store, kept for a few seconds."""

    db: Database
    sealer: Sealer
    cache_seconds: float = CACHE_SECONDS
    _cache: dict[tuple[str, str], tuple[float, str | None]] = field(default_factory=dict)

    async def key(self, project_id: str, provider: str) -> str | None:
        cached = self._cache.get((project_id, provider))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self.db.read() as conn:
            sealed = (
                await conn.execute(
                    sa.select(COLUMNS.sealed).where(
                        COLUMNS.project_id == project_id, COLUMNS.provider == provider
                    )
                )
            ).scalar_one_or_none()
        key = None if sealed is None else self.sealer.open(sealed, project_id, provider)
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[(project_id, provider)] = (time.monotonic() + self.cache_seconds, key)
        return key

    async def providers(self, project_id: str) -> frozenset[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(COLUMNS.provider).where(COLUMNS.project_id == project_id)
            )
            return frozenset(rows.scalars())
