"""The hosted ``file_search`` tool as the model sees it: its function definition, the
passages handed back to the model (each with a source marker), and the markers it cites.

A passage's marker is ``【{source}:{result}†{file name}】``: ``source`` numbers the run's
file_search calls in order, ``result`` the passage within that call. The model copies a marker
after what it quotes; the message then carries a ``file_citation`` annotation over it, as the
hosted API did (the marker stays in the text; the annotation says what to replace it with)."""

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from runstep.store.db import Database
from runstep.tools.file_search import retrieval
from runstep.tools.file_search.embeddings import Embedder

NAME = "file_search"
DEFAULT_MAX_RESULTS = 20
RESOLVED_RANKER = "default_2024_08_21"  # what ``auto`` means today, as the hosted API reported
MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")

MODEL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": (
            "Search the user's uploaded files and return the most relevant passages. Use it "
            "whenever the answer may be in those files. Each passage starts with a marker such "
            "as 【0:1†report.pdf】; when you use a passage, write its marker right after the "
            "sentence it supports."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "queries": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "One or more search queries, each a short, specific phrase.",
                }
            },
            "required": ["queries"],
        },
    },
}


def queries_in(arguments: str) -> list[str]:
    """The queries in the model's arguments (``queries`` list or a single ``query``)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return [arguments.strip()] if arguments.strip() else []
    if not isinstance(parsed, dict):
        return []
    found = parsed.get("queries", parsed.get("query", []))
    values = [found] if isinstance(found, str) else found if isinstance(found, list) else []
    return [value.strip() for value in values if isinstance(value, str) and value.strip()]


def ranking_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The ranking options a file_search call records, from the tool's settings."""
    given = settings.get("ranking_options") or {}
    ranker = given.get("ranker", "auto")
    return {
        "ranker": RESOLVED_RANKER if ranker == "auto" else ranker,
        "score_threshold": float(given.get("score_threshold", 0.0)),
    }


def marker(source: int, result: int, file_name: str) -> str:
    return f"【{source}:{result}†{file_name}】"


def passages_text(source: int, queries: Sequence[str], results: Sequence[dict[str, Any]]) -> str:
    """The tool output the model reads: each result's marker, file, score and passage."""
    searched = " | ".join(queries) or "(no query)"
    if not results:
        return f"No passages in the files matched: {searched}"
    blocks = [
        f"{marker(source, number, result['file_name'])} {result['file_name']} "
        f"(score {result['score']:.2f})\n{result_text(result)}"
        for number, result in enumerate(results)
    ]
    return f"Passages for: {searched}\n\n" + "\n\n".join(blocks)


def result_text(result: dict[str, Any]) -> str:
    return "".join(part["text"] for part in result.get("content") or [])


@dataclass(frozen=True)
class Passage:
    """One passage as the model read it (parsed back by the local stand-in model)."""

    marker: str
    file_name: str
    text: str


def parse_passages(output: str) -> list[Passage]:
    """The passages of a ``passages_text`` output, in order."""
    starts = [m for m in MARKER.finditer(output) if m.start() == 0 or output[m.start() - 1] == "\n"]
    passages = []
    for number, match in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(output)
        _, _, body = output[match.end() : end].partition("\n")
        passages.append(Passage(match.group(0), match.group(3), body.strip()))
    return passages


def file_search_calls(steps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The file_search calls of ``steps``, in order: a call's position is its marker source."""
    return [
        call
        for step in steps
        if step["type"] == "tool_calls"
        for call in step["step_details"]["tool_calls"]
        if call["type"] == NAME
    ]


def citation_targets(calls: Iterable[dict[str, Any]]) -> dict[tuple[int, int], str]:
    """(source, result) → file id, for every passage of ``calls`` (numbered in order)."""
    return {
        (source, number): result["file_id"]
        for source, call in enumerate(calls)
        for number, result in enumerate(call[NAME].get("results") or [])
    }


def citations(text: str, targets: dict[tuple[int, int], str], start: int) -> list[dict[str, Any]]:
    """``file_citation`` annotations for the known markers of ``text`` from ``start`` on."""
    return [
        {
            "type": "file_citation",
            "text": match.group(0),
            "start_index": match.start(),
            "end_index": match.end(),
            "file_citation": {"file_id": targets[key]},
        }
        for match in MARKER.finditer(text, start)
        if (key := (int(match.group(1)), int(match.group(2)))) in targets
    ]


async def search(
    db: Database,
    embedder: Embedder,
    project_id: str,
    store_ids: Sequence[str],
    queries: Sequence[str],
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """The results a file_search call records (``content`` always; it is left out on the
    way out unless asked for)."""
    ranking = ranking_options(settings)
    hits = await retrieval.best_hits(
        db,
        embedder,
        project_id,
        store_ids,
        queries,
        max_results=settings.get("max_num_results") or DEFAULT_MAX_RESULTS,
        score_threshold=ranking["score_threshold"],
    )
    names = await retrieval.file_names(db, project_id, {hit.file_id for hit in hits})
    return [
        {
            "file_id": hit.file_id,
            "file_name": names[hit.file_id],
            "score": retrieval.clamp_score(hit.score),
            "content": [{"type": "text", "text": hit.text}],
        }
        for hit in hits
        if hit.file_id in names
    ]
