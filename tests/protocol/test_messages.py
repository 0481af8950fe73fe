"""Fuzz target for the message content parser (``runstep.protocol.messages``): any JSON as
``content`` is either refused with a validation error (a 400) or parsed, and parsed content is
stored as parts the official spec accepts in a MessageObject, text kept exactly."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from runstep.protocol.messages import CreateMessageRequest, content_wire
from tests.conformance import requires_spec, validate

DETAIL = st.sampled_from(["auto", "low", "high"])
TEXT_PART = st.fixed_dictionaries({"type": st.just("text"), "text": st.text()})
IMAGE_FILE = st.fixed_dictionaries(
    {
        "type": st.just("image_file"),
        "image_file": st.fixed_dictionaries({"file_id": st.text()}, optional={"detail": DETAIL}),
    }
)
IMAGE_URL = st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.fixed_dictionaries(
            {
                "url": st.sampled_from(["https://", "http://", "data:image/"]).flatmap(
                    lambda scheme: st.text().map(lambda rest: scheme + rest)
                )
            },
            optional={"detail": DETAIL},
        ),
    }
)
VALID = st.text() | st.lists(TEXT_PART | IMAGE_FILE | IMAGE_URL, min_size=1, max_size=5)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["type", "text", "image_file", "image_url", "x"]), inner)
    ),
    max_leaves=10,
)


def message(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "object": "thread.message",
        "created_at": 0,
        "thread_id": "thread_1",
        "status": "completed",
        "incomplete_details": None,
        "completed_at": 0,
        "incomplete_at": None,
        "role": "user",
        "content": content,
        "assistant_id": None,
        "run_id": None,
        "attachments": [],
        "metadata": {},
    }


@requires_spec
@settings(max_examples=300, deadline=None)
@given(content=VALID)
def test_valid_content_is_stored_as_spec_parts_with_its_text(content: Any) -> None:
    request = CreateMessageRequest.model_validate({"role": "user", "content": content})
    parts = content_wire(request.content)
    validate(message(parts), "MessageObject")
    given_parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    assert len(parts) == len(given_parts)
    for stored, sent in zip(parts, given_parts, strict=True):
        assert stored["type"] == sent["type"]
        if sent["type"] == "text":
            assert stored["text"] == {"value": sent["text"], "annotations": []}


@requires_spec
@settings(max_examples=500, deadline=None)
@given(content=ANY_JSON | VALID)
def test_any_content_is_parsed_or_refused_with_a_validation_error(content: Any) -> None:
    try:
        request = CreateMessageRequest.model_validate({"role": "user", "content": content})
    except ValidationError:
        return  # the API answers 400
    validate(message(content_wire(request.content)), "MessageObject")
