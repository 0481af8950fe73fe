"""The provider runs use: each model turn goes to the upstream serving its model, with the
project's own key for that upstream when it has one, and every upstream's outcomes feed its
metrics and health.

Routing: exact model names first (whichever upstream lists them), then the globs in the order
the upstreams are configured; the first match wins.
"""

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from runstep.observability import (
    PROVIDER_ERRORS,
    PROVIDER_FIRST_TOKEN,
    PROVIDER_HEALTHY,
    PROVIDER_REQUESTS,
    PROVIDER_TURN,
)
from runstep.providers.base import ChatRequest, Provider, ProviderError, ProviderEvent
from runstep.providers.upstreams import Upstream

log = logging.getLogger("runstep.providers")

UNHEALTHY_AFTER = 3  # failures in a row (429, 5xx, timeouts, lost connections)


class KeyUnavailable(Exception):
    """A project's stored key exists but cannot be read (e.g. RUNSTEP_SECRET_KEY changed)."""


class KeySource(Protocol):
    """Projects' own upstream keys (``services.upstream_keys.ProjectKeys``)."""

    async def key(self, project_id: str, provider: str) -> str | None:
        """The project's key for ``provider``, or None; raises ``KeyUnavailable``."""
        ...

    async def providers(self, project_id: str) -> frozenset[str]:
        """The providers the project holds its own key for."""
        ...


class HealthLog(Protocol):
    """Where a process writes what it saw of a provider, for every process's ``/health``
    (``services.provider_health.HealthRecords``)."""

    async def record(self, provider: str, health: "Health") -> None: ...


@dataclass(frozen=True)
class Route:
    upstream: Upstream
    provider: Provider
    model: str  # the name sent upstream


@dataclass
class Health:
    """What this process has seen of one provider."""

    failures_in_a_row: int = 0
    last_error: str | None = None  # the kind of the last failure
    last_failure_at: int | None = None
    last_success_at: int | None = None

    @property
    def healthy(self) -> bool:
        return self.failures_in_a_row < UNHEALTHY_AFTER

    def wire(self) -> dict[str, Any]:
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
            "last_failure_at": self.last_failure_at,
            "last_success_at": self.last_success_at,
        }


class Router:
    """A ``Provider`` over the configured upstreams."""

    name = "router"

    def __init__(
        self,
        routes: list[tuple[Upstream, Provider]],
        keys: KeySource | None = None,
        health_log: HealthLog | None = None,
    ) -> None:
        self.routes = routes
        self.keys = keys
        self.health_log = health_log
        self.health = {upstream.name: Health() for upstream, _ in routes}
        for name in self.health:
            PROVIDER_HEALTHY.labels(name).set(1)

    @property
    def upstreams(self) -> list[Upstream]:
        return [upstream for upstream, _ in self.routes]

    def route(self, model: str) -> Route | None:
        """Where ``model`` goes: exact names first, then globs in configured order."""
        for exact in (True, False):
            for upstream, provider in self.routes:
                for pattern in upstream.patterns:
                    if pattern.exact == exact and pattern.matches(model):
                        return Route(upstream, provider, pattern.upstream_model(model))
        return None

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        """The turn from the model's upstream; its outcome counts towards that upstream."""
        route = self.route(request.model)
        if route is None:
            raise ProviderError(
                "invalid", f"No configured provider serves the model '{request.model}'."
            )
        name = route.upstream.name
        sent = replace(request, model=route.model, api_key=await self._key(route, request))
        PROVIDER_REQUESTS.labels(name).inc()
        started, first = time.monotonic(), True
        try:
            async for event in route.provider.stream(sent):
                if first:
                    PROVIDER_FIRST_TOKEN.labels(name).observe(time.monotonic() - started)
                    first = False
                yield event
        except ProviderError as error:
            await self._failed(name, error, request.model)
            raise
        PROVIDER_TURN.labels(name).observe(time.monotonic() - started)
        await self._succeeded(name)

    async def _key(self, route: Route, request: ChatRequest) -> str | None:
        """The project's own key for the route's upstream, if it has one (never the other
        way round: a project whose key cannot be read fails rather than use the shared key)."""
        upstream = route.upstream
        if request.project_id is None:
            return None
        try:
            key = await self.keys.key(request.project_id, upstream.name) if self.keys else None
        except KeyUnavailable as exc:
            raise ProviderError("server", str(exc)) from None
        if not upstream.open_to(request.project_id, key is not None):
            listed = upstream.projects is None or request.project_id in upstream.projects
            why = "takes only projects' own keys" if listed else "is not open to this project"
            raise ProviderError(
                "invalid",
                f"The model '{request.model}' is not available: its provider '{upstream.name}' "
                f"{why}.",
            )
        return key

    async def _failed(self, name: str, error: ProviderError, model: str) -> None:
        PROVIDER_ERRORS.labels(name, error.kind).inc()
        log.warning("provider %s failed for model %s: %s", name, model, error.message)
        if error.kind == "invalid":  # the request's fault, not the provider's
            return
        health = self.health[name]
        health.failures_in_a_row += 1
        health.last_error, health.last_failure_at = error.kind, int(time.time())
        if health.failures_in_a_row == UNHEALTHY_AFTER:
            log.error("provider %s is unhealthy: %d failures in a row", name, UNHEALTHY_AFTER)
        PROVIDER_HEALTHY.labels(name).set(1 if health.healthy else 0)
        await self._report(name)

    async def _succeeded(self, name: str) -> None:
        health = self.health[name]
        recovered = health.failures_in_a_row > 0
        if not health.healthy:
            log.info("provider %s is healthy again", name)
        health.failures_in_a_row, health.last_success_at = 0, int(time.time())
        PROVIDER_HEALTHY.labels(name).set(1)
        if recovered:  # a steady run of successes writes nothing
            await self._report(name)

    async def _report(self, name: str) -> None:
        """Write the provider's health for ``/health``; a store that fails here is noticed
        elsewhere, so it is only logged."""
        if self.health_log is None:
            return
        try:
            await self.health_log.record(name, self.health[name])
        except Exception as exc:
            log.warning("could not record the health of provider %s: %r", name, exc)

    async def aclose(self) -> None:
        for _, provider in self.routes:
            await provider.aclose()
