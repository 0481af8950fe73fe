"""Vector stores: request bodies, list queries and the wire objects (VectorStoreObject,
VectorStoreFileObject, VectorStoreFileBatchObject, the search and file-content pages)."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from runstep.protocol.common import ListQuery, Metadata, RequestModel
from runstep.protocol.tools import ChunkingStrategy, StaticChunking
from runstep.tools.file_search.chunking import AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS

MAX_CREATE_FILE_IDS = 500
MAX_BATCH_FILES = 2000
MAX_ATTRIBUTES = 16
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 512
DAY_SECONDS = 86_400

FileStatus = Literal["in_progress", "completed", "failed", "cancelled"]


def _check_attributes(attributes: dict[str, Any] | None) -> dict[str, Any] | None:
    if attributes is None:
        return None
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValueError(
            f"too many properties. Expected an object with at most {MAX_ATTRIBUTES} "
            f"properties, but got an object with {len(attributes)} properties instead."
        )
    for key, value in attributes.items():
        if len(key) > MAX_ATTRIBUTE_KEY:
            raise ValueError(
                f"key '{key[:80]}' is too long. Expected keys of at most {MAX_ATTRIBUTE_KEY} "
                f"characters, but got {len(key)} characters instead."
            )
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_VALUE:
            raise ValueError(
                f"value of '{key}' is too long. Expected string values of at most "
                f"{MAX_ATTRIBUTE_VALUE} characters, but got {len(value)} characters instead."
            )
    return attributes


# Smart-mode union: ``True`` stays a bool and ``1`` stays an int (echoed as sent).
AttributeValue = str | bool | int | float
Attributes = Annotated[dict[str, AttributeValue] | None, AfterValidator(_check_attributes)]


class ExpiresAfter(RequestModel):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class CreateVectorStoreRequest(RequestModel):
    file_ids: Annotated[list[str], Field(max_length=MAX_CREATE_FILE_IDS)] | None = None
    name: str | None = None
    description: str | None = None
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None


class UpdateVectorStoreRequest(RequestModel):
    name: str | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class CreateVectorStoreFileRequest(RequestModel):
    file_id: str
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes = None


BATCH_SIZE = Field(min_length=1, max_length=MAX_BATCH_FILES)


class CreateFileBatchRequest(RequestModel):
    """``file_ids`` (with the shared ``chunking_strategy``/``attributes``) or ``files``."""

    file_ids: Annotated[list[str], BATCH_SIZE] | None = None
    files: Annotated[list[CreateVectorStoreFileRequest], BATCH_SIZE] | None = None
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes = None

    @model_validator(mode="after")
    def _one_of(self) -> "CreateFileBatchRequest":
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("provide exactly one of 'file_ids' or 'files'")
        return self

    def entries(self) -> list[CreateVectorStoreFileRequest]:
        """One request per file (``file_ids`` get the top-level strategy and attributes)."""
        if self.files is not None:
            return list(self.files)
        return [
            CreateVectorStoreFileRequest(
                file_id=file_id,
                chunking_strategy=self.chunking_strategy,
                attributes=self.attributes,
            )
            for file_id in self.file_ids or []
        ]


class UpdateVectorStoreFileRequest(RequestModel):
    attributes: Attributes


class VectorStoreFileListQuery(ListQuery):
    filter: FileStatus | None = None


class ComparisonFilter(RequestModel):
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"] = "eq"
    key: str
    value: str | bool | int | float | list[str | int | float]


class CompoundFilter(RequestModel):
    type: Literal["and", "or"]
    filters: list["ComparisonFilter | CompoundFilter"]


class RankingOptions(RequestModel):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.0


class SearchRequest(RequestModel):
    query: str | Annotated[list[str], Field(min_length=1)]
    rewrite_query: bool = False
    max_num_results: Annotated[int, Field(ge=1, le=50)] = 10
    filters: ComparisonFilter | CompoundFilter | None = None
    ranking_options: RankingOptions | None = None

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


# --- wire objects ---------------------------------------------------------------------------


def chunking_wire(strategy: ChunkingStrategy | None) -> dict[str, Any]:
    """The stored and returned strategy: ``auto`` is reported as the static 800 / 400 it is."""
    if isinstance(strategy, StaticChunking):
        return {"type": "static", "static": strategy.static.model_dump(mode="json")}
    return {
        "type": "static",
        "static": {
            "max_chunk_size_tokens": AUTO_MAX_TOKENS,
            "chunk_overlap_tokens": AUTO_OVERLAP_TOKENS,
        },
    }


def zero_counts() -> dict[str, int]:
    return {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0}


def vector_store_object(
    *,
    store_id: str,
    created_at: int,
    request: CreateVectorStoreRequest,
) -> dict[str, Any]:
    """A new, empty VectorStoreObject. ``name`` is a required string in the schema, so an
    unnamed store has ``""``; ``expires_after`` is left out when there is no policy."""
    obj: dict[str, Any] = {
        "id": store_id,
        "object": "vector_store",
        "created_at": created_at,
        "name": request.name or "",
        "description": request.description,
        "usage_bytes": 0,
        "file_counts": zero_counts(),
        "status": "completed",
        "last_active_at": created_at,
        "metadata": request.metadata or {},
    }
    set_expiry(obj, request.expires_after)
    return obj


def set_expiry(obj: dict[str, Any], expires_after: ExpiresAfter | None) -> None:
    """Apply an expiration policy (None removes it) and recompute ``expires_at``."""
    if expires_after is None:
        obj.pop("expires_after", None)
    else:
        obj["expires_after"] = expires_after.model_dump(mode="json")
    refresh_expires_at(obj)


def refresh_expires_at(obj: dict[str, Any]) -> None:
    policy = obj.get("expires_after")
    if policy is None:
        obj["expires_at"] = None
    else:
        obj["expires_at"] = obj["last_active_at"] + policy["days"] * DAY_SECONDS


def vector_store_file_object(
    *,
    file_id: str,
    store_id: str,
    created_at: int,
    request: CreateVectorStoreFileRequest,
) -> dict[str, Any]:
    """A VectorStoreFileObject waiting for ingestion."""
    return {
        "id": file_id,
        "object": "vector_store.file",
        "usage_bytes": 0,
        "created_at": created_at,
        "vector_store_id": store_id,
        "status": "in_progress",
        "last_error": None,
        "chunking_strategy": chunking_wire(request.chunking_strategy),
        "attributes": request.attributes or {},
    }


def file_batch_object(*, batch_id: str, store_id: str, created_at: int) -> dict[str, Any]:
    """A VectorStoreFileBatchObject (the schema's ``object`` is ``vector_store.files_batch``)."""
    return {
        "id": batch_id,
        "object": "vector_store.files_batch",
        "created_at": created_at,
        "vector_store_id": store_id,
        "status": "in_progress",
        "file_counts": zero_counts(),
    }


def search_results_page(queries: list[str], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": items,
        "has_more": False,
        "next_page": None,
    }


def file_content_page(texts: list[str]) -> dict[str, Any]:
    return {
        "object": "vector_store.file_content.page",
        "data": [{"type": "text", "text": text} for text in texts],
        "has_more": False,
        "next_page": None,
    }


CompoundFilter.model_rebuild()
