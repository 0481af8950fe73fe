"""Runs and run steps: create/submit requests, RunObject and RunStepObject."""

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from runstep.protocol.common import (
    FunctionName,
    Metadata,
    ReasoningEffort,
    RequestModel,
    Temperature,
    TopP,
    WireModel,
)
from runstep.protocol.messages import CreateMessageRequest
from runstep.protocol.threads import CreateThreadRequest
from runstep.protocol.tools import ResponseFormat, Tool, ToolResources

FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
Include = Literal["step_details.tool_calls[*].file_search.results[*].content"]


class TruncationStrategy(RequestModel):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1)] | None = None


class NamedFunction(RequestModel):
    name: FunctionName


class NamedToolChoice(RequestModel):
    type: Literal["function", "code_interpreter", "file_search"]
    function: NamedFunction | None = None

    @model_validator(mode="after")
    def _function_needs_name(self) -> "NamedToolChoice":
        if self.type == "function" and self.function is None:
            raise ValueError("function.name is required when type is 'function'")
        return self


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice
TokenBudget = Annotated[int, Field(ge=256)]


class RunOptions(RequestModel):
    """Fields shared by createRun and createThreadAndRun."""

    assistant_id: str
    model: str | None = None
    instructions: str | None = None
    tools: Annotated[list[Tool], Field(max_length=20)] | None = None
    metadata: Metadata | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = None
    max_prompt_tokens: TokenBudget | None = None
    max_completion_tokens: TokenBudget | None = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class CreateRunRequest(RunOptions):
    additional_instructions: str | None = None
    additional_messages: list[CreateMessageRequest] | None = None
    reasoning_effort: ReasoningEffort | None = None


class CreateThreadAndRunRequest(RunOptions):
    thread: CreateThreadRequest | None = None
    tool_resources: ToolResources | None = None


class ModifyRunRequest(RequestModel):
    metadata: Metadata | None = None


class ToolOutput(RequestModel):
    tool_call_id: str | None = None
    output: str | None = None


class SubmitToolOutputsRequest(RequestModel):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


RunStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]
StepStatus = Literal["in_progress", "cancelled", "failed", "completed", "expired"]


class Usage(WireModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LastError(WireModel):
    code: Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]
    message: str


class RunObject(WireModel):
    id: str
    object: Literal["thread.run"] = "thread.run"
    created_at: int
    thread_id: str
    assistant_id: str
    status: RunStatus = "queued"
    required_action: dict[str, Any] | None = None
    last_error: LastError | None = None
    expires_at: int | None
    started_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    incomplete_details: dict[str, Any] | None = None
    model: str
    instructions: str
    tools: list[dict[str, Any]]
    metadata: dict[str, str]
    usage: Usage | None = None
    temperature: float | None
    top_p: float | None
    max_prompt_tokens: int | None
    max_completion_tokens: int | None
    truncation_strategy: dict[str, Any]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    response_format: str | dict[str, Any]


class RunStepObject(WireModel):
    id: str
    object: Literal["thread.run.step"] = "thread.run.step"
    created_at: int
    assistant_id: str
    thread_id: str
    run_id: str
    type: Literal["message_creation", "tool_calls"]
    status: StepStatus = "in_progress"
    step_details: dict[str, Any]
    last_error: LastError | None = None
    expired_at: int | None = None
    expires_at: int | None = None  # the run's, as the hosted stream and OpenAI-DotNet expect
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: Usage | None = None
