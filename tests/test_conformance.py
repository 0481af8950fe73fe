"""Prove that ``conformance`` accepts the spec's canonical shapes and rejects broken ones."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import (
    CACHE_PATH,
    SPEC_PATH,
    _load_components,
    requires_spec,
    validate,
    validate_event,
)

pytestmark = requires_spec

JSON = dict[str, Any]
MISSING = object()

# --- canonical fixtures (spec-notes section 8 and 11) -----------------------------------------


def queued_run() -> JSON:
    """A run just created; ``instructions`` is a required string: "" instead of the note's null."""
    return {
        "id": "run_123", "object": "thread.run", "created_at": 1710330640,
        "assistant_id": "asst_123", "thread_id": "thread_123", "status": "queued",
        "started_at": None, "expires_at": 1710331240, "cancelled_at": None, "failed_at": None,
        "completed_at": None, "required_action": None, "last_error": None, "model": "gpt-4o",
        "instructions": "", "tools": [], "metadata": {}, "temperature": 1.0, "top_p": 1.0,
        "max_completion_tokens": None, "max_prompt_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "incomplete_details": None, "usage": None, "response_format": "auto",
        "tool_choice": "auto", "parallel_tool_calls": True,
    }


def tool_calls_step() -> JSON:
    """A completed tool_calls step after submit, with ``metadata`` and ``expired_at`` added."""
    call = {
        "id": "call_iWr0kQ2EaYMaxNdl0v3KYkx7", "type": "function",
        "function": {
            "name": "get_current_weather",
            "arguments": '{"location":"San Francisco, CA","unit":"fahrenheit"}',
            "output": "70 degrees and sunny.",
        },
    }
    return {
        "id": "step_001", "object": "thread.run.step", "created_at": 1710352449,
        "run_id": "run_123", "assistant_id": "asst_123", "thread_id": "thread_123",
        "type": "tool_calls", "status": "completed", "cancelled_at": None,
        "completed_at": 1710352475, "expires_at": 1710353047, "expired_at": None,
        "failed_at": None, "last_error": None, "metadata": {},
        "step_details": {"type": "tool_calls", "tool_calls": [call]},
        "usage": {"prompt_tokens": 291, "completion_tokens": 24, "total_tokens": 315},
    }


def message_creation_step() -> JSON:
    """The retrieve-step example (message_creation) with ``metadata`` added."""
    return {
        "id": "step_abc123", "object": "thread.run.step", "created_at": 1699063291,
        "run_id": "run_abc123", "assistant_id": "asst_abc123", "thread_id": "thread_abc123",
        "type": "message_creation", "status": "completed", "cancelled_at": None,
        "completed_at": 1699063291, "expired_at": None, "failed_at": None, "last_error": None,
        "step_details": {
            "type": "message_creation", "message_creation": {"message_id": "msg_abc123"},
        },
        "usage": {"prompt_tokens": 123, "completion_tokens": 456, "total_tokens": 579},
        "metadata": {},
    }


def user_message() -> JSON:
    """A user message created via the API, with the status fields the schema requires."""
    return {
        "id": "msg_abc123", "object": "thread.message", "created_at": 1713226573,
        "assistant_id": None, "thread_id": "thread_abc123", "run_id": None, "role": "user",
        "content": [{"type": "text", "text": {"value": "How does AI work?", "annotations": []}}],
        "attachments": [], "metadata": {}, "status": "completed", "incomplete_details": None,
        "completed_at": 1713226573, "incomplete_at": None,
    }


def assistant() -> JSON:
    """The third assistant of the spec's ListAssistantsResponse example."""
    return {
        "id": "asst_abc789", "object": "assistant", "created_at": 1698982643, "name": None,
        "description": None, "model": "gpt-4o", "instructions": None, "tools": [],
        "tool_resources": {}, "metadata": {}, "top_p": 1.0, "temperature": 1.0,
        "response_format": "auto",
    }


def assistant_list() -> JSON:
    return {"object": "list", "data": [assistant()], "first_id": "asst_abc789",
            "last_id": "asst_abc789", "has_more": False}


def message_list() -> JSON:
    return {"object": "list", "data": [user_message()], "first_id": "msg_abc123",
            "last_id": "msg_abc123", "has_more": False}


def error_response() -> JSON:
    return {"error": {"message": "No run found with id 'run_x'.", "type": "invalid_request_error",
                      "param": None, "code": None}}


def thread() -> JSON:
    return {"id": "thread_abc123", "object": "thread", "created_at": 1699012949,
            "metadata": {}, "tool_resources": {}}


def step_delta() -> JSON:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "", "output": None}}
    return {"id": "step_001", "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}}}


def message_delta() -> JSON:
    part = {"index": 0, "type": "text", "text": {"value": "Hel", "annotations": []}}
    return {"id": "msg_abc123", "object": "thread.message.delta", "delta": {"content": [part]}}


def mutated(obj: JSON, path: tuple[str | int, ...], value: object) -> JSON:
    """A deep copy of ``obj`` with ``path`` set to ``value`` (removed when ``value`` is MISSING)."""
    out = copy.deepcopy(obj)
    parent: Any = out
    for key in path[:-1]:
        parent = parent[key]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


# --- canonical shapes conform -----------------------------------------------------------------

CONFORMING: list[tuple[str, Callable[[], JSON]]] = [
    ("RunObject", queued_run),
    ("RunStepObject", tool_calls_step),
    ("RunStepObject", message_creation_step),
    ("MessageObject", user_message),
    ("AssistantObject", assistant),
    ("ThreadObject", thread),
    ("ListAssistantsResponse", assistant_list),
    ("ListMessagesResponse", message_list),
    ("ErrorResponse", error_response),
    ("RunStepDeltaObject", step_delta),
    ("MessageDeltaObject", message_delta),
]


@pytest.mark.parametrize(("schema", "fixture"), CONFORMING, ids=lambda v: getattr(v, "__name__", v))
def test_canonical_fixture_conforms(schema: str, fixture: Callable[[], JSON]) -> None:
    validate(fixture(), schema)


@pytest.mark.parametrize(
    ("schema", "obj"),
    [
        ("DeleteThreadResponse", {"id": "thread_1", "object": "thread.deleted", "deleted": True}),
        ("DeleteAssistantResponse",
         {"id": "asst_1", "object": "assistant.deleted", "deleted": True}),
        ("DeleteMessageResponse",
         {"id": "msg_1", "object": "thread.message.deleted", "deleted": True}),
        ("OpenAIFile", {"id": "file-abc123", "object": "file", "bytes": 120000,
                        "created_at": 1677610602, "expires_at": 1677614202,
                        "filename": "mydata.jsonl", "purpose": "fine-tune", "status": "processed"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_small_objects_conform(schema: str, obj: JSON) -> None:
    validate(obj, schema)


@pytest.mark.parametrize(
    "path",
    [("temperature",), ("top_p",), ("expires_at",), ("truncation_strategy",), ("tool_choice",),
     ("response_format",), ("max_prompt_tokens",)],
    ids=lambda p: p[0],
)
def test_run_accepts_null_where_openapi_30_says_nullable(path: tuple[str, ...]) -> None:
    validate(mutated(queued_run(), path, None), "RunObject")


# --- broken shapes are rejected ---------------------------------------------------------------

REJECTED: list[tuple[str, str, Callable[[], JSON], tuple[str | int, ...], object, str]] = [
    ("run-missing-status", "RunObject", queued_run, ("status",), MISSING,
     "$: 'status' is a required property"),
    ("run-bad-status", "RunObject", queued_run, ("status",), "running",
     "$.status: 'running' is not one of"),
    ("run-string-timestamp", "RunObject", queued_run, ("created_at",), "1710330640",
     "$.created_at: '1710330640' is not of type 'integer'"),
    ("run-null-instructions", "RunObject", queued_run, ("instructions",), None,
     "$.instructions: None is not of type 'string'"),
    ("run-null-parallel", "RunObject", queued_run, ("parallel_tool_calls",), None,
     "$.parallel_tool_calls: None is not of type 'boolean'"),
    ("run-bad-temperature", "RunObject", queued_run, ("temperature",), "hot",
     "$.temperature: 'hot' is not of type 'number', 'null'"),
    ("run-bad-truncation", "RunObject", queued_run, ("truncation_strategy", "type"), "oldest",
     "$.truncation_strategy"),
    ("step-missing-expired-at", "RunStepObject", tool_calls_step, ("expired_at",), MISSING,
     "$: 'expired_at' is a required property"),
    ("step-bad-type", "RunStepObject", tool_calls_step, ("type",), "function_call",
     "$.type: 'function_call' is not one of"),
    ("step-null-id", "RunStepObject", tool_calls_step, ("id",), None,
     "$.id: None is not of type 'string'"),
    ("step-call-without-output", "RunStepObject", tool_calls_step,
     ("step_details", "tool_calls", 0, "function", "output"), MISSING,
     "'output' is a required property"),
    ("message-missing-incomplete-at", "MessageObject", user_message, ("incomplete_at",), MISSING,
     "$: 'incomplete_at' is a required property"),
    ("message-system-role", "MessageObject", user_message, ("role",), "system",
     "$.role: 'system' is not one of"),
    ("message-null-status", "MessageObject", user_message, ("status",), None,
     "$.status: None is not one of"),
    ("message-numeric-text", "MessageObject", user_message, ("content", 0, "text", "value"), 42,
     "$.content[0]"),
    ("list-string-has-more", "ListMessagesResponse", message_list, ("has_more",), "no",
     "$.has_more: 'no' is not of type 'boolean'"),
    ("list-bad-item", "ListMessagesResponse", message_list, ("data", 0, "object"), "message",
     "$.data[0].object: 'message' is not one of"),
    ("list-null-first-id", "ListAssistantsResponse", assistant_list, ("first_id",), None,
     "$.first_id: None is not of type 'string'"),
    ("error-missing-param", "ErrorResponse", error_response, ("error", "param"), MISSING,
     "$.error: 'param' is a required property"),
    ("error-null-message", "ErrorResponse", error_response, ("error", "message"), None,
     "$.error.message: None is not of type 'string'"),
    ("step-delta-without-index", "RunStepDeltaObject", step_delta,
     ("delta", "step_details", "tool_calls", 0, "index"), MISSING,
     "'index' is a required property"),
]


@pytest.mark.parametrize(
    ("schema", "fixture", "path", "value", "expected"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
def test_mutated_fixture_is_rejected(
    schema: str, fixture: Callable[[], JSON], path: tuple[str | int, ...], value: object,
    expected: str,
) -> None:
    with pytest.raises(AssertionError) as caught:
        validate(mutated(fixture(), path, value), schema)
    assert expected in str(caught.value)


def test_every_error_is_listed() -> None:
    run = mutated(mutated(queued_run(), ("status",), "done"), ("model",), MISSING)
    with pytest.raises(AssertionError, match=r"RunObject does not conform \(2 errors\)") as caught:
        validate(run, "RunObject")
    assert "$: 'model' is a required property" in str(caught.value)
    assert "$.status: 'done' is not one of" in str(caught.value)


def test_unknown_schema_name_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="ListThreadsResponse"):
        validate({}, "ListThreadsResponse")


# --- stream events ----------------------------------------------------------------------------

EVENTS: list[tuple[str, Callable[[], object]]] = [
    ("thread.created", thread),
    ("thread.run.created", queued_run),
    ("thread.run.queued", queued_run),
    ("thread.run.step.created", tool_calls_step),
    ("thread.run.step.delta", step_delta),
    ("thread.run.step.completed", message_creation_step),
    ("thread.message.created", user_message),
    ("thread.message.delta", message_delta),
    ("thread.message.completed", user_message),
    ("error", lambda: error_response()["error"]),
    ("error", error_response),
    ("done", lambda: "[DONE]"),
]


@pytest.mark.parametrize(("event", "data"), EVENTS, ids=[e for e, _ in EVENTS])
def test_stream_event_data_conforms(event: str, data: Callable[[], object]) -> None:
    validate_event(event, data())


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        ("thread.run.completed", tool_calls_step, "(RunObject)"),
        ("thread.run.step.in_progress", step_delta, "(RunStepObject)"),
        ("thread.run.step.delta", tool_calls_step, "(RunStepDeltaObject)"),
        ("thread.message.in_progress", message_delta, "(MessageObject)"),
        ("thread.message.delta", user_message, "(MessageDeltaObject)"),
        ("thread.created", queued_run, "(ThreadObject)"),
        ("error", lambda: {"message": "boom"}, "(Error)"),
        ("done", lambda: "DONE", "$: 'DONE' is not one of"),
        ("thread.run.started", queued_run, "unknown Assistants stream event"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_mismatched_stream_event_is_rejected(
    event: str, data: Callable[[], object], expected: str
) -> None:
    with pytest.raises(AssertionError) as caught:
        validate_event(event, data())
    assert expected in str(caught.value)


# --- translation and disk cache (on a tiny spec, so they stay fast) ---------------------------

TINY_SPEC = """\
openapi: 3.1.0
components:
  schemas:
    Thing:
      type: object
      required: [when, kind, ref, filter]
      properties:
        when: {type: integer, nullable: true}
        kind: {type: string, enum: [a, b], nullable: true}
        ref:
          allOf:
            - $ref: '#/components/schemas/Other'
            - nullable: true
        filter: {$ref: '#/components/schemas/Filter'}
        description: {type: string, example: 2024-10-01}
    Other:
      type: object
      required: [x]
      properties: {x: {type: number, minimum: 0, exclusiveMinimum: true}}
    Untyped: {properties: {a: {type: string}}}
    Filter:
      $recursiveAnchor: true
      type: object
      properties:
        filters: {type: array, items: {$recursiveRef: '#'}}
"""


def test_tiny_spec_is_translated_and_cached(tmp_path: Path) -> None:
    spec, cache = tmp_path / "spec.yaml", tmp_path / "cache" / "components.json"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    schemas = _load_components(spec, cache)["schemas"]
    thing = schemas["Thing"]["properties"]
    assert thing["when"] == {"type": ["integer", "null"]}
    assert thing["kind"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert thing["ref"] == {"anyOf": [{"allOf": [{"$ref": "#/components/schemas/Other"}]},
                                      {"type": "null"}]}
    assert thing["description"] == {"type": "string"}
    assert schemas["Other"]["properties"]["x"] == {"type": "number", "exclusiveMinimum": 0}
    assert schemas["Untyped"]["type"] == "object"
    filters = schemas["Filter"]["properties"]["filters"]
    assert filters["items"] == {"$ref": "#/components/schemas/Filter"}
    assert cache.is_file()
    assert _load_components(spec, cache)["schemas"] == schemas


def test_cache_is_refreshed_when_the_spec_changes(tmp_path: Path) -> None:
    spec, cache = tmp_path / "spec.yaml", tmp_path / "components.json"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    _load_components(spec, cache)
    spec.write_text(TINY_SPEC.replace("Other", "Another"), encoding="utf-8")
    os.utime(spec, ns=(1, 1))
    assert "Another" in _load_components(spec, cache)["schemas"]


def test_real_spec_is_cached_beside_the_repository() -> None:
    validate(thread(), "ThreadObject")  # loads the components (once per process)
    assert SPEC_PATH.is_file()
    assert CACHE_PATH.is_file()


@pytest.mark.parametrize(
    "name",
    [
        "AssistantObject", "ThreadObject", "MessageObject", "RunObject", "RunStepObject",
        "RunStepDeltaObject", "MessageDeltaObject", "OpenAIFile", "VectorStoreObject",
        "VectorStoreFileObject", "VectorStoreFileBatchObject", "ListAssistantsResponse",
        "ListMessagesResponse", "ListRunsResponse", "ListRunStepsResponse", "ListFilesResponse",
        "ListVectorStoresResponse", "ListVectorStoreFilesResponse", "DeleteAssistantResponse",
        "DeleteThreadResponse", "DeleteMessageResponse", "DeleteFileResponse",
        "DeleteVectorStoreResponse", "DeleteVectorStoreFileResponse", "ErrorResponse", "Error",
    ],
)
def test_documented_schema_exists_and_rejects_null(name: str) -> None:
    with pytest.raises(AssertionError, match=f"^{name} does not conform"):
        validate(None, name)
