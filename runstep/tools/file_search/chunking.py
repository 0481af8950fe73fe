"""Token estimates and chunking for vector-store files.

Token counts here are *estimates* of OpenAI BPE counts (cl100k/o200k), made without any
vocabulary file, so nothing is downloaded and the result never changes with an installed
package's version. The estimate works in two steps:

1. Pre-tokenize with a regex modelled on cl100k's: words with their leading space, numbers
   in groups of at most 3 digits, punctuation runs, newline runs and space runs (the pieces
   cover the text without gaps).
2. Split each piece into estimated tokens by weight, at most `TOKEN_WEIGHT` (10) units per
   token: an ASCII letter, digit or space weighs 1, ASCII punctuation or a line break 5,
   another character below U+0800 (accented Latin, Greek, Cyrillic, Hebrew, Arabic) 3, and
   anything else (CJK, Indic scripts, emoji) 10.

So a common English word is one token, ``"();"`` is two, ``"2024"`` is two, and each CJK
character is one. On English prose this gives about 4 characters per token, the usual figure
for OpenAI tokenizers; on code, non-Latin scripts and long rare words it leans towards
over-counting, so chunks rarely exceed their budget in real tokens.

`chunk_text` cuts on these token boundaries: a chunk holds at most ``max_tokens`` tokens and
starts ``overlap_tokens`` tokens before the previous chunk's end. When a paragraph break lies
in the last quarter of a chunk, or a sentence end / line break / word boundary in its last
eighth, the chunk ends there instead (the best kind wins, then the latest). Chunks are
stripped of surrounding whitespace, and ``chunk.text == text[chunk.start:chunk.end]``.
Everything is deterministic and pure Python; tokenizing runs at a few MB of text per second.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "AUTO_MAX_TOKENS",
    "AUTO_OVERLAP_TOKENS",
    "STATIC_MAX_TOKENS_RANGE",
    "TOKEN_WEIGHT",
    "Chunk",
    "chunk_text",
    "estimate_tokens",
    "iter_chunks",
    "iter_token_spans",
    "validate_static_chunking",
]

AUTO_MAX_TOKENS = 800
"""``chunking_strategy: auto``: tokens per chunk."""
AUTO_OVERLAP_TOKENS = 400
"""``chunking_strategy: auto``: tokens shared by consecutive chunks."""
STATIC_MAX_TOKENS_RANGE = (100, 4096)
"""Inclusive bounds of ``static.max_chunk_size_tokens``."""
TOKEN_WEIGHT = 10
"""Weight units that fit in one estimated token (see the module docstring)."""

_PIECES = re.compile(
    r"""'(?i:[sdmt]|ll|ve|re)(?![^\W\d_])  # contraction suffixes
    |(?:[^\r\n\w]|_)?[^\W\d_]+             # a word, with one leading space or symbol
    |\d{1,3}                               # digits, in groups of three
    |\ ?(?:[^\s\w]|_)+[\r\n]*              # a punctuation run, with its line breaks
    |\s*[\r\n]+                            # line breaks, with the spaces before them
    |\s+(?!\S)                             # spaces not followed by a word
    |\s+                                   # any other whitespace
    """,
    re.VERBOSE,
)

_LIGHT = frozenset(chr(code) for code in range(128) if chr(code).isalnum() or chr(code) in " \t")
_DROP_LIGHT = {ord(char): None for char in _LIGHT}


def _weight(char: str) -> int:
    if char in _LIGHT:
        return 1
    if char.isascii():
        return 5
    return 3 if ord(char) < 0x800 else TOKEN_WEIGHT


def _one_token(piece: str) -> bool:
    """Fast path: an ASCII piece whose weight fits in one token (most words)."""
    return (
        piece.isascii()
        and len(piece) <= TOKEN_WEIGHT
        and len(piece) + 4 * len(piece.translate(_DROP_LIGHT)) <= TOKEN_WEIGHT
    )


def _split_piece(piece: str, offset: int) -> Iterator[tuple[int, int]]:
    """Greedy split of one regex piece into spans of at most TOKEN_WEIGHT units."""
    start, load = 0, 0
    for position, char in enumerate(piece):
        weight = _weight(char)
        if load and load + weight > TOKEN_WEIGHT:
            yield offset + start, offset + position
            start, load = position, 0
        load += weight
    yield offset + start, offset + len(piece)


def iter_token_spans(text: str, start: int = 0) -> Iterator[tuple[int, int]]:
    """``(start, end)`` character offsets of each estimated token of ``text[start:]``.

    The spans are contiguous and cover the text exactly, whitespace included.
    """
    for match in _PIECES.finditer(text, start):
        piece = match.group()
        if _one_token(piece):
            yield match.span()
        else:
            yield from _split_piece(piece, match.start())


def estimate_tokens(text: str) -> int:
    """Estimated number of OpenAI BPE tokens in ``text`` (see the module docstring)."""
    count = 0
    for match in _PIECES.finditer(text):
        piece = match.group()
        if _one_token(piece):
            count += 1
        else:
            count += sum(1 for _ in _split_piece(piece, 0))
    return count


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a document: ``text == document[start:end]``."""

    text: str
    index: int
    """Position in the document's chunk list, from 0."""
    start: int
    """Character offset of the first character in the source text."""
    end: int
    """Character offset just past the last character in the source text."""
    tokens: int
    """Estimated tokens in the chunk's window (surrounding whitespace included)."""


def validate_static_chunking(max_chunk_size_tokens: int, chunk_overlap_tokens: int) -> None:
    """Check a ``static`` chunking strategy; raise ValueError with an API-ready message."""
    low, high = STATIC_MAX_TOKENS_RANGE
    if not low <= max_chunk_size_tokens <= high:
        raise ValueError(
            f"chunking_strategy.static.max_chunk_size_tokens must be between {low} and {high}, "
            f"got {max_chunk_size_tokens}."
        )
    if chunk_overlap_tokens < 0:
        raise ValueError(
            "chunking_strategy.static.chunk_overlap_tokens must be non-negative, "
            f"got {chunk_overlap_tokens}."
        )
    if chunk_overlap_tokens * 2 > max_chunk_size_tokens:
        raise ValueError(
            "chunking_strategy.static.chunk_overlap_tokens must not exceed half of "
            f"max_chunk_size_tokens ({max_chunk_size_tokens // 2}), got {chunk_overlap_tokens}."
        )


# Cut ranks: a higher rank is a better place to end a chunk.
_HARD, _WORD, _LINE, _SENTENCE, _PARAGRAPH = range(5)
_SENTENCE_ENDS = ".!?…。！？"
_CLOSERS = "\"')]}»”’*_"


def _cut_rank(text: str, position: int) -> int:
    """How good a chunk end at character ``position`` (between two tokens) is."""
    raw_before = text[max(0, position - 6) : position]
    raw_after = text[position : position + 6]
    before = raw_before.rstrip(" \t")
    after = raw_after.lstrip(" \t")
    line_breaks = len(before) - len(before.rstrip("\n")) + len(after) - len(after.lstrip("\n"))
    if line_breaks >= 2:
        return _PARAGRAPH
    spaced = bool(line_breaks) or before != raw_before or after != raw_after or not raw_after
    ending = before.rstrip("\n").rstrip(_CLOSERS)[-1:]
    if ending in _SENTENCE_ENDS and ending and (spaced or ending in "。！？"):
        return _SENTENCE
    if line_breaks:
        return _LINE
    return _WORD if spaced else _HARD


def _choose_end(text: str, ends: list[int], first: int, stop: int, max_tokens: int) -> int:
    """The token index to end a chunk at, in ``(first, stop]`` (tokens ``first..stop-1``)."""
    paragraph_floor = stop - max(1, max_tokens // 4)
    other_floor = stop - max(1, max_tokens // 8)
    best, best_rank = stop, _HARD
    for cut in range(stop, max(first + 1, paragraph_floor) - 1, -1):
        rank = _cut_rank(text, ends[cut - 1])
        if cut < other_floor and rank < _PARAGRAPH:
            continue
        if rank > best_rank:
            best, best_rank = cut, rank
            if rank == _PARAGRAPH:
                break
    return best


def iter_chunks(
    text: str, max_tokens: int = AUTO_MAX_TOKENS, overlap_tokens: int = AUTO_OVERLAP_TOKENS
) -> Iterator[Chunk]:
    """Yield the chunks of ``text`` one by one (memory stays bounded by one window).

    Raises ValueError unless ``max_tokens >= 1`` and ``0 <= overlap_tokens < max_tokens``
    (API limits are checked by `validate_static_chunking`).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(
            f"overlap_tokens must be between 0 and max_tokens - 1, got {overlap_tokens}."
        )
    spans = iter_token_spans(text)
    starts: list[int] = []  # token starts/ends from token number `base` on
    ends: list[int] = []
    base = first = index = 0
    exhausted = False
    while True:
        while not exhausted and base + len(starts) <= first + max_tokens:
            span = next(spans, None)
            if span is None:
                exhausted = True
            else:
                starts.append(span[0])
                ends.append(span[1])
        available = base + len(starts)
        if first >= available:
            return
        stop = min(first + max_tokens, available)
        last = exhausted and stop == available
        if not last:
            stop = base + _choose_end(text, ends, first - base, stop - base, max_tokens)
        begin, finish = starts[first - base], ends[stop - 1 - base]
        body = text[begin:finish]
        stripped = body.strip()
        if stripped:
            begin += len(body) - len(body.lstrip())
            yield Chunk(stripped, index, begin, begin + len(stripped), stop - first)
            index += 1
        if last:
            return
        first = max(stop - overlap_tokens, first + 1)
        del starts[: first - base], ends[: first - base]
        base = first


def chunk_text(
    text: str, max_tokens: int = AUTO_MAX_TOKENS, overlap_tokens: int = AUTO_OVERLAP_TOKENS
) -> list[Chunk]:
    """Split ``text`` into overlapping chunks (defaults: the ``auto`` strategy, 800 / 400).

    See the module docstring for where chunks end; `iter_chunks` is the streaming form.
    An empty or whitespace-only text gives no chunks.
    """
    return list(iter_chunks(text, max_tokens, overlap_tokens))
