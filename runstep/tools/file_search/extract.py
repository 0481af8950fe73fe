"""Turn an uploaded file into plain text for chunking.

`extract_text(path, filename)` decides the type from the file name's extension first and
then checks (sniffs) the content; a name without a known extension is typed by content alone
(``%PDF-``, a zip holding ``word/document.xml``, or text). Failures raise an
`ExtractionError` whose ``code`` is the vector-store file ``last_error.code``:

- `UnsupportedFile` (``unsupported_file``): a type we cannot read (images, archives, ``.pptx``,
  unknown binary data).
- `InvalidFile` (``invalid_file``): a supported type whose content is broken or unreadable
  (a corrupt or password-protected PDF, a ``.docx`` that is not a Word package, invalid JSON,
  binary data in a ``.txt``).

What comes out, per type:

- text, Markdown, CSV/TSV, source code, config files: the text as is (markup kept).
- HTML: visible text only (no ``script``/``style``/``template``/``svg``...); block elements
  become line breaks, table cells are joined with `` | ``, ``pre`` keeps its whitespace.
- JSON: re-indented (2 spaces, non-ASCII kept); JSON Lines: each record re-indented, records
  separated by a blank line. Files over `JSON_PRETTY_LIMIT` bytes are returned unparsed.
- PDF (pypdf): the text of each page, read page by page, pages separated by a blank line.
  Pages whose text cannot be extracted are skipped (logged); if every page fails, InvalidFile.
- DOCX (python-docx): body paragraphs and tables in document order; a table row is one line
  with cells joined by `` | ``. Headers, footers, comments and footnotes are not included.

Text is decoded as UTF-8 (a BOM selects UTF-8/16/32); data that is not mostly valid UTF-8 is
decoded as Windows-1252 (Latin-1 for its five undefined bytes). All output uses ``\\n`` line
endings and contains no NUL characters. A file with no text (an empty ``.txt``, a scanned
PDF) yields ``""``: the caller decides what an empty document means.

Text files are read whole (uploads are at most 512 MB); PDFs are read page by page through
an open file handle. Everything here is synchronous and CPU-bound: call it from a worker
thread (``asyncio.to_thread``) when in an event loop.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar, Literal

__all__ = [
    "JSON_PRETTY_LIMIT",
    "SUPPORTED_EXTENSIONS",
    "ExtractionError",
    "FileKind",
    "InvalidFile",
    "UnsupportedFile",
    "decode_text",
    "detect_kind",
    "extract_text",
    "html_to_text",
]

log = logging.getLogger(__name__)

FileKind = Literal["text", "html", "json", "jsonl", "pdf", "docx"]

JSON_PRETTY_LIMIT = 64 * 1024 * 1024
"""JSON files larger than this (bytes) are returned as decoded text without re-indenting."""

_SNIFF_BYTES = 8192


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TEXT_EXTENSIONS = _words(
    # prose and markup kept as text
    "txt text log md markdown mdx rst adoc asciidoc org tex bib csv tsv xml "
    # configuration
    "yaml yml toml ini cfg conf properties env "
    # source code
    "py pyi pyw js mjs cjs jsx ts tsx mts cts java kt kts scala groovy gradle c h cc cpp cxx "
    "hpp hh hxx cs go rs rb php sh bash zsh fish ps1 psm1 bat cmd css scss sass less sql "
    "swift m mm r pl pm lua dart ex exs erl hrl hs ml mli fs fsx clj cljs vue svelte "
    "graphql gql proto tf hcl cmake mk vim el lisp scm jl nim zig asm s"
)
_EXTENSION_KINDS: dict[str, FileKind] = {
    **dict.fromkeys(_TEXT_EXTENSIONS, "text"),
    **dict.fromkeys(("html", "htm", "xhtml"), "html"),
    "json": "json",
    **dict.fromkeys(("jsonl", "ndjson"), "jsonl"),
    "pdf": "pdf",
    "docx": "docx",
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_EXTENSION_KINDS)
"""Lower-case extensions (without the dot) that are read by type; others are sniffed."""

# Types that are never read, even when their bytes happen to look like text.
_UNSUPPORTED_EXTENSIONS = _words(
    "png jpg jpeg gif webp bmp tif tiff ico heic heif svg psd eps ps "
    "mp3 wav ogg oga flac m4a aac opus mp4 m4v mov avi mkv webm wmv "
    "zip gz tgz bz2 xz zst 7z rar tar jar war whl egg apk dmg iso "
    "exe dll so dylib bin o a obj class pyc pyo wasm "
    "doc dot docm dotx xls xlsx xlsm ppt pptx pptm odt ods odp rtf pages numbers key epub "
    "sqlite sqlite3 db parquet feather arrow avro orc pkl pickle npy npz pt pth onnx "
    "safetensors h5 hdf5 ttf otf woff woff2 eot"
)


class ExtractionError(Exception):
    """The file cannot be turned into text; `code` is the ``last_error.code`` to record."""

    code: ClassVar[str]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedFile(ExtractionError):
    """A file type that file_search cannot read (``last_error.code`` ``unsupported_file``)."""

    code = "unsupported_file"


class InvalidFile(ExtractionError):
    """A supported type whose content is corrupt or unreadable (``invalid_file``)."""

    code = "invalid_file"


# --------------------------------------------------------------------------------------
# Type detection


def _extension(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InvalidFile(f"The file could not be read: {exc.strerror or exc}.") from exc


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than \t \n \v \f \r and ESC: rare in real text, common in binary data.
_BINARY_BYTES = bytes(sorted(set(range(32)) - {9, 10, 11, 12, 13, 27}))


def _bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def _looks_like_text(head: bytes) -> bool:
    """Heuristic on the first bytes: a BOM, or no NUL and (almost) no other C0 controls."""
    if not head or _bom_encoding(head):
        return True
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, _BINARY_BYTES))
    return controls <= len(head) // 100


def _is_pdf(head: bytes) -> bool:
    # The spec allows bytes before the header; readers look in the first 1024.
    return b"%PDF-" in head[:1024]


def _is_docx(path: Path, head: bytes) -> bool:
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _sniff(path: Path, head: bytes) -> FileKind | None:
    if _is_pdf(head):
        return "pdf"
    if _is_docx(path, head):
        return "docx"
    if _looks_like_text(head):
        start = head.lstrip()[:256].lower()
        if start.startswith((b"<!doctype html", b"<html")):
            return "html"
        return "text"
    return None


def detect_kind(path: Path, filename: str) -> FileKind:
    """The `FileKind` to read ``path`` as, judged from ``filename``'s extension and the content.

    Raises `UnsupportedFile` for types that are not read, `InvalidFile` when the content
    contradicts a supported extension (a ``.pdf`` without a PDF header, a ``.docx`` that is not
    a zip, binary data in a text type) or the file cannot be opened.
    """
    ext = _extension(filename)
    label = f"'.{ext}' files" if ext else "Files without an extension"
    if ext in _UNSUPPORTED_EXTENSIONS:
        raise UnsupportedFile(f"{label} are not supported by file_search.")
    head = _read_head(path)
    kind = _EXTENSION_KINDS.get(ext)
    if kind == "pdf":
        if not _is_pdf(head):
            raise InvalidFile(f"{filename!r} is not a valid PDF: no '%PDF-' header.")
        return kind
    if kind == "docx":
        if not head.startswith(b"PK\x03\x04"):
            raise InvalidFile(f"{filename!r} is not a valid DOCX file: it is not a zip package.")
        return kind
    if kind is not None:
        if _looks_like_text(head):
            return kind
        # A mislabelled document (report.txt holding a PDF) is still read.
        if _is_pdf(head):
            return "pdf"
        if _is_docx(path, head):
            return "docx"
        raise InvalidFile(f"{filename!r} should contain text but holds binary data.")
    sniffed = _sniff(path, head)
    if sniffed is None:
        raise UnsupportedFile(
            f"{label} are not supported by file_search, and the content is not text, PDF or DOCX."
        )
    return sniffed


# --------------------------------------------------------------------------------------
# Text decoding

_SURROGATE_ESCAPES = re.compile("[\udc80-\udcff]")
_ASCII_BYTES = bytes(range(128))


def _clean(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def decode_text(data: bytes) -> str:
    """Decode file bytes: BOM-selected UTF-8/16/32, else UTF-8, else Windows-1252.

    UTF-8 wins when at least two thirds of the non-ASCII bytes form valid UTF-8 sequences (stray
    invalid bytes become U+FFFD); otherwise the data is taken as Windows-1252, with Latin-1 for
    its undefined bytes. Line endings become ``\\n`` and NUL characters are dropped.
    """
    encoding = _bom_encoding(data)
    if encoding is not None:
        return _clean(data.decode(encoding, errors="replace"))
    try:
        return _clean(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="surrogateescape")
    invalid = len(_SURROGATE_ESCAPES.findall(text))
    non_ascii = len(data.translate(None, _ASCII_BYTES))
    if invalid * 3 <= non_ascii:  # valid multi-byte sequences outnumber stray bytes 2:1
        return _clean(_SURROGATE_ESCAPES.sub("\ufffd", text))
    text = data.decode("cp1252", errors="surrogateescape")  # 5 bytes are undefined in cp1252
    return _clean(_SURROGATE_ESCAPES.sub(lambda m: chr(ord(m.group()) - 0xDC00), text))


# --------------------------------------------------------------------------------------
# HTML

_SKIP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"}
)
_PARAGRAPH_TAGS = _words(
    "p h1 h2 h3 h4 h5 h6 table ul ol dl blockquote pre section article header footer nav "
    "aside main figure form fieldset address details hr title"
)
_LINE_TAGS = _words("div li tr dt dd br caption figcaption summary legend option")
_VOID_TAGS = _words("area base br col embed hr img input link meta source track wbr")
_WHITESPACE = re.compile(r"\s+")


class _HTMLText(HTMLParser):
    """Collects visible text; see `html_to_text`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0
        self._pending_breaks = 0
        self._cells_in_row = 0

    def _break(self, count: int) -> None:
        self._pending_breaks = max(self._pending_breaks, count)

    def _emit(self, text: str, *, raw: bool = False) -> None:
        if not raw:
            text = _WHITESPACE.sub(" ", text)
            if text == " " and (self._pending_breaks or self._at_line_start()):
                return
        if not text:
            return
        if self._pending_breaks and self.parts:
            self.parts[-1] = self.parts[-1].rstrip(" ")
            self.parts.append("\n" * self._pending_breaks)
        self._pending_breaks = 0
        if not raw and self._at_line_start():
            text = text.lstrip(" ")
        if text:
            self.parts.append(text)

    def _at_line_start(self) -> bool:
        return not self.parts or self.parts[-1].endswith((" ", "\n"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self._skip += 1
            return
        if self._skip:
            return
        if tag == "pre":
            self._pre += 1
        if tag == "tr":
            self._cells_in_row = 0
        elif tag in ("td", "th"):
            if self._cells_in_row:
                self._emit(" | ", raw=True)
            self._cells_in_row += 1
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)
        if tag == "li":
            self._emit("- ", raw=True)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS or self._skip:
            return
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._emit(data, raw=bool(self._pre))


def html_to_text(html: str) -> str:
    """The visible text of an HTML document or fragment (see the module docstring)."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n ")


# --------------------------------------------------------------------------------------
# Per-type readers


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidFile(f"The file could not be read: {exc.strerror or exc}.") from exc


def _extract_json(data: bytes, filename: str) -> str:
    text = decode_text(data)
    if len(data) > JSON_PRETTY_LIMIT:
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFile(
            f"{filename!r} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from exc
    except RecursionError as exc:
        raise InvalidFile(f"{filename!r} is nested too deeply to parse as JSON.") from exc
    return json.dumps(value, indent=2, ensure_ascii=False)


def _extract_jsonl(data: bytes, filename: str) -> str:
    text = decode_text(data)
    if len(data) > JSON_PRETTY_LIMIT:
        return text
    records: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidFile(f"{filename!r} line {number} is not valid JSON.") from exc
        records.append(json.dumps(value, indent=2, ensure_ascii=False))
    return "\n\n".join(records)


def _extract_pdf(path: Path, filename: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    pages: list[str] = []
    failed = count = 0
    try:
        with path.open("rb") as handle:
            reader = PdfReader(handle, strict=False)
            if reader.is_encrypted:
                try:
                    opened = reader.decrypt("")
                except DependencyError as exc:
                    raise InvalidFile(
                        f"{filename!r} is encrypted with an algorithm that needs the "
                        "'cryptography' package."
                    ) from exc
                if not opened:
                    raise InvalidFile(f"{filename!r} is protected by a password.")
            count = len(reader.pages)
            for number in range(count):
                try:
                    page_text = reader.pages[number].extract_text()
                except FileNotDecryptedError as exc:
                    raise InvalidFile(f"{filename!r} is protected by a password.") from exc
                except Exception as exc:  # pypdf raises many types on malformed pages
                    failed += 1
                    log.warning("pdf %r: page %d skipped: %r", filename, number + 1, exc)
                    continue
                page_text = _clean(page_text or "").strip()
                if page_text:
                    pages.append(page_text)
    except ExtractionError:
        raise
    except OSError as exc:
        raise InvalidFile(f"{filename!r} could not be read: {exc.strerror or exc}.") from exc
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, ...)
        raise InvalidFile(f"{filename!r} is not a readable PDF: {exc}") from exc
    if count and failed == count:
        raise InvalidFile(f"{filename!r}: no page of the PDF could be read.")
    return "\n\n".join(pages)


def _docx_blocks(container: object) -> list[tuple[str, str]]:
    """(kind, text) per paragraph or table row of a python-docx block container, in order."""
    from docx.table import Table

    blocks: list[tuple[str, str]] = []
    for item in container.iter_inner_content():  # type: ignore[attr-defined]
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # merged cells repeat
                        continue
                    seen.add(id(cell._tc))
                    inner = " ".join(text for _, text in _docx_blocks(cell) if text)
                    cells.append(_WHITESPACE.sub(" ", inner).strip())
                if any(cells):
                    blocks.append(("row", " | ".join(cells)))
            blocks.append(("end", ""))
        else:
            style = getattr(item.style, "name", "") or ""
            kind = "heading" if style.startswith(("Heading", "Title")) else "paragraph"
            blocks.append((kind, _clean(item.text)))
    return blocks


def _extract_docx(path: Path, filename: str) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
        blocks = _docx_blocks(document)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError) as exc:
        # (the exception text names the storage path: keep it out of last_error)
        raise InvalidFile(f"{filename!r} is not a valid DOCX file (not a Word package).") from exc
    except OSError as exc:
        raise InvalidFile(f"{filename!r} could not be read: {exc.strerror or exc}.") from exc
    except Exception as exc:  # lxml / python-docx errors on malformed packages
        raise InvalidFile(f"{filename!r} is not a readable DOCX file: {exc}") from exc
    lines: list[str] = []
    previous = "paragraph"
    for kind, text in blocks:
        if kind == "end" or kind == "heading" or (kind == "row") != (previous == "row"):
            lines.append("")  # blank line around headings and tables
        if kind != "end":
            lines.append(text)
        previous = kind
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def extract_text(path: Path, filename: str) -> str:
    """The plain text of the file at ``path``, typed by ``filename`` (the uploaded name).

    Raises `UnsupportedFile` or `InvalidFile` (both `ExtractionError`, with ``.code`` and a
    message fit for ``last_error.message``). See the module docstring for the per-type output.
    """
    path = Path(path)
    kind = detect_kind(path, filename)
    if kind == "pdf":
        return _extract_pdf(path, filename)
    if kind == "docx":
        return _extract_docx(path, filename)
    data = _read_bytes(path)
    if kind == "json":
        return _extract_json(data, filename)
    if kind == "jsonl":
        return _extract_jsonl(data, filename)
    if kind == "html":
        return html_to_text(decode_text(data))
    return decode_text(data)
