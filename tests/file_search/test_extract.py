"""extract_text: every supported type, type sniffing, and the two failure codes."""

import json
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from runstep.tools.file_search.extract import (
    ExtractionError,
    InvalidFile,
    UnsupportedFile,
    decode_text,
    detect_kind,
    extract_text,
    html_to_text,
)

PAGES = [
    "Page one is about the migration of arctic terns.",
    "Page two explains how tidal pools form on rocky shores.",
    "Page three lists the volcanoes of Iceland.",
]


def make_pdf(path: Path, pages: list[str] = PAGES) -> Path:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("Inventory report", level=1)
    document.add_paragraph("The warehouse holds the following items.")
    table = document.add_table(rows=3, cols=3)
    for row, values in enumerate(
        [("Item", "Count", "Shelf"), ("Bolts", "120", "A3"), ("Nuts", "75", "B1")]
    ):
        for column, value in enumerate(values):
            table.cell(row, column).text = value
    document.add_paragraph("Counts were taken on Monday.")
    document.save(str(path))
    return path


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def test_pdf_pages_in_order(tmp_path: Path) -> None:
    text = extract_text(make_pdf(tmp_path / "birds.pdf"), "birds.pdf")
    assert text.split("\n\n") == PAGES


def test_pdf_is_sniffed_without_extension_and_when_mislabelled(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "blob")
    assert detect_kind(path, "upload") == "pdf"
    assert extract_text(path, "upload") == extract_text(path, "notes.txt") == "\n\n".join(PAGES)


def test_docx_paragraphs_and_table(tmp_path: Path) -> None:
    text = extract_text(make_docx(tmp_path / "report.docx"), "report.docx")
    assert text == (
        "Inventory report\n"
        "The warehouse holds the following items.\n"
        "\n"
        "Item | Count | Shelf\n"
        "Bolts | 120 | A3\n"
        "Nuts | 75 | B1\n"
        "\n"
        "Counts were taken on Monday."
    )
    assert detect_kind(tmp_path / "report.docx", "no-extension") == "docx"


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    html = """<!DOCTYPE html><html><head><title>Tides</title>
    <style>body { color: red }</style><script>var secret = "<p>hidden</p>";</script></head>
    <body><h1>Tides &amp; currents</h1>
    <p>The moon   pulls
       the <b>ocean</b>.</p><noscript>enable js</noscript>
    <ul><li>spring tides</li><li>neap tides</li></ul>
    <table><tr><th>Port</th><th>High</th></tr><tr><td>Brest</td><td>06:12</td></tr></table>
    <pre>  x = 1
    y = 2</pre><template><p>template text</p></template><svg><text>svg text</text></svg>
    </body></html>"""
    text = extract_text(write(tmp_path, "page.html", html), "page.html")
    assert text == (
        "Tides\n\nTides & currents\n\nThe moon pulls the ocean.\n\n- spring tides\n- neap tides"
        "\n\nPort | High\nBrest | 06:12\n\n  x = 1\n    y = 2"
    )
    for hidden in ("secret", "hidden", "color", "enable js", "template text", "svg text"):
        assert hidden not in text
    assert detect_kind(write(tmp_path, "index", html), "index") == "html"


def test_html_fragment() -> None:
    assert html_to_text("a<br>b<br/>c &lt;d&gt;") == "a\nb\nc <d>"


def test_json_is_pretty_printed(tmp_path: Path) -> None:
    value = {"name": "Zoë", "tags": ["a", "b"], "nested": {"n": 1}}
    path = write(tmp_path, "data.json", json.dumps(value, separators=(",", ":")))
    text = extract_text(path, "data.json")
    assert text == json.dumps(value, indent=2, ensure_ascii=False)
    assert '"name": "Zoë"' in text


def test_jsonl_records(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.jsonl", '{"a": 1}\n\n{"b": [2]}\n')
    assert extract_text(path, "rows.jsonl") == '{\n  "a": 1\n}\n\n{\n  "b": [\n    2\n  ]\n}'


def test_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile, match=r"not valid JSON.*line 1, column 9") as caught:
        extract_text(write(tmp_path, "bad.json", '{"a": 1,,}'), "bad.json")
    assert caught.value.code == "invalid_file"


@pytest.mark.parametrize(
    "name",
    ["main.py", "app.ts", "Main.java", "lib.c", "lib.cpp", "main.go", "lib.rs", "x.rb", "x.php",
     "run.sh", "site.css", "notes.md", "plain.txt", "table.csv", "Makefile"],
)  # fmt: skip
def test_code_and_text_verbatim(tmp_path: Path, name: str) -> None:
    source = "def f(x):\r\n    return {'a': x}  # ünïcode\r\n\tdone\n"
    text = extract_text(write(tmp_path, "upload", source), name)
    assert text == source.replace("\r\n", "\n")


def test_csv_is_kept_as_text(tmp_path: Path) -> None:
    csv = "city,population\nReykjavik,139875\n"
    assert extract_text(write(tmp_path, "c.csv", csv), "cities.CSV") == csv


def test_decoding_fallbacks() -> None:
    assert decode_text("naïve café".encode("cp1252")) == "naïve café"
    assert decode_text("line1\r\nline2\rline3".encode("utf-16")) == "line1\nline2\nline3"
    assert decode_text(b"\xef\xbb\xbfbom") == "bom"
    # mostly valid UTF-8 with one stray byte stays UTF-8
    assert decode_text("café über".encode() + b"\xff") == "café über\ufffd"
    assert decode_text(b"nul\x00byte") == "nulbyte"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without xref",
        b"%PDF-",
    ],
)
def test_corrupt_pdf_is_invalid(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InvalidFile) as caught:
        extract_text(write(tmp_path, "broken.pdf", data), "broken.pdf")
    assert caught.value.code == "invalid_file"
    assert "broken.pdf" in caught.value.message


def test_truncated_pdf_is_invalid(tmp_path: Path) -> None:
    whole = make_pdf(tmp_path / "whole.pdf").read_bytes()
    path = write(tmp_path, "cut.pdf", whole[: len(whole) // 3])
    with pytest.raises(InvalidFile):
        extract_text(path, "cut.pdf")


def test_pdf_extension_without_pdf_content(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile, match="no '%PDF-' header"):
        extract_text(write(tmp_path, "x.pdf", "just text"), "x.pdf")


def test_broken_docx_is_invalid_and_hides_storage_path(tmp_path: Path) -> None:
    not_zip = write(tmp_path, "stored-blob-1", b"plain text, not a zip")
    with pytest.raises(InvalidFile, match="not a zip"):
        extract_text(not_zip, "letter.docx")
    other_zip = tmp_path / "stored-blob-2"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(InvalidFile, match="not a valid DOCX") as caught:
        extract_text(other_zip, "letter.docx")
    assert str(tmp_path) not in caught.value.message


def test_binary_blob_is_unsupported(tmp_path: Path) -> None:
    blob = write(tmp_path, "blob", bytes(range(256)) * 64)
    for name in ("blob", "model.weights", "archive.bin", "photo.png", "slides.pptx"):
        with pytest.raises(UnsupportedFile) as caught:
            extract_text(blob, name)
        assert caught.value.code == "unsupported_file"
        assert isinstance(caught.value, ExtractionError)


def test_unsupported_extension_even_if_textual(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile, match=r"'\.svg' files are not supported"):
        extract_text(write(tmp_path, "logo.svg", "<svg></svg>"), "logo.svg")


def test_binary_data_in_text_type_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile, match="binary data"):
        extract_text(write(tmp_path, "x", bytes(range(256)) * 4), "notes.txt")


def test_unknown_extension_with_text_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "x", "plain words\n")
    assert extract_text(path, "README") == extract_text(path, "notes.weird") == "plain words\n"


def test_empty_file(tmp_path: Path) -> None:
    assert extract_text(write(tmp_path, "empty.txt", b""), "empty.txt") == ""


def test_missing_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile, match="could not be read"):
        extract_text(tmp_path / "missing", "missing.txt")
