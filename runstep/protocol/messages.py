"""Messages: request content parts, attachments, and the MessageObject."""

from typing import Annotated, Any, Literal

from pydantic import Field

from runstep.protocol.common import Metadata, RequestModel, WireModel

Detail = Literal["auto", "low", "high"]


class TextPartRequest(RequestModel):
    type: Literal["text"]
    text: str


class ImageFile(RequestModel):
    file_id: str
    detail: Detail = "auto"


class ImageFilePart(RequestModel):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrl(RequestModel):
    url: Annotated[str, Field(pattern=r"^(https?://|data:image/)")]
    detail: Detail = "auto"


class ImageUrlPart(RequestModel):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPartRequest = Annotated[
    TextPartRequest | ImageFilePart | ImageUrlPart, Field(discriminator="type")
]


class AttachmentTool(RequestModel):
    type: Literal["code_interpreter", "file_search"]


class Attachment(RequestModel):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class CreateMessageRequest(RequestModel):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPartRequest], Field(min_length=1)]
    attachments: list[Attachment] | None = None
    metadata: Metadata | None = None


class ModifyMessageRequest(RequestModel):
    metadata: Metadata | None = None


class MessageListQuery(RequestModel):
    run_id: str | None = None


def text_part(value: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A response text content part."""
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}


def content_wire(content: str | list[ContentPartRequest]) -> list[dict[str, Any]]:
    """Request content as stored and returned: strings and text parts become text objects."""
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPartRequest):
            parts.append(text_part(part.text))
        else:
            parts.append(part.model_dump(mode="json"))
    return parts


class IncompleteDetails(WireModel):
    reason: Literal["content_filter", "max_tokens", "run_cancelled", "run_expired", "run_failed"]


class MessageObject(WireModel):
    id: str
    object: Literal["thread.message"] = "thread.message"
    created_at: int
    thread_id: str
    status: Literal["in_progress", "incomplete", "completed"]
    incomplete_details: IncompleteDetails | None = None
    completed_at: int | None = None
    incomplete_at: int | None = None
    role: Literal["user", "assistant"]
    content: list[dict[str, Any]]
    assistant_id: str | None = None
    run_id: str | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
