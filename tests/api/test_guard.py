"""Fuzz target for the request guard's text check (``runstep.api.guard.check_text``): a JSON
body is refused exactly when one of its strings holds a NUL or an unpaired surrogate, however
the client escapes it; and the stream limiter's per-key bound."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstep.api.guard import check_text
from runstep.api.limits import StreamLimiter
from runstep.errors import InvalidRequest, RateLimited

# Any code point, unpaired surrogates and NUL included.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(s for item in value.values() for s in strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def unstorable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True  # an unpaired surrogate
    return "\x00" in text


@settings(max_examples=500, deadline=None)
@given(value=JSON, ascii_only=st.booleans())
def test_a_body_is_refused_exactly_when_a_string_cannot_be_stored(
    value: object, ascii_only: bool
) -> None:
    bad = any(unstorable(text) for text in strings(value))
    if bad and not ascii_only:
        ascii_only = True  # unpaired surrogates have no UTF-8: a client must escape them
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    if bad:
        with pytest.raises(InvalidRequest):
            check_text(body)
    else:
        check_text(body)


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (rb'"\u0000"', True),
        (rb'"\\\u0000"', True),  # an escaped backslash, then the escape
        (rb'"\\u0000"', False),  # a backslash and the text u0000
        (rb'"\\\\u0000"', False),
        (rb'"\ud800\\"', True),
        (rb'"\\ud800"', False),
        (rb'"\ud83d\ude00"', False),  # a pair: one character
        (rb'"\ude00\ud83d"', True),  # the wrong way round
    ],
)
def test_only_real_escapes_count(body: bytes, refused: bool) -> None:
    if refused:
        with pytest.raises(InvalidRequest):
            check_text(body)
    else:
        check_text(body)
        json.loads(body)


def test_streams_are_bounded_per_key_and_given_back() -> None:
    streams = StreamLimiter(limit=3, per_key=2)
    streams.acquire("a")
    streams.acquire("a")
    with pytest.raises(RateLimited) as refused:
        streams.acquire("a")
    assert refused.value.headers["Retry-After"] == "1"
    streams.acquire("b")
    with pytest.raises(RateLimited):  # the process bound
        streams.acquire("c")
    streams.release("a")
    streams.acquire("c")
    for key in ("a", "b", "c"):
        streams.release(key)
    assert streams.open == 0 and not streams._by_key
