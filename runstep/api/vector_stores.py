"""``/v1/vector_stores``: stores, their files, file batches and search."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from runstep.api.context import Context, polled
from runstep.protocol.common import ListQuery
from runstep.protocol.vector_stores import (
    CreateFileBatchRequest,
    CreateVectorStoreFileRequest,
    CreateVectorStoreRequest,
    SearchRequest,
    UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest,
    VectorStoreFileListQuery,
)
from runstep.services import vector_stores

router = APIRouter(prefix="/v1/vector_stores", tags=["vector_stores"])


# --- stores ---------------------------------------------------------------------------------


@router.post("")
async def create_vector_store(body: CreateVectorStoreRequest, ctx: Context) -> JSONResponse:
    return polled(ctx, await vector_stores.create(ctx.db, ctx.runtime.bus, ctx.project_id, body))


@router.get("")
async def list_vector_stores(query: Annotated[ListQuery, Query()], ctx: Context) -> dict[str, Any]:
    return await vector_stores.list_stores(ctx.db, ctx.project_id, query)


@router.get("/{vector_store_id}")
async def get_vector_store(vector_store_id: str, ctx: Context) -> JSONResponse:
    return polled(ctx, await vector_stores.retrieve(ctx.db, ctx.project_id, vector_store_id))


@router.post("/{vector_store_id}")
async def modify_vector_store(
    vector_store_id: str, body: UpdateVectorStoreRequest, ctx: Context
) -> dict[str, Any]:
    return await vector_stores.modify(ctx.db, ctx.project_id, vector_store_id, body)


@router.delete("/{vector_store_id}")
async def delete_vector_store(vector_store_id: str, ctx: Context) -> dict[str, Any]:
    return await vector_stores.delete(ctx.db, ctx.project_id, vector_store_id)


@router.post("/{vector_store_id}/search")
async def search_vector_store(
    vector_store_id: str, body: SearchRequest, ctx: Context
) -> dict[str, Any]:
    return await vector_stores.search(ctx.db, ctx.project_id, vector_store_id, body)


# --- files ----------------------------------------------------------------------------------


@router.post("/{vector_store_id}/files")
async def create_vector_store_file(
    vector_store_id: str, body: CreateVectorStoreFileRequest, ctx: Context
) -> JSONResponse:
    obj = await vector_stores.create_file(
        ctx.db, ctx.runtime.bus, ctx.project_id, vector_store_id, body
    )
    return polled(ctx, obj)


@router.get("/{vector_store_id}/files")
async def list_vector_store_files(
    vector_store_id: str, query: Annotated[VectorStoreFileListQuery, Query()], ctx: Context
) -> dict[str, Any]:
    return await vector_stores.list_files(ctx.db, ctx.project_id, vector_store_id, query)


@router.get("/{vector_store_id}/files/{file_id}")
async def get_vector_store_file(vector_store_id: str, file_id: str, ctx: Context) -> JSONResponse:
    obj = await vector_stores.retrieve_file(ctx.db, ctx.project_id, vector_store_id, file_id)
    return polled(ctx, obj)


@router.post("/{vector_store_id}/files/{file_id}")
async def update_vector_store_file(
    vector_store_id: str, file_id: str, body: UpdateVectorStoreFileRequest, ctx: Context
) -> dict[str, Any]:
    return await vector_stores.update_file(ctx.db, ctx.project_id, vector_store_id, file_id, body)


@router.delete("/{vector_store_id}/files/{file_id}")
async def delete_vector_store_file(
    vector_store_id: str, file_id: str, ctx: Context
) -> dict[str, Any]:
    return await vector_stores.delete_file(ctx.db, ctx.project_id, vector_store_id, file_id)


@router.get("/{vector_store_id}/files/{file_id}/content")
async def get_vector_store_file_content(
    vector_store_id: str, file_id: str, ctx: Context
) -> dict[str, Any]:
    return await vector_stores.file_content(
        ctx.db, ctx.runtime.blobs, ctx.project_id, vector_store_id, file_id
    )


# --- file batches ---------------------------------------------------------------------------


@router.post("/{vector_store_id}/file_batches")
async def create_file_batch(
    vector_store_id: str, body: CreateFileBatchRequest, ctx: Context
) -> JSONResponse:
    obj = await vector_stores.create_batch(
        ctx.db, ctx.runtime.bus, ctx.project_id, vector_store_id, body
    )
    return polled(ctx, obj)


@router.get("/{vector_store_id}/file_batches/{batch_id}")
async def get_file_batch(vector_store_id: str, batch_id: str, ctx: Context) -> JSONResponse:
    obj = await vector_stores.retrieve_batch(ctx.db, ctx.project_id, vector_store_id, batch_id)
    return polled(ctx, obj)


@router.post("/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(vector_store_id: str, batch_id: str, ctx: Context) -> dict[str, Any]:
    return await vector_stores.cancel_batch(ctx.db, ctx.project_id, vector_store_id, batch_id)


@router.get("/{vector_store_id}/file_batches/{batch_id}/files")
async def list_file_batch_files(
    vector_store_id: str,
    batch_id: str,
    query: Annotated[VectorStoreFileListQuery, Query()],
    ctx: Context,
) -> dict[str, Any]:
    return await vector_stores.list_files(
        ctx.db, ctx.project_id, vector_store_id, query, batch_id=batch_id
    )
