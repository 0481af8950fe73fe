"""Build the router for this process: the configured upstreams, else the local stand-in."""

import logging
from urllib.parse import urlsplit, urlunsplit

from runstep.config import Settings
from runstep.providers.base import Provider
from runstep.providers.local import LocalProvider
from runstep.providers.openai_compatible import OpenAICompatibleProvider
from runstep.providers.router import HealthLog, KeySource, Router
from runstep.providers.upstreams import Upstream, load_upstreams

log = logging.getLogger("runstep.providers")

# The stand-in takes every model name; it lists none (it is not a model).
LOCAL = Upstream(name="local", base_url="local:", models=("*",), list_models=False)


def _display_url(url: str) -> str:
    """The URL without credentials or query, which may carry secrets."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def create_router(
    settings: Settings, keys: KeySource | None = None, health_log: HealthLog | None = None
) -> Router:
    """A router over the configured upstreams; over the local stand-in only when none is
    configured (never as a fallback). Raises ``ConfigError`` for an unusable configuration."""
    upstreams = load_upstreams(settings)
    if not upstreams:
        log.warning(
            "No upstream model configured: runs are answered by the built-in local stand-in, "
            "a deterministic echo that is not a language model. To use a real model set "
            "RUNSTEP_UPSTREAM_BASE_URL (any OpenAI-compatible Chat Completions endpoint, "
            "e.g. https://api.openai.com/v1) and, if it needs one, RUNSTEP_UPSTREAM_API_KEY; "
            "or list several upstreams in a providers file named by RUNSTEP_CONFIG."
        )
        return Router([(LOCAL, LocalProvider())], keys, health_log)
    routes: list[tuple[Upstream, Provider]] = []
    for upstream in upstreams:
        log.info(
            "Provider %s: the OpenAI-compatible upstream at %s (API key %s) serves %s.",
            upstream.name,
            _display_url(upstream.base_url),
            "configured" if upstream.api_key else "not configured",
            ", ".join(upstream.models),
        )
        routes.append((upstream, OpenAICompatibleProvider(upstream)))
    return Router(routes, keys, health_log)
