"""Server-sent events exactly as they arrive on the wire.

The SDKs' own parsers forgive framing mistakes (extra ``id:`` lines, several ``data:`` lines,
a missing final blank line) that stricter clients do not, so framing tests read the raw body
and split it here: ``post_stream(http, path, body).frames``.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Frame:
    """One block of lines between blank lines; comment lines (``: ping``) are kept apart."""

    lines: tuple[str, ...]
    comments: tuple[str, ...] = ()
    terminated: bool = True  # False for a last block the body did not end with a blank line

    @property
    def fields(self) -> list[str]:
        """The field name of every line, in order (``["event", "data"]`` for a proper event)."""
        return [line.partition(":")[0] for line in self.lines]

    def values(self, field: str) -> list[str]:
        """The values of the ``field:`` lines, one leading space stripped as SSE does."""
        values = []
        for line in self.lines:
            name, _, value = line.partition(":")
            if name == field:
                values.append(value.removeprefix(" "))
        return values

    @property
    def event(self) -> str | None:
        names = self.values("event")
        return names[-1] if names else None

    @property
    def data(self) -> str:
        return "\n".join(self.values("data"))

    def json(self) -> Any:
        return json.loads(self.data)


def parse_frames(body: str) -> list[Frame]:
    """Split an SSE body into frames; a comment-only block becomes a frame without lines."""
    frames: list[Frame] = []
    lines: list[str] = []
    comments: list[str] = []
    for line in _LINE_BREAK.split(body):
        if line:
            (comments if line.startswith(":") else lines).append(line)
        elif lines or comments:
            frames.append(Frame(tuple(lines), tuple(comments)))
            lines, comments = [], []
    if lines or comments:
        frames.append(Frame(tuple(lines), tuple(comments), terminated=False))
    return frames


@dataclass(frozen=True)
class RawStream:
    """A whole streamed response: status, headers and the undecoded-by-SSE body text."""

    status_code: int
    headers: httpx.Headers
    body: str

    @property
    def frames(self) -> list[Frame]:
        """Every frame, keep-alive comments included."""
        return parse_frames(self.body)

    @property
    def events(self) -> list[Frame]:
        """The frames that carry fields (keep-alive comment blocks left out)."""
        return [frame for frame in self.frames if frame.lines]


def post_stream(http: httpx.Client, path: str, body: dict[str, Any]) -> RawStream:
    """POST ``body`` and read the response to its end."""
    with http.stream("POST", path, json=body) as response:
        text = response.read().decode()
    return RawStream(response.status_code, response.headers, text)
