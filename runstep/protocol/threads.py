"""Threads: create and modify requests and the ThreadObject."""

from typing import Annotated, Any, Literal

from pydantic import Field

from runstep.protocol.common import Metadata, RequestModel, WireModel
from runstep.protocol.messages import CreateMessageRequest
from runstep.protocol.tools import ToolResources

MAX_THREAD_MESSAGES = 32  # the hosted API's bound on a new thread's messages


class CreateThreadRequest(RequestModel):
    messages: (
        Annotated[list[CreateMessageRequest], Field(max_length=MAX_THREAD_MESSAGES)] | None
    ) = None
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
