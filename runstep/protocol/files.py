"""Files: the upload form, the list query and the OpenAIFile object."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from runstep.protocol.common import RequestModel

# createFile's enum. OpenAIFile.purpose lists the stored values, which lack "evals".
UploadPurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
MIN_EXPIRY_SECONDS = 3600
MAX_EXPIRY_SECONDS = 2_592_000


class FileExpirationAfter(RequestModel):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(ge=MIN_EXPIRY_SECONDS, le=MAX_EXPIRY_SECONDS)]


class CreateFileRequest(RequestModel):
    """The form fields beside the ``file`` part; ``expires_after[anchor]`` and
    ``expires_after[seconds]`` arrive as separate fields (how the SDKs encode objects)."""

    purpose: UploadPurpose
    expires_after: FileExpirationAfter | None = None


class FileListQuery(BaseModel):
    """``GET /v1/files``: its own limits, and no ``before`` cursor."""

    purpose: str | None = None
    limit: int = Field(10_000, ge=1, le=10_000)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


def form_body(fields: dict[str, str]) -> dict[str, Any]:
    """Form fields as a request body: ``a[b]=v`` becomes ``{"a": {"b": v}}``."""
    body: dict[str, Any] = {}
    for name, value in fields.items():
        outer, bracket, rest = name.partition("[")
        if bracket and rest.endswith("]") and "[" not in rest:
            nested = body.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[rest[:-1]] = value
                continue
        body[name] = value
    return body


def file_object(
    *,
    file_id: str,
    size: int,
    created_at: int,
    filename: str,
    purpose: str,
    expires_at: int | None,
) -> dict[str, Any]:
    """An OpenAIFile. ``expires_at`` and ``status_details`` are optional non-nullable strings
    and integers in the spec, so they are left out rather than null."""
    obj: dict[str, Any] = {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created_at,
    }
    if expires_at is not None:
        obj["expires_at"] = expires_at
    obj.update(filename=filename, purpose=purpose, status="processed")
    return obj
