"""Fuzz target for the SSE encoder (``runstep.api.sse``): whatever an event's name and data,
a parser following the HTML standard reads back exactly one event, with that name (line
breaks dropped) and that data (line breaks as the standard joins them), and no other field."""

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from runstep.api.sse import _frame, _ping
from runstep.store.events import encode

LINE = re.compile(r"\r\n|\r|\n")
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def parse(stream: str) -> list[dict[str, str]]:
    """Events of an SSE stream as the HTML standard reads them (comments skipped)."""
    events, fields = [], {}
    for line in LINE.split(stream):
        if not line:
            if fields:
                events.append(fields)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value
    return events


def test_a_ping_is_a_comment_only() -> None:
    encoded = _ping().encode().decode()
    assert encoded == ": ping\n\n" and parse(encoded) == []


@settings(max_examples=300, deadline=None)
@given(name=st.text(min_size=1), value=JSON)
def test_json_data_reads_back_as_one_event(name: str, value: object) -> None:
    encoded = _frame(name, encode(value)).encode().decode("utf-8")
    assert encoded.endswith("\n\n")
    [event] = parse(encoded)
    assert set(event) == {"event", "data"}
    assert event["event"] == LINE.sub("", name)  # "event: " + the name without line breaks
    assert json.loads(event["data"]) == value
    assert encoded.count("\ndata:") + encoded.startswith("data:") == 1  # one line: compact JSON


@settings(max_examples=300, deadline=None)
@given(data=st.text())
def test_any_text_reads_back_with_normalized_line_breaks(data: str) -> None:
    [event] = parse(_frame("x", data).encode().decode("utf-8"))
    assert event == {"event": "x", "data": LINE.sub("\n", data)}
