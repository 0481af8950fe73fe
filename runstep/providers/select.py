"""Pick the chat model for this process: the configured upstream, else the local stand-in."""

import logging
from urllib.parse import urlsplit, urlunsplit

from runstep.config import Settings
from runstep.providers.base import Provider
from runstep.providers.local import LocalProvider
from runstep.providers.openai_compatible import OpenAICompatibleProvider

log = logging.getLogger("runstep.providers")


def _display_url(url: str) -> str:
    """The URL without credentials or query, which may carry secrets."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def create_provider(settings: Settings) -> Provider:
    """OpenAICompatibleProvider when an upstream base URL is set, else LocalProvider."""
    if settings.upstream_base_url:
        log.info(
            "Using the OpenAI-compatible upstream at %s (API key %s).",
            _display_url(settings.upstream_base_url),
            "configured" if settings.upstream_api_key else "not configured",
        )
        return OpenAICompatibleProvider(settings)
    log.warning(
        "No upstream model configured: runs are answered by the built-in local stand-in, "
        "a deterministic echo that is not a language model. To use a real model set "
        "RUNSTEP_UPSTREAM_BASE_URL (any OpenAI-compatible Chat Completions endpoint, "
        "e.g. https://api.openai.com/v1) and, if it needs one, RUNSTEP_UPSTREAM_API_KEY."
    )
    return LocalProvider()
