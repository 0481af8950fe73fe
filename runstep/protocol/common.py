"""Building blocks shared by every resource: request base, metadata, lists, deletions."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, as the spec's ``additionalProperties: false``."""

    model_config = ConfigDict(extra="forbid")


class WireModel(BaseModel):
    """A response object: serialized with every key, explicit nulls included."""

    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def _check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ValueError(
            f"too many properties. Expected an object with at most {MAX_METADATA_PAIRS} "
            f"properties, but got an object with {len(metadata)} properties instead."
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise ValueError(
                f"key '{key[:80]}' is too long. Expected keys of at most {MAX_METADATA_KEY} "
                f"characters, but got {len(key)} characters instead."
            )
        if len(value) > MAX_METADATA_VALUE:
            raise ValueError(
                f"value of '{key}' is too long. Expected values of at most {MAX_METADATA_VALUE} "
                f"characters, but got {len(value)} characters instead."
            )
    return metadata


Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]
FUNCTION_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
FunctionName = Annotated[str, Field(pattern=FUNCTION_NAME_PATTERN)]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(ge=0, le=1)]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class ListQuery(BaseModel):
    """The query of every Assistants list endpoint."""

    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A list response; ``first_id``/``last_id`` are null on an empty page (hosted behaviour)."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def deleted_object(object_id: str, kind: str) -> dict[str, Any]:
    """A deletion response, e.g. ``{"id", "object": "assistant.deleted", "deleted": true}``."""
    return {"id": object_id, "object": kind, "deleted": True}
