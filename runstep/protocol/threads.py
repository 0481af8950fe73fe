"""Threads: create and modify requests and the ThreadObject."""

from typing import Any, Literal

from pydantic import Field

from runstep.protocol.common import Metadata, RequestModel, WireModel
from runstep.protocol.messages import CreateMessageRequest
from runstep.protocol.tools import ToolResources


class CreateThreadRequest(RequestModel):
    messages: list[CreateMessageRequest] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class ModifyThreadRequest(RequestModel):
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class ThreadObject(WireModel):
    id: str
    object: Literal["thread"] = "thread"
    created_at: int
    tool_resources: dict[str, Any] | None = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
