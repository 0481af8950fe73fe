"""LocalProvider: the deterministic, offline stand-in."""

import json
import math
import re
from typing import Any

from runstep.providers.base import Finish, TextDelta, ToolCallDelta
from runstep.providers.local import LocalProvider
from tests.providers.helpers import chat, collect, function_tool, reassemble, user

TOOLS = [function_tool("get_weather"), function_tool("get_time")]
local = LocalProvider()


def text_of(events: list[Any]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_same_request_gives_same_events() -> None:
    request = chat(user('Call get_weather {"city": "Oslo"} please'), tools=TOOLS)
    assert await collect(local, request) == await collect(local, request)
    plain = chat(user("Hello there"))
    assert await collect(local, plain) == await collect(local, plain)


async def test_plain_reply_labels_itself_in_word_chunks() -> None:
    events = await collect(local, chat(user("Hello there, model")))
    assert [e.text for e in events if isinstance(e, TextDelta)][:2] == ["[local", " stand-in"]
    assert text_of(events) == (
        "[local stand-in model — no upstream configured] You said: Hello there, model"
    )
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.prompt_tokens) == ("stop", 5)


async def test_usage_estimates_four_characters_per_token() -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("Hi!")]
    events = await collect(local, chat(*messages))
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.prompt_tokens == math.ceil(len("Be brief.Hi!") / 4)
    streamed = [e.text for e in events if isinstance(e, TextDelta)]
    assert finish.completion_tokens == sum(max(1, math.ceil(len(t) / 4)) for t in streamed)


async def test_long_user_text_is_truncated() -> None:
    events = await collect(local, chat(user("word " * 200)))
    assert len(text_of(events)) < 400


async def test_named_function_is_called_with_the_json_arguments() -> None:
    text = 'Please use get_weather with {"city": "Paris", "units": "metric"} today'
    events = await collect(local, chat(user(text), tools=TOOLS))
    calls = reassemble(events)
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "units": "metric"}
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", calls[0]["id"])
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > 1
    assert fragments[0].id and fragments[0].name
    assert all(f.id is None and f.name is None for f in fragments[1:])
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "tool_calls"


async def test_names_match_whole_words_only() -> None:
    events = await collect(local, chat(user("what about get_weathers?"), tools=TOOLS))
    assert reassemble(events) == {}
    assert "You said" in text_of(events)


async def test_function_without_json_gets_empty_arguments() -> None:
    calls = reassemble(await collect(local, chat(user("run get_time"), tools=TOOLS)))
    assert calls[0]["arguments"] == "{}"


async def test_several_mentions_become_parallel_calls() -> None:
    text = 'get_time {"zone": "UTC"} and then get_weather {"city": "Rome"}'
    calls = reassemble(await collect(local, chat(user(text), tools=TOOLS)))
    assert [calls[i]["name"] for i in (0, 1)] == ["get_time", "get_weather"]
    assert json.loads(calls[1]["arguments"]) == {"city": "Rome"}
    assert calls[0]["id"] != calls[1]["id"]


async def test_call_ids_differ_between_conversations() -> None:
    first = reassemble(await collect(local, chat(user("get_time"), tools=TOOLS)))
    history = [{"role": "system", "content": "Be brief."}, user("get_time")]
    second = reassemble(await collect(local, chat(*history, tools=TOOLS)))
    assert first[0]["id"] != second[0]["id"]


async def test_parallel_calls_off_keeps_only_the_first() -> None:
    request = chat(user("get_time and get_weather"), tools=TOOLS, parallel_tool_calls=False)
    calls = reassemble(await collect(local, request))
    assert [call["name"] for call in calls.values()] == ["get_time"]


async def test_tool_choice_none_never_calls() -> None:
    events = await collect(local, chat(user("get_time"), tools=TOOLS, tool_choice="none"))
    assert reassemble(events) == {}
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "stop"


async def test_tool_choice_required_calls_the_first_function() -> None:
    events = await collect(local, chat(user("anything"), tools=TOOLS, tool_choice="required"))
    assert [call["name"] for call in reassemble(events).values()] == ["get_weather"]


async def test_tool_choice_named_calls_that_function() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    request = chat(user('get_weather {"city": "Lima"}'), tools=TOOLS, tool_choice=choice)
    calls = reassemble(await collect(local, request))
    assert [call["name"] for call in calls.values()] == ["get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Lima"}


async def test_tool_results_are_summarised() -> None:
    messages = [
        user("get_time"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_time"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00 " + "x" * 600},
    ]
    events = await collect(local, chat(*messages, tools=TOOLS))
    text = text_of(events)
    assert text.startswith("[local stand-in model] The tool returned: 12:00 xxx")
    assert len(text) < 600
    assert reassemble(events) == {}


async def test_max_completion_tokens_stops_with_length() -> None:
    events = await collect(local, chat(user("a long message " * 10), max_completion_tokens=5))
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.reason == "length"
    assert finish.completion_tokens is not None and finish.completion_tokens <= 5
    assert len(events) > 1


async def test_max_completion_tokens_cuts_tool_calls_too() -> None:
    request = chat(user('get_weather {"city": "Paris"}'), tools=TOOLS, max_completion_tokens=2)
    events = await collect(local, request)
    assert len(events) == 2
    assert isinstance(events[0], ToolCallDelta) and events[0].name == "get_weather"
    assert events[1] == Finish("length", prompt_tokens=8, completion_tokens=2)


async def test_image_parts_are_tolerated() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "What is in get_weather?"},
    ]
    events = await collect(local, chat(user(content), tools=TOOLS))
    assert reassemble(events)[0]["name"] == "get_weather"
    events = await collect(local, chat(user(content)))
    assert text_of(events).endswith("You said: What is in get_weather?")
