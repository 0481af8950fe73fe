"""The models a project may use: the check at assistant and run creation, and ``/v1/models``.

A model is available to a project when it routes to an upstream open to that project (one with
``require_project_key`` only to projects holding their own key for it, one with ``projects``
only to those). ``/v1/models`` lists the configured exact names and what the upstreams' own
``GET /models`` report (fetched with the project's own key when it has one, kept for a minute;
an upstream that cannot list is skipped), keeping only the names that route back to them.
"""

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from runstep.errors import InvalidRequest, NotFound
from runstep.providers.base import ProviderError
from runstep.providers.router import KeySource, KeyUnavailable, Route, Router
from runstep.providers.upstreams import Upstream

log = logging.getLogger("runstep.providers")

LISTED_SECONDS = 60.0
UNLISTED_SECONDS = 15.0  # after a failed listing
MAX_LISTINGS = 1000


def model_object(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    """The spec's ``Model``."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def _unknown(model: str) -> str:
    """The hosted API's wording (GET /models/{model}) for a model missing or not the caller's."""
    return f"The model '{model}' does not exist or you do not have access to it."


def _not_served(model: str) -> str:
    """The hosted API's wording (400 at creation) for a model it does not serve."""
    return f"The requested model '{model}' does not exist."


@dataclass(frozen=True)
class Access:
    """What one project may use, decided once per request."""

    router: Router
    project_id: str
    own_keys: frozenset[str]

    def route(self, model: str) -> Route | None:
        route = self.router.route(model)
        if route is None or not self.open(route.upstream):
            return None
        return route

    def open(self, upstream: Upstream) -> bool:
        return upstream.open_to(self.project_id, upstream.name in self.own_keys)

    def check(self, model: str, param: str = "model") -> None:
        """400 ``model_not_found`` unless ``model`` is available to the project."""
        if self.route(model) is None:
            raise InvalidRequest(_not_served(model), param=param, code="model_not_found")


@dataclass
class _Listing:
    models: list[dict[str, Any]]
    until: float


@dataclass
class Catalog:
    """Model access and listings over one ``Router``."""

    router: Router
    keys: KeySource | None = None
    _listings: dict[tuple[str, str], _Listing] = field(default_factory=dict)

    async def access(self, project_id: str) -> Access:
        """The project's access; its stored keys are read only when an upstream needs them."""
        needed = self.keys is not None and any(
            upstream.require_project_key for upstream in self.router.upstreams
        )
        own = await self.keys.providers(project_id) if needed and self.keys else frozenset()
        return Access(self.router, project_id, own)

    async def models(self, project_id: str) -> list[dict[str, Any]]:
        """``GET /v1/models``: every model available to the project, configured names first."""
        access = await self.access(project_id)
        open_routes = [(u, p) for u, p in self.router.routes if access.open(u)]
        listed = await asyncio.gather(
            *(self._listed(upstream, provider, project_id) for upstream, provider in open_routes)
        )
        found: dict[str, dict[str, Any]] = {}
        for (upstream, _), models in zip(open_routes, listed, strict=True):
            for pattern in upstream.patterns:
                if pattern.exact and self._routes_to(access, pattern.text, upstream):
                    found.setdefault(pattern.text, model_object(pattern.text, 0, upstream.name))
            for model in models:
                for pattern in upstream.patterns:
                    for name in pattern.public_names(model["id"]):
                        if self._routes_to(access, name, upstream):
                            found.setdefault(
                                name, model_object(name, model["created"], model["owned_by"])
                            )
        return list(found.values())

    async def model(self, project_id: str, model: str) -> dict[str, Any]:
        """``GET /v1/models/{model}``: found when a run could use it (404 otherwise)."""
        access = await self.access(project_id)
        route = access.route(model)
        if route is None:
            raise NotFound(_unknown(model), param="model", code="model_not_found")
        for listed in await self.models(project_id):
            if listed["id"] == model:
                return listed
        return model_object(model, 0, route.upstream.name)

    @staticmethod
    def _routes_to(access: Access, model: str, upstream: Upstream) -> bool:
        route = access.route(model)
        return route is not None and route.upstream is upstream

    async def _listed(self, upstream: Upstream, provider: Any, project_id: str) -> list[Any]:
        """The upstream's own models (as the project's key sees them), cached."""
        lister = getattr(provider, "list_models", None)
        if not upstream.list_models or lister is None:
            return []
        try:
            key = await self.keys.key(project_id, upstream.name) if self.keys else None
        except KeyUnavailable:  # list nothing rather than fail the request
            return []
        cache_key = (upstream.name, hashlib.sha256((key or "").encode()).hexdigest())
        cached = self._listings.get(cache_key)
        if cached is not None and cached.until > time.monotonic():
            return cached.models
        try:
            models = await lister(key)
            until = time.monotonic() + LISTED_SECONDS
        except ProviderError as error:
            log.warning("provider %s could not list its models: %s", upstream.name, error.message)
            models, until = [], time.monotonic() + UNLISTED_SECONDS
        if len(self._listings) >= MAX_LISTINGS:  # one per provider and project key at most
            fresh = time.monotonic()
            self._listings = {k: v for k, v in self._listings.items() if v.until > fresh}
        self._listings[cache_key] = _Listing(models, until)
        return models
