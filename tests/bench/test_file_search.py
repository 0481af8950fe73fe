"""Smoke test of the file_search benchmark (``python -m bench file_search``): its question
set is consistently labelled, and its quick mode's functions run end to end on a tiny corpus
(a real server on SQLite for ingestion; search on both stores). No timing is asserted."""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from rich.console import Console
from rich.progress import Progress

from bench import file_search
from bench.common import RunOptions


def _normalized(text: str) -> str:
    return " ".join(text.split()).lower()


def test_questions_are_labelled_with_documents_that_hold_their_answer() -> None:
    documents = file_search.corpus()
    texts = {document.id: _normalized(document.text) for document in documents}
    raw = json.loads(file_search.QUESTIONS_PATH.read_text())["questions"]
    questions = file_search.load_questions(documents)
    assert 40 <= len(questions) == len(raw) <= 60
    assert len({question.text for question in questions}) == len(questions)
    for item in raw:
        assert set(item["docs"]) <= texts.keys(), item["q"]
        evidence = [_normalized(passage) for passage in item["evidence"]]
        for doc in item["docs"]:
            assert any(passage in texts[doc] for passage in evidence), (item["q"], doc)
        # paraphrased: the question is not a sentence copied from its documents
        assert not any(_normalized(item["q"]) in texts[doc] for doc in item["docs"]), item["q"]


def test_doc_metrics() -> None:
    metrics = file_search.doc_metrics(["a", "b", "c"], frozenset({"b", "z"}))
    assert metrics["recall@5"] == 0.5
    assert metrics["hit@5"] == 1.0
    assert metrics["mrr"] == 0.5
    assert 0.0 < metrics["ndcg@10"] < 1.0
    assert file_search.doc_metrics([], frozenset({"a"}))["ndcg@10"] == 0.0


def test_quick_mode_on_a_tiny_corpus() -> None:
    plan = file_search.tiny_plan(file_search.quick_plan(), questions=3, size=200, searches=3)
    plan = replace(plan, ingest_stores=("sqlite",))
    console = Console(file=io.StringIO(), width=160)
    options = RunOptions(quick=True, progress=Progress(console=console, disable=True),
                         console=console)
    # asyncio.run on a thread of its own, away from pytest-asyncio's event loop
    with ThreadPoolExecutor(max_workers=1) as executor:
        payload = executor.submit(file_search.measure, plan, options).result()

    json.dumps(payload)  # what write_result stores
    ingestion = payload["ingestion"]["sqlite"]
    assert ingestion["files"] == len(plan.documents)
    assert ingestion["chunks"] >= len(plan.documents)
    assert ingestion["cpu_seconds_per_chunk"] > 0
    quality = payload["quality"]["sqlite"]
    assert quality["questions"] == len(plan.questions)
    for mode in file_search.MODES:
        assert all(0.0 <= value <= 1.0 for value in quality["summary"][mode].values())
    assert set(payload["latency"]) == {"sqlite", "postgresql"}
    for sizes in payload["latency"].values():
        result = sizes["200"]
        assert result["chunks"] == 200
        for mode in file_search.MODES:
            assert result[mode]["n"] == 3
            assert result[mode]["mean_hits"] > 0
    assert payload["targets"] == []  # only 10k and 100k chunks have targets
    assert "Retrieval quality" in console.file.getvalue()
