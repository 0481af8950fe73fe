"""``/v1/files``."""

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from runstep.api.context import Context
from runstep.errors import InvalidRequest
from runstep.protocol.files import CreateFileRequest, FileListQuery, form_body
from runstep.services import files

router = APIRouter(prefix="/v1/files", tags=["files"])


def _create_request(fields: dict[str, str]) -> CreateFileRequest:
    """The upload's form fields, checked like a JSON body (same 400s and ``param``s)."""
    body = form_body(fields)
    try:
        return CreateFileRequest.model_validate(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors, body=body) from None


def _attachment(filename: str) -> str:
    """A ``Content-Disposition`` for ``filename`` (RFC 6266, UTF-8 names percent-encoded)."""
    quoted = quote(filename, safe="")
    if quoted == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quoted}"


@router.post("")
async def create_file(request: Request, ctx: Context) -> dict[str, Any]:
    """Multipart ``file`` + ``purpose`` (+ ``expires_after[...]``), streamed, never buffered."""
    limit = ctx.runtime.settings.max_file_bytes
    try:
        return await files.create(
            ctx.db,
            ctx.runtime.blobs,
            ctx.project_id,
            request.headers,
            request.stream(),
            limit,
            _create_request,
        )
    except ClientDisconnect:
        raise InvalidRequest("The client disconnected before the upload finished.") from None


@router.get("")
async def list_files(query: Annotated[FileListQuery, Query()], ctx: Context) -> dict[str, Any]:
    return await files.list_files(ctx.db, ctx.project_id, query)


@router.get("/{file_id}")
async def get_file(file_id: str, ctx: Context) -> dict[str, Any]:
    return await files.retrieve(ctx.db, ctx.project_id, file_id)


@router.delete("/{file_id}")
async def delete_file(file_id: str, ctx: Context) -> dict[str, Any]:
    return await files.delete(ctx.db, ctx.runtime.blobs, ctx.project_id, file_id)


@router.get("/{file_id}/content")
async def get_file_content(file_id: str, ctx: Context) -> StreamingResponse:
    obj, chunks = await files.content(ctx.db, ctx.runtime.blobs, ctx.project_id, file_id)
    headers = {
        "content-length": str(obj["bytes"]),
        "content-disposition": _attachment(obj["filename"]),
    }
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
