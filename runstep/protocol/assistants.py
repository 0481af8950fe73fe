"""Assistants: create and modify requests and the AssistantObject."""

from typing import Annotated, Any, Literal

from pydantic import Field

from runstep.protocol.common import (
    Metadata,
    ReasoningEffort,
    RequestModel,
    Temperature,
    TopP,
    WireModel,
)
from runstep.protocol.tools import ResponseFormat, Tool, ToolResources


class AssistantFields(RequestModel):
    """Every field an assistant request may set (all optional on modify)."""

    model: str | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    reasoning_effort: ReasoningEffort | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    response_format: ResponseFormat | None = None


class CreateAssistantRequest(AssistantFields):
    model: str


class ModifyAssistantRequest(AssistantFields):
    pass


class AssistantObject(WireModel):
    id: str
    object: Literal["assistant"] = "assistant"
    created_at: int
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: list[dict[str, Any]]
    tool_resources: dict[str, Any] | None
    metadata: dict[str, str]
    temperature: float | None
    top_p: float | None
    response_format: str | dict[str, Any] | None
    reasoning_effort: ReasoningEffort | None = None
