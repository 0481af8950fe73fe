"""Official ``openai`` clients whose every JSON response is validated against the spec."""

from typing import Any

import openai

from tests.conformance import spec_available, validate

# The spec's schema for each wire ``object`` value.
SCHEMAS = {
    "assistant": "AssistantObject",
    "assistant.deleted": "DeleteAssistantResponse",
    "thread": "ThreadObject",
    "thread.deleted": "DeleteThreadResponse",
    "thread.message": "MessageObject",
    "thread.message.deleted": "DeleteMessageResponse",
    "thread.run": "RunObject",
    "thread.run.step": "RunStepObject",
    "file": "OpenAIFile",
    "vector_store": "VectorStoreObject",
    "vector_store.deleted": "DeleteVectorStoreResponse",
    "vector_store.file": "VectorStoreFileObject",
    "vector_store.file.deleted": "DeleteVectorStoreFileResponse",
    "vector_store.files_batch": "VectorStoreFileBatchObject",
    "vector_store.search_results.page": "VectorStoreSearchResultsPage",
    "vector_store.file_content.page": "VectorStoreFileContentResponse",
    "model": "Model",
}


LIST_SCHEMAS = {
    "assistant": "ListAssistantsResponse",
    "thread.message": "ListMessagesResponse",
    "thread.run": "ListRunsResponse",
    "thread.run.step": "ListRunStepsResponse",
    "file": "ListFilesResponse",
    "vector_store": "ListVectorStoresResponse",
    "vector_store.file": "ListVectorStoreFilesResponse",
}


def _validate_list(body: dict[str, Any]) -> None:
    """A page against its list schema; an empty page must carry null cursors (hosted behaviour,
    which the spec's string-typed ``first_id``/``last_id`` do not describe). The models list has
    no cursors."""
    if set(body) == {"object", "data"}:
        validate(body, "ListModelsResponse")
        for item in body["data"]:
            validate(item, "Model")
        return
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}, body.keys()
    if not body["data"]:
        assert body["first_id"] is None and body["last_id"] is None and body["has_more"] is False
        return
    for item in body["data"]:
        validate_body(item)
    kind = body["data"][0].get("object")
    if kind in LIST_SCHEMAS:
        validate(body, LIST_SCHEMAS[kind])


def validate_body(body: Any) -> None:
    """Validate one response body: an object, a list of objects, or an error envelope."""
    if not isinstance(body, dict):
        return
    if "error" in body:
        validate(body, "ErrorResponse")
        return
    kind = body.get("object")
    if kind == "file" and "deleted" in body:  # DeleteFileResponse reuses the object "file"
        validate(body, "DeleteFileResponse")
        return
    if kind == "list":
        _validate_list(body)
        return
    if kind in SCHEMAS:
        validate(body, SCHEMAS[kind])


def _check(response: Any) -> None:
    if "application/json" not in response.headers.get("content-type", ""):
        return
    response.read()
    validate_body(response.json())


def client(base_url: str, api_key: str, **options: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` client that asserts every JSON response conforms to the spec."""
    hooks = {"response": [_check]} if spec_available() else {}
    http_client = openai.DefaultHttpxClient(event_hooks=hooks)
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=base_url, api_key=api_key, http_client=http_client, **options)
