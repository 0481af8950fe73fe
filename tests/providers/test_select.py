"""create_provider: the upstream when configured, else the labelled local stand-in."""

import logging

import pytest

from runstep.config import Settings
from runstep.providers.local import LocalProvider
from runstep.providers.openai_compatible import OpenAICompatibleProvider
from runstep.providers.select import create_provider

KEY = "sk-select-secret"


async def test_upstream_is_used_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        upstream_base_url="http://user:pw@localhost:1234/v1?token=t", upstream_api_key=KEY
    )
    with caplog.at_level(logging.INFO, logger="runstep.providers"):
        provider = create_provider(settings)
    await provider.aclose()
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.name == "openai-compatible"
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "http://localhost:1234/v1" in caplog.text
    assert KEY not in caplog.text and "pw" not in caplog.text and "token" not in caplog.text


def test_local_stand_in_is_used_otherwise(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="runstep.providers"):
        provider = create_provider(Settings(upstream_api_key=KEY))
    assert isinstance(provider, LocalProvider)
    assert provider.name == "local"
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "RUNSTEP_UPSTREAM_BASE_URL" in caplog.text
    assert "RUNSTEP_UPSTREAM_API_KEY" in caplog.text
    assert KEY not in caplog.text
