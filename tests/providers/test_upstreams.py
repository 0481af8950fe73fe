"""The providers file: what it takes, what it refuses (saying where and why), and how model
patterns match and strip their prefix."""

from pathlib import Path
from typing import Any

import pytest

from runstep.config import Settings
from runstep.providers.upstreams import (
    ConfigError,
    ModelPattern,
    Upstream,
    load_upstreams,
    parse_config,
)

ENV = {"ALPHA_KEY": "sk-alpha-from-env"}


def provider(**fields: Any) -> dict[str, Any]:
    return {"name": "alpha", "base_url": "http://127.0.0.1:1/v1", "models": ["gpt-*"], **fields}


def test_every_option_is_read() -> None:
    [upstream] = parse_config(
        {
            "providers": [
                provider(
                    api_key_env="ALPHA_KEY",
                    headers={"x-team": "blue"},
                    timeout_seconds=12,
                    max_retries=0,
                    strip_prefix=False,
                    require_project_key=True,
                    projects=["proj_a"],
                    list_models=False,
                    token_limit_param="max_tokens",
                    reasoning_models=["qwq*"],
                )
            ]
        },
        ENV,
    )
    assert upstream == Upstream(
        name="alpha",
        base_url="http://127.0.0.1:1/v1",
        models=("gpt-*",),
        api_key="sk-alpha-from-env",
        headers={"x-team": "blue"},
        timeout_seconds=12.0,
        max_retries=0,
        strip_prefix=False,
        require_project_key=True,
        projects=("proj_a",),
        list_models=False,
        token_limit_param="max_tokens",
        reasoning_models=("qwq*",),
    )
    assert "sk-alpha" not in repr(upstream)


def test_defaults() -> None:
    [upstream] = parse_config({"providers": [provider(api_key="sk-inline")]}, {})
    assert upstream.api_key == "sk-inline"
    assert (upstream.timeout_seconds, upstream.max_retries) == (60.0, 3)
    assert upstream.strip_prefix and upstream.list_models and not upstream.require_project_key
    assert upstream.projects is None and upstream.token_limit_param == "auto"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({}, "no providers"),
        ({"provider": []}, "unknown top-level key(s) ['provider']"),
        ({"providers": [provider(modles=["x"])]}, "unknown key(s) ['modles']"),
        ({"providers": [provider(name="a b")]}, "'name' is required"),
        ({"providers": [provider(base_url="localhost:11434")]}, "'base_url' is required"),
        ({"providers": [provider(models=[])]}, "'models' is required"),
        ({"providers": [provider(api_key="k", api_key_env="ALPHA_KEY")]}, "not both"),
        ({"providers": [provider(api_key_env="MISSING_KEY")]}, "MISSING_KEY, which is not set"),
        ({"providers": [provider(timeout_seconds="fast")]}, "'timeout_seconds' has the wrong"),
        ({"providers": [provider(max_retries=-1)]}, "'max_retries' >= 0"),
        ({"providers": [provider(headers={"x": 1})]}, "'headers' must be a table of strings"),
        ({"providers": [provider(token_limit_param="n")]}, "'token_limit_param' is one of"),
        ({"providers": [provider(strip_prefix="yes")]}, "'strip_prefix' must be true or false"),
        ({"providers": [provider(), provider()]}, "two providers are named 'alpha'"),
        (
            {"providers": [provider(models=["m"]), provider(name="beta", models=["m"])]},
            "the model 'm' is listed by both 'alpha' and 'beta'",
        ),
    ],
)
def test_an_unusable_file_is_refused_saying_why(data: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, ENV)
    assert says in str(caught.value)


def test_the_file_is_named_in_its_errors(tmp_path: Path) -> None:
    config = tmp_path / "providers.toml"
    config.write_text("[[providers]]\nname = 'a'\n")
    with pytest.raises(ConfigError, match=rf"{config}: provider 'a': 'base_url' is required"):
        load_upstreams(Settings(config_path=config), {})
    config.write_text("[[providers]\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_upstreams(Settings(config_path=config), {})
    with pytest.raises(ConfigError, match="Cannot read the providers file"):
        load_upstreams(Settings(config_path=tmp_path / "missing.toml"), {})


def test_nothing_configured_means_no_upstreams() -> None:
    assert load_upstreams(Settings(), {}) == []


def test_a_prefix_pattern_strips_its_prefix_and_lists_under_it() -> None:
    pattern = ModelPattern("ollama/*")
    assert pattern.matches("ollama/llama3.1:8b") and not pattern.matches("llama3.1:8b")
    assert pattern.upstream_model("ollama/llama3.1:8b") == "llama3.1:8b"
    assert pattern.public_names("llama3.1:8b") == ["ollama/llama3.1:8b"]
    kept = ModelPattern("meta-llama/*", strip=False)
    assert kept.upstream_model("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"


def test_globs_and_exact_names_send_the_name_as_is() -> None:
    glob, exact = ModelPattern("gpt-*"), ModelPattern("gpt-4.1")
    assert glob.matches("gpt-4o") and glob.upstream_model("gpt-4o") == "gpt-4o"
    assert exact.exact and not glob.exact
    assert exact.matches("gpt-4.1") and not exact.matches("gpt-4.1-mini")
    assert glob.public_names("gpt-4o") == ["gpt-4o"] and glob.public_names("o3") == []
    assert ModelPattern("team-*/x/*").prefix is None  # a wildcard before the slash: a glob
