"""A streaming ``multipart/form-data`` reader for uploads.

Parts come out in order while the body arrives, and a part's body comes out as the chunks the
server received, so an upload of any size passes through in bounded memory: at most one network
read (about 64 KiB) is held at a time. Starlette's ``request.form()`` would instead spool each
file to a temporary file first, and put no bound on its size.
"""

from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from runstep.errors import InvalidRequest

# Room for boundaries, part headers and the small fields beside the file.
FORM_OVERHEAD_BYTES = 64 * 1024
FIELD_BYTES = 16 * 1024
MAX_PARTS = 16


class BodyTooLarge(Exception):
    """The body declares or sends more than ``max_body_bytes``."""


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(eq=False)
class FormPart:
    """One part: a plain field, or a file when the sender gave a ``filename``."""

    name: str
    filename: str | None
    content_type: str | None
    _form: "StreamingForm" = field(repr=False)
    _done: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """This part's body as it arrives."""
        while not self._done:
            chunk = await self._form._part_data()
            if chunk is None:
                self._done = True
            elif chunk:
                yield chunk

    async def text(self) -> str:
        """A small field's value (at most ``FIELD_BYTES``)."""
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if len(data) > FIELD_BYTES:
                raise InvalidRequest(
                    f"Invalid '{self.name}': expected a value of at most {FIELD_BYTES} bytes.",
                    param=self.name,
                )
        return _decode(bytes(data))


class StreamingForm:
    """Reads a multipart body from ``stream`` part by part; refuses (``BodyTooLarge``) a body
    over ``max_body_bytes``, by its ``Content-Length`` before reading and by counting after."""

    def __init__(
        self, headers: Mapping[str, str], stream: AsyncIterator[bytes], max_body_bytes: int
    ) -> None:
        content_type = headers.get("content-type", "")
        kind, options = parse_options_header(content_type)
        if kind != b"multipart/form-data" or not options.get(b"boundary"):
            raise InvalidRequest(
                f"Invalid Content-Type header ({content_type or 'none'}), expected "
                "multipart/form-data with a boundary."
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise BodyTooLarge
        self._stream = stream
        self._max_body_bytes = max_body_bytes
        self._received = 0
        self._ended = False
        self._events: deque[tuple[str, FormPart | bytes | None]] = deque()
        self._parts = 0
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._parser = MultipartParser(
            options[b"boundary"],
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": lambda: self._events.append(("end", None)),
                "on_end": lambda: self._events.append(("done", None)),
            },
        )

    async def parts(self) -> AsyncIterator[FormPart]:
        """Each part in order; whatever the caller does not read of a part is skipped."""
        while True:
            kind, value = await self._next()
            if kind == "done":
                return
            if isinstance(value, FormPart):
                yield value
                async for _ in value.chunks():
                    pass

    async def _part_data(self) -> bytes | None:
        """The next chunk of the current part, or None at its end."""
        kind, value = await self._next()
        if kind == "data" and isinstance(value, bytes):
            return value
        if kind == "end":
            return None
        raise InvalidRequest("Invalid multipart body.")

    async def _next(self) -> tuple[str, FormPart | bytes | None]:
        """The next parser event, reading and parsing one more network chunk when needed."""
        while not self._events:
            if self._ended:
                raise InvalidRequest("The multipart body ended before its closing boundary.")
            try:
                chunk = await anext(self._stream)
            except StopAsyncIteration:
                self._ended = True
                continue
            self._received += len(chunk)
            if self._received > self._max_body_bytes:
                raise BodyTooLarge
            try:
                self._parser.write(chunk)
            except FormParserError:
                raise InvalidRequest("Invalid multipart body.") from None
        return self._events.popleft()

    # python-multipart callbacks: they only record events, consumed by ``_next``.

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequest(f"Too many form fields: at most {MAX_PARTS} are accepted.")
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        if b"name" not in options:
            raise InvalidRequest('Every multipart part needs a Content-Disposition "name".')
        filename = options.get(b"filename")
        content_type = self._headers.get(b"content-type")
        part = FormPart(
            name=_decode(options[b"name"]),
            filename=None if filename is None else _decode(filename),
            content_type=None if content_type is None else _decode(content_type),
            _form=self,
        )
        self._events.append(("part", part))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(("data", data[start:end]))
