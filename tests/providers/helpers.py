"""Small helpers shared by the provider tests."""

from typing import Any

from runstep.providers.base import ChatRequest, Provider, ProviderEvent, ToolCallDelta


def user(text: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "user", "content": text}


def function_tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": {}}},
    }


def chat(*messages: dict[str, Any], **options: Any) -> ChatRequest:
    return ChatRequest(model=options.pop("model", "gpt-test"), messages=list(messages), **options)


async def collect(provider: Provider, request: ChatRequest) -> list[ProviderEvent]:
    return [event async for event in provider.stream(request)]


def reassemble(events: list[ProviderEvent]) -> dict[int, dict[str, Any]]:
    """Tool calls by index, rebuilt from their fragments as a client would."""
    calls: dict[int, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or event.id
            call["name"] = call["name"] or event.name
            call["arguments"] += event.arguments
    return calls
