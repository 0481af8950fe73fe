"""Tool definitions, tool resources and response formats (shared by assistants and runs)."""

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from runstep.protocol.common import FunctionName, Metadata, RequestModel


class FunctionDefinition(RequestModel):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = False


class FunctionTool(RequestModel):
    type: Literal["function"]
    function: FunctionDefinition


class FileSearchRankingOptions(RequestModel):
    ranker: Literal["auto", "default_2024_08_21"] = "auto"
    score_threshold: float = Field(ge=0, le=1)


class FileSearchSettings(RequestModel):
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: FileSearchRankingOptions | None = None


class FileSearchTool(RequestModel):
    type: Literal["file_search"]
    file_search: FileSearchSettings | None = None


class CodeInterpreterTool(RequestModel):
    type: Literal["code_interpreter"]


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]


def tools_wire(tools: list[Tool]) -> list[dict[str, Any]]:
    """Tools as returned on assistants and runs (unset optional fields left out)."""
    return [tool.model_dump(mode="json", exclude_none=True) for tool in tools]


class ChunkingStrategyStatic(RequestModel):
    max_chunk_size_tokens: int = Field(ge=100, le=4096)
    chunk_overlap_tokens: int = Field(ge=0)

    @model_validator(mode="after")
    def _overlap_at_most_half(self) -> "ChunkingStrategyStatic":
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens")
        return self


class AutoChunking(RequestModel):
    type: Literal["auto"]


class StaticChunking(RequestModel):
    type: Literal["static"]
    static: ChunkingStrategyStatic


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


class CodeInterpreterResources(RequestModel):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class VectorStoreHelper(RequestModel):
    """The create-time helper that makes a vector store from files."""

    file_ids: list[str] = Field(default_factory=list, max_length=10_000)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None


class FileSearchResources(RequestModel):
    vector_store_ids: list[str] | None = Field(None, max_length=1)
    vector_stores: list[VectorStoreHelper] | None = Field(None, max_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> "FileSearchResources":
        if self.vector_store_ids is not None and self.vector_stores is not None:
            raise ValueError("provide either vector_store_ids or vector_stores, not both")
        return self


class ToolResources(RequestModel):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class ResponseFormatText(RequestModel):
    type: Literal["text"]


class ResponseFormatJsonObject(RequestModel):
    type: Literal["json_object"]


class JsonSchema(RequestModel):
    name: FunctionName
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = False


class ResponseFormatJsonSchema(RequestModel):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
        Field(discriminator="type"),
    ]
)


def response_format_wire(value: ResponseFormat | None) -> str | dict[str, Any]:
    """The stored and returned form of a response format (``"auto"`` when unset)."""
    if value is None or isinstance(value, str):
        return "auto"
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)
