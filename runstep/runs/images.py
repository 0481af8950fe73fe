"""``image_file`` message parts as image input: the files' bytes as base64 data URLs."""

import base64
import logging
import mimetypes
from collections.abc import Iterable
from typing import Any

from runstep.errors import NotFound
from runstep.files.storage import BlobStore
from runstep.services import files
from runstep.store.db import Database

log = logging.getLogger("runstep.images")
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # the hosted API's per-image limit


def image_file_ids(messages: Iterable[dict[str, Any]]) -> set[str]:
    """The file ids of every ``image_file`` part in ``messages``."""
    return {
        part["image_file"]["file_id"]
        for message in messages
        for part in message["content"]
        if part["type"] == "image_file"
    }


async def data_urls(
    db: Database, blobs: BlobStore, project_id: str, file_ids: Iterable[str]
) -> dict[str, str]:
    """``file_id → data:`` URL for each image this project owns (missing ones are skipped)."""
    urls: dict[str, str] = {}
    for file_id in sorted(file_ids):
        try:
            obj, chunks = await files.content(db, blobs, project_id, file_id)
        except NotFound:
            log.warning("image file %s is gone; the model will not see it", file_id)
            continue
        if obj["bytes"] > MAX_IMAGE_BYTES:
            log.warning("image file %s is over %d bytes; skipped", file_id, MAX_IMAGE_BYTES)
            continue
        data = b"".join([chunk async for chunk in chunks])
        kind = mimetypes.guess_type(obj["filename"])[0] or "image/png"
        urls[file_id] = f"data:{kind};base64,{base64.b64encode(data).decode()}"
    return urls
