"""Options in the form each model family takes: the completion budget's field, and
reasoning_effort only for reasoning models; parallel_tool_calls only to turn them off."""

import pytest

from runstep.providers.families import is_reasoning, token_limit_param
from runstep.providers.openai_compatible import request_options
from runstep.providers.upstreams import Upstream
from tests.providers.helpers import chat, function_tool, user

UPSTREAM = Upstream(name="u", base_url="http://127.0.0.1:1/v1")


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("gpt-4.1", "max_completion_tokens"),
        ("o3-mini", "max_completion_tokens"),
        ("gpt-5", "max_completion_tokens"),
        ("ft:gpt-4o-mini:acme::abc", "max_completion_tokens"),
        ("llama3.1:8b", "max_tokens"),
        ("mistral-large-latest", "max_tokens"),
        ("claude-sonnet-4", "max_tokens"),
        ("scripted-model", "max_tokens"),
    ],
)
def test_the_completion_budget_goes_in_the_familys_field(model: str, field: str) -> None:
    options = request_options(chat(user("Hi"), model=model, max_completion_tokens=64), UPSTREAM)
    [other] = {"max_tokens", "max_completion_tokens"} - {field}
    assert options[field] == 64 and other not in options


def test_an_upstream_can_name_the_budget_field_for_all_its_models() -> None:
    upstream = Upstream(name="u", base_url="http://x/v1", token_limit_param="max_tokens")
    options = request_options(chat(user("Hi"), model="gpt-4.1", max_completion_tokens=9), upstream)
    assert options["max_tokens"] == 9 and "max_completion_tokens" not in options
    assert token_limit_param("llama3", "max_completion_tokens") == "max_completion_tokens"


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("o1", True),
        ("o3-mini", True),
        ("o4-mini-2025-04-16", True),
        ("gpt-5-mini", True),
        ("gpt-oss:20b", True),
        ("gpt-5-chat-latest", False),
        ("gpt-4.1", False),
        ("gpt-4o", False),
        ("llama3.1:8b", False),
        ("omni-moderation-latest", False),
    ],
)
def test_reasoning_effort_goes_only_to_reasoning_models(model: str, reasoning: bool) -> None:
    options = request_options(chat(user("Hi"), model=model, reasoning_effort="high"), UPSTREAM)
    assert ("reasoning_effort" in options) is reasoning
    assert is_reasoning(model) is reasoning


def test_an_upstreams_reasoning_models_replace_the_built_in_families() -> None:
    upstream = Upstream(name="u", base_url="http://x/v1", reasoning_models=("qwq*", "deepseek-r1*"))
    request = chat(user("Hi"), model="deepseek-r1:14b", reasoning_effort="low")
    assert request_options(request, upstream)["reasoning_effort"] == "low"
    other = chat(user("Hi"), model="o3-mini", reasoning_effort="low")
    assert "reasoning_effort" not in request_options(other, upstream)


def test_parallel_tool_calls_are_sent_only_to_turn_them_off() -> None:
    tools = [function_tool("lookup")]
    on = request_options(chat(user("Hi"), tools=tools, parallel_tool_calls=True), UPSTREAM)
    off = request_options(chat(user("Hi"), tools=tools, parallel_tool_calls=False), UPSTREAM)
    assert "parallel_tool_calls" not in on
    assert off["parallel_tool_calls"] is False


def test_tool_choice_is_sent_as_given_with_tools() -> None:
    choice = {"type": "function", "function": {"name": "lookup"}}
    request = chat(user("Hi"), tools=[function_tool("lookup")], tool_choice=choice)
    assert request_options(request, UPSTREAM)["tool_choice"] == choice
    assert request_options(chat(user("Hi"), tool_choice="required"), UPSTREAM).keys() == {
        "model",
        "messages",
    }
