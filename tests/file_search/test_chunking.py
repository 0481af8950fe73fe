"""Token estimates and chunk_text: limits, overlap, offsets, boundaries, determinism."""

import itertools
import random

import pytest

from runstep.tools.file_search.chunking import (
    AUTO_MAX_TOKENS,
    AUTO_OVERLAP_TOKENS,
    Chunk,
    chunk_text,
    estimate_tokens,
    iter_chunks,
    iter_token_spans,
    validate_static_chunking,
)

WORDS = [
    *("tide", "moon", "ocean", "current", "harbour", "vessel", "anchor", "lighthouse", "storm"),
    *("barometer", "navigation", "latitude", "longitude", "compass", "sextant", "horizon"),
    *("mariner", "coastline", "estuary", "sandbar"),
]


def prose(paragraphs: int, seed: int = 7) -> str:
    """Deterministic English-like text: sentences of 6-18 words, paragraphs of 2-7 sentences."""
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(2, 7)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        out.append(" ".join(sentences))
    return "\n\n".join(out)


CODE = "\n".join(
    f"def handler_{i}(request, *args):\n    value = compute({i} * 37, key='k{i}')\n"
    f"    return {{'status': 200, 'value': value}}  # done\n"
    for i in range(400)
)
SAMPLES = {
    "prose": prose(120),
    "code": CODE,
    "cjk": "潮汐は月の引力によって起こる。" * 400,
    "one-long-word": "QUJD" * 6000,
    "lines": "\n".join(f"line {i}: value={i * 7}" for i in range(3000)),
}
ENGLISH = (
    "When the tide goes out, the harbour empties in less than an hour, and the boats that were "
    "riding at anchor settle onto the mud at odd angles. Children walk out to look for crabs; "
    "their parents watch from the sea wall, checking the time, because the water comes back "
    "faster than anyone expects. The harbour master keeps a printed table of high and low "
    "water for the whole year, but he still looks at the sky before he trusts it: a strong "
    "westerly wind can hold the sea back for twenty minutes, or push it in early. In 1953 a "
    "storm surge flooded the lower town, and the marks it left are still painted on the walls."
)
PARAMETERS = [(AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS), (100, 50), (100, 0), (4096, 2048), (250, 37)]


def check_chunks(text: str, chunks: list[Chunk], max_tokens: int, overlap: int) -> None:
    assert chunks, "a non-empty text gives chunks"
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip() and chunk.text
        assert 0 < chunk.tokens <= max_tokens
        assert estimate_tokens(chunk.text) <= max_tokens
    for previous, current in itertools.pairwise(chunks):
        assert previous.start < current.start and previous.end < current.end
        if overlap:
            shared = estimate_tokens(text[current.start : previous.end])
            assert overlap - 8 <= shared <= overlap
        else:
            assert current.start >= previous.end
    # together the chunks cover every non-whitespace character
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))


@pytest.mark.parametrize(("max_tokens", "overlap"), PARAMETERS)
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_chunks_respect_limits_overlap_and_offsets(
    sample: str, max_tokens: int, overlap: int
) -> None:
    text = SAMPLES[sample]
    check_chunks(text, chunk_text(text, max_tokens, overlap), max_tokens, overlap)


def test_auto_defaults_fill_chunks() -> None:
    text = SAMPLES["prose"]
    chunks = chunk_text(text)
    assert len(chunks) > 5
    # boundary preference shortens a chunk by at most a quarter
    assert all(chunk.tokens >= AUTO_MAX_TOKENS * 3 // 4 for chunk in chunks[:-1])


def test_deterministic() -> None:
    text = SAMPLES["prose"] + "\n\n" + SAMPLES["code"]
    assert chunk_text(text, 300, 100) == chunk_text(text, 300, 100)
    assert list(iter_chunks(text, 300, 100)) == chunk_text(text, 300, 100)


def test_prefers_paragraph_and_sentence_ends() -> None:
    text = SAMPLES["prose"]
    chunks = chunk_text(text, 200, 50)
    ends = [text[chunk.end - 1] for chunk in chunks[:-1]]
    assert all(end in ".!?" for end in ends), ends
    paragraph_ends = sum(text.startswith("\n\n", chunk.end) for chunk in chunks[:-1])
    assert paragraph_ends >= len(chunks) // 3


def test_code_cuts_at_line_ends() -> None:
    chunks = chunk_text(CODE, 120, 0)
    for chunk in chunks[:-1]:
        assert CODE[chunk.end : chunk.end + 1] == "\n"


def test_short_empty_and_blank_texts() -> None:
    assert chunk_text("") == []
    assert chunk_text(" \n\n\t ") == []
    [chunk] = chunk_text("  Just one sentence.\n")
    assert (chunk.text, chunk.start, chunk.end, chunk.index) == ("Just one sentence.", 2, 20, 0)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("x", 0, 0)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_text("x", 10, 10)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_text("x", 10, -1)


@pytest.mark.parametrize(("size", "overlap"), [(100, 0), (100, 50), (800, 400), (4096, 2048)])
def test_static_strategy_accepts_spec_range(size: int, overlap: int) -> None:
    validate_static_chunking(size, overlap)


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [
        (99, 0, "between 100 and 4096"),
        (4097, 0, "between 100 and 4096"),
        (800, 401, "half of max_chunk_size_tokens"),
        (800, -1, "non-negative"),
    ],
)
def test_static_strategy_rejects(size: int, overlap: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_static_chunking(size, overlap)


def test_token_spans_cover_text() -> None:
    for text in SAMPLES.values():
        spans = list(iter_token_spans(text[:20000]))
        assert spans[0][0] == 0 and spans[-1][1] == len(text[:20000])
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert len(spans) == estimate_tokens(text[:20000])


def test_estimates_resemble_bpe_counts() -> None:
    assert estimate_tokens("Hello, world. This is a test!") == 9
    assert estimate_tokens("1234567") == 3  # digits go in threes
    assert estimate_tokens("潮汐は月") == 4  # one per CJK character
    assert estimate_tokens("") == 0
    # OpenAI's rule of thumb for English: about 4 characters (3/4 of a word) per token
    assert 3.6 <= len(ENGLISH) / estimate_tokens(ENGLISH) <= 4.8
    assert 1.1 <= estimate_tokens(ENGLISH) / len(ENGLISH.split()) <= 1.6
