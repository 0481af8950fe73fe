"""create_router: the configured upstreams, else the labelled local stand-in (never a fallback)."""

import logging
from pathlib import Path

import pytest

from runstep.config import Settings
from runstep.providers.local import LocalProvider
from runstep.providers.openai_compatible import OpenAICompatibleProvider
from runstep.providers.select import create_router
from runstep.providers.upstreams import ConfigError

KEY = "sk-select-secret"


async def test_the_single_upstream_variables_make_one_catch_all_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        upstream_base_url="http://user:pw@localhost:1234/v1?token=t", upstream_api_key=KEY
    )
    with caplog.at_level(logging.INFO, logger="runstep.providers"):
        router = create_router(settings)
    await router.aclose()
    [(upstream, provider)] = router.routes
    assert isinstance(provider, OpenAICompatibleProvider)
    assert (upstream.name, upstream.models, upstream.api_key) == ("default", ("*",), KEY)
    route = router.route("any/model:tag")
    assert route is not None and route.model == "any/model:tag"  # nothing stripped
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "http://localhost:1234/v1" in caplog.text
    assert KEY not in caplog.text and "pw" not in caplog.text and "token" not in caplog.text


def test_local_stand_in_is_used_when_nothing_is_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="runstep.providers"):
        router = create_router(Settings(upstream_api_key=KEY))
    [(upstream, provider)] = router.routes
    assert isinstance(provider, LocalProvider) and upstream.name == "local"
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "RUNSTEP_UPSTREAM_BASE_URL" in caplog.text
    assert "RUNSTEP_UPSTREAM_API_KEY" in caplog.text and "RUNSTEP_CONFIG" in caplog.text
    assert KEY not in caplog.text


async def test_a_providers_file_makes_one_route_per_upstream_without_the_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHA_KEY", "sk-alpha")
    config = tmp_path / "providers.toml"
    config.write_text(
        '[[providers]]\nname = "alpha"\nbase_url = "http://127.0.0.1:1/v1"\n'
        'api_key_env = "ALPHA_KEY"\nmodels = ["gpt-*"]\n'
        '[[providers]]\nname = "beta"\nbase_url = "http://127.0.0.1:2/v1"\nmodels = ["ollama/*"]\n'
    )
    router = create_router(Settings(config_path=config))
    await router.aclose()
    assert [upstream.name for upstream in router.upstreams] == ["alpha", "beta"]
    assert router.upstreams[0].api_key == "sk-alpha"
    assert all(isinstance(p, OpenAICompatibleProvider) for _, p in router.routes)
    assert router.route("claude-3") is None  # no stand-in behind a configuration


def test_a_providers_file_and_the_single_upstream_variable_together_are_refused(
    tmp_path: Path,
) -> None:
    config = tmp_path / "providers.toml"
    config.write_text('[[providers]]\nname = "a"\nbase_url = "http://x/v1"\nmodels = ["*"]\n')
    with pytest.raises(ConfigError, match="RUNSTEP_UPSTREAM_BASE_URL"):
        create_router(Settings(config_path=config, upstream_base_url="http://y/v1"))
