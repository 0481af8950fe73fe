"""file_search: ingestion throughput, search latency and retrieval quality, on SQLite and
PostgreSQL.

The corpus is Python's own documentation as shipped with the interpreter: the language
reference topics of ``pydoc_data.topics`` and the docstrings of some standard library modules
(``MODULES``), one document each. The questions (``bench/file_search_questions.json``) are
written by hand, paraphrased, each labelled with every document that answers it.

1. **Ingestion** (each store): a real ``runstep serve`` (its embedded worker, the offline local
   all-MiniLM-L6-v2). The documents are uploaded as ``.txt`` Files, then one vector store is
   created with all of them (chunking ``auto``: 800 / 400 tokens), so the server's worker
   extracts, chunks, embeds and indexes them. Timed from the create request until no file is
   ``in_progress`` (polled every ``POLL_SECONDS``), with the CPU time of the server process
   (and on PostgreSQL of our database's backends, ``bench.load.PostgresCpu``) over the same
   window. An untimed one-file store loads the model in the server first. Extracting and
   chunking alone are also timed in this process, to split the pipeline's cost.
2. **Quality** (each store, on what 1. stored): every question is searched with
   ``index.search`` in each mode (``max_results`` 20, the file_search tool's default) with its
   real query embedding. The chunks found map to their documents (in order of first
   appearance); then recall@5, hit@5, MRR and nDCG@10 (binary relevance) against the labels.
3. **Latency** (each store, a fresh database): synthetic chunks are inserted through
   ``index.add_chunks``: texts of corpus sentences drawn at random, to lengths drawn from the
   corpus's real chunks, and random unit vectors of the model's 384 dimensions (embedding 100k
   chunks with the model would take hours here). Queries are the questions, with their real
   embeddings. One store grows to each size in turn; at each size one search after clearing
   the vector cache (cold: it loads the store's matrix from the database), then ``searches``
   sequential searches per mode, cycling through the questions. On PostgreSQL ``VACUUM
   ANALYZE chunks`` runs after the inserts, as autovacuum soon would. Embedding a query is
   timed on its own (``query_embedding``): a file_search call costs that plus a search.
"""

import asyncio
import importlib
import json
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import sqlalchemy as sa
from rich.table import Table

from bench.common import (
    STORES,
    RunOptions,
    Store,
    postgres_admin,
    postgres_database,
    running_server,
    summarize,
)
from bench.load import PostgresCpu, auth_headers, cpu_usage, process_meter
from runstep.store import tables
from runstep.store.db import Database
from runstep.tools.file_search import index
from runstep.tools.file_search.chunking import AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS, chunk_text
from runstep.tools.file_search.embeddings import LOCAL_DIMENSIONS, LOCAL_MODEL_NAME, LocalEmbedder
from runstep.tools.file_search.extract import extract_text
from tests.support import databases

QUESTIONS_PATH = Path(__file__).with_name("file_search_questions.json")
MODULES = (
    "argparse", "cmd", "configparser", "copy", "csv", "fileinput", "hashlib", "json", "pdb",
    "plistlib", "pyclbr", "pydoc", "re", "shelve", "site", "socket", "socketserver", "ssl",
    "statistics", "sys", "timeit", "unittest", "uuid", "wave",
)  # standard library modules with long docstrings (and not deprecated)
MODES: tuple[index.Mode, ...] = ("hybrid", "vector", "keyword")
MAX_RESULTS = 20  # the file_search tool's default max_num_results
API_KEY = "sk-bench-file-search"
SERVER_ENV = {"RUNSTEP_REQUESTS_PER_MINUTE": "0"}  # measure ingestion, not the rate limiter
POLL_SECONDS = 0.1
INGEST_TIMEOUT = 3600.0
WARMUP_TEXT = "A short file ingested before the measurement, so that the model is loaded."
PROJECT = "proj_bench_file_search"
STORE_ID = "vs_bench_file_search"
CHUNKS_PER_FILE = 20  # synthetic chunks: 20 per file id
INSERT_BATCH = 5000  # synthetic chunks per add_chunks transaction
WARMUP_SEARCHES = 5
SEED = 5
TARGETS_MS = {10_000: 30.0, 100_000: 80.0}  # hybrid search p50, by store size
QUICK_QUESTIONS = 10
QUICK_DOC_CHARS = 4000
NOTES = [
    "Latency: chunks are synthetic (inserted with index.add_chunks): texts of sentences drawn "
    "at random from the corpus, to lengths drawn from the corpus's real chunks, and random "
    "unit vectors of the local model's 384 dimensions; only the queries are real embeddings. "
    "Vector search cost does not depend on the vectors' values; keyword search cost does "
    "depend on the text, hence realistic text.",
    "Latency is index.search in this process (no HTTP), after the query is embedded; a "
    "file_search call also embeds the query (query_embedding). client_cpu_ms_per_search is "
    "this process's CPU only (on PostgreSQL the backend's is not in it).",
    "The machine (2 cores) may have been busy with other work meanwhile: see load_average and "
    "ingestion.*.cpu.other_processes_cores; numbers may be inflated.",
    "Quality: documents ranked by the first appearance of their chunks among the top 20 "
    "chunks; recall@5 = labelled documents among the first 5 documents / labelled documents; "
    "hit@5 = at least one; nDCG@10 with binary relevance.",
]


# --- corpus and questions --------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One document of the corpus: ``topic:NAME`` or ``module:NAME``."""

    id: str
    text: str

    @property
    def filename(self) -> str:
        return self.id.replace(":", "-") + ".txt"


@dataclass(frozen=True)
class Question:
    text: str
    docs: frozenset[str]
    evidence: tuple[str, ...]


def corpus(modules: Sequence[str] = MODULES) -> list[Document]:
    """The language reference topics and the docstrings of ``modules``."""
    from pydoc_data.topics import topics

    documents = [Document(f"topic:{name}", text) for name, text in sorted(topics.items())]
    for name in modules:
        text = importlib.import_module(name).__doc__ or ""
        if text.strip():
            documents.append(Document(f"module:{name}", text))
    return documents


def load_questions(documents: Sequence[Document], path: Path = QUESTIONS_PATH) -> list[Question]:
    """The questions, with labels limited to ``documents`` (those left without any dropped)."""
    known = {document.id for document in documents}
    questions = []
    for item in json.loads(path.read_text())["questions"]:
        docs = frozenset(item["docs"]) & known
        if docs:
            questions.append(Question(item["q"], docs, tuple(item["evidence"])))
    return questions


def corpus_sentences(documents: Sequence[Document]) -> list[str]:
    """Sentences (or lines of code and grammar) of the corpus, whitespace collapsed."""
    pieces = (
        " ".join(piece.split())
        for document in documents
        for piece in re.split(r"(?<=[.!?])\s+|\n\s*\n", document.text)
    )
    return [piece for piece in pieces if 15 <= len(piece) <= 500]


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    documents: tuple[Document, ...]
    questions: tuple[Question, ...]
    ingest_stores: tuple[Store, ...] = STORES
    latency_stores: tuple[Store, ...] = STORES
    sizes: tuple[int, ...] = (10_000, 100_000)
    searches: int = 300  # timed searches per mode and size


def full_plan() -> Plan:
    documents = corpus()
    return Plan(tuple(documents), tuple(load_questions(documents)))


def quick_plan() -> Plan:
    """A few questions whose documents are all short, on just those documents."""
    documents = corpus()
    by_id = {document.id: document for document in documents}
    questions = [
        question for question in load_questions(documents)
        if all(len(by_id[doc].text) <= QUICK_DOC_CHARS for doc in question.docs)
    ][:QUICK_QUESTIONS]
    wanted = {doc for question in questions for doc in question.docs}
    return Plan(tuple(d for d in documents if d.id in wanted), tuple(questions),
                sizes=(1_000, 3_000), searches=30)


# --- metrics ---------------------------------------------------------------------------------


def doc_metrics(ranked: Sequence[str], relevant: frozenset[str]) -> dict[str, float]:
    """recall@5, hit@5, reciprocal rank and nDCG@10 of documents ranked best first."""
    found = len(set(ranked[:5]) & relevant)
    first = next((rank for rank, doc in enumerate(ranked, 1) if doc in relevant), None)
    dcg = sum(1 / math.log2(rank + 1) for rank, doc in enumerate(ranked[:10], 1) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), 10) + 1))
    return {"recall@5": found / len(relevant), "hit@5": float(found > 0),
            "mrr": 1 / first if first else 0.0, "ndcg@10": dcg / ideal}


METRICS = ("recall@5", "hit@5", "mrr", "ndcg@10")


# --- in-process pieces -----------------------------------------------------------------------


def measure_extract_chunk(documents: Sequence[Document]) -> dict[str, Any]:
    """Extract and chunk (auto) every document from a file, as the worker does."""
    with tempfile.TemporaryDirectory(prefix="runstep-bench-fs-") as tmp:
        paths = []
        for document in documents:
            path = Path(tmp) / document.filename
            path.write_text(document.text, encoding="utf-8")
            paths.append(path)
        wall, cpu = time.perf_counter(), time.process_time()
        lengths = []
        for document, path in zip(documents, paths, strict=True):
            text = extract_text(path, document.filename)
            lengths.extend(len(chunk.text) for chunk in chunk_text(text))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"documents": len(documents),
            "text_bytes": sum(len(d.text.encode()) for d in documents),
            "chunks": len(lengths), "seconds": wall, "cpu_seconds": cpu,
            "mean_chunk_chars": sum(lengths) / len(lengths), "chunk_lengths": lengths}


async def embed_queries(
    embedder: LocalEmbedder, questions: Sequence[Question]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Each question's embedding, one call each (as a file_search call does), timed after an
    untimed pass over all of them (the model's first calls on new input shapes are slow)."""
    await embedder.load()
    for question in questions:
        await embedder.embed([question.text])
    vectors, samples = [], []
    for question in questions:
        started = time.perf_counter()
        vectors.append((await embedder.embed([question.text]))[0])
        samples.append(time.perf_counter() - started)
    return np.stack(vectors), summarize(samples)


# --- 1. ingestion through a real server, 2. quality on what it stored -------------------------


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> "
                           f"{response.status_code}: {response.text[:500]}")
    return response.json()


def _upload(client: httpx.Client, filename: str, text: str) -> str:
    body = _ok(client.post("/files", data={"purpose": "assistants"},
                           files={"file": (filename, text.encode(), "text/plain")}))
    file_id: str = body["id"]
    return file_id


def _create_store(client: httpx.Client, name: str, file_ids: list[str]) -> str:
    store_id: str = _ok(client.post("/vector_stores", json={"name": name, "file_ids": file_ids,
                                                            "chunking_strategy": {"type": "auto"}})
                        )["id"]
    return store_id


def _wait_ingested(client: httpx.Client, store_id: str,
                   tick: Callable[[int], None] = lambda done: None) -> dict[str, int]:
    deadline = time.monotonic() + INGEST_TIMEOUT
    while True:
        counts: dict[str, int] = _ok(client.get(f"/vector_stores/{store_id}"))["file_counts"]
        tick(counts["total"] - counts["in_progress"])
        if counts["in_progress"] == 0:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"vector store {store_id} still ingesting: {counts}")
        time.sleep(POLL_SECONDS)


def _postmaster_pid() -> int | None:
    """The local PostgreSQL's postmaster (the parent of a backend); None if not visible."""
    with postgres_admin() as admin:
        row = admin.execute("SELECT pg_backend_pid()").fetchone()
    try:
        fields = Path(f"/proc/{row[0] if row else 0}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1])


async def _stored_chunks(url: str, store_id: str) -> tuple[str, int]:
    """The project and the number of chunks of a vector store, from the database."""
    chunks = tables.chunks.c
    db = Database(url)
    try:
        async with db.read() as conn:
            row = (await conn.execute(
                sa.select(sa.func.min(chunks.project_id), sa.func.count())
                .where(chunks.vector_store_id == store_id))).one()
    finally:
        await db.close()
    return str(row[0]), int(row[1])


def _ingest(store: Store, pid: int, client: httpx.Client, url: str,
            documents: Sequence[Document], options: RunOptions) -> tuple[dict[str, Any], str,
                                                                        dict[str, str], str]:
    """Upload, warm up, then ingest ``documents`` into a new store, timed."""
    progress = options.progress
    task = progress.add_task(f"file_search {store}: upload", total=len(documents))
    started = time.perf_counter()
    doc_of_file = {}
    for document in documents:
        doc_of_file[_upload(client, document.filename, document.text)] = document.id
        progress.advance(task)
    upload_seconds = time.perf_counter() - started
    progress.update(task, description=f"file_search {store}: load the model in the server",
                    completed=0, total=1)
    _wait_ingested(client, _create_store(client, "warm-up",
                                         [_upload(client, "warm-up.txt", WARMUP_TEXT)]))
    progress.update(task, description=f"file_search {store}: ingest", completed=0,
                    total=len(documents))
    postmaster = _postmaster_pid() if store == "postgresql" else None
    database = sa.make_url(url).database or ""
    with PostgresCpu(postmaster, database) if postmaster else nullcontext() as postgres:
        meter = process_meter({"server": pid}, *([postgres.read] if postgres else []))
        before = meter()
        store_id = _create_store(client, "corpus", list(doc_of_file))
        counts = _wait_ingested(client, store_id,
                                lambda done: progress.update(task, completed=done))
        after = meter()
    progress.remove_task(task)
    if counts["completed"] != len(documents):
        raise RuntimeError(f"ingestion on {store} did not complete every file: {counts}")
    project_id, chunks = asyncio.run(_stored_chunks(url, store_id))
    usage = cpu_usage(before, after, chunks)
    ours = ("server", PostgresCpu.OURS, PostgresCpu.UNATTRIBUTED)
    cpu = sum(usage[name]["cpu_seconds"] for name in ours if name in usage)
    wall = usage["wall_seconds"]
    text_bytes = sum(len(d.text.encode()) for d in documents)
    result = {
        "files": len(documents), "chunks": chunks, "text_bytes": text_bytes,
        "upload_seconds": upload_seconds, "seconds": wall,
        "chunks_per_second": chunks / wall, "text_kb_per_second": text_bytes / 1024 / wall,
        "cpu_seconds": cpu, "cpu_seconds_per_chunk": cpu / chunks,
        "server_cores": usage["server"]["cores"], "cpu": usage,
    }
    return result, store_id, doc_of_file, project_id


async def evaluate_quality(
    url: str, project_id: str, store_id: str, doc_of_file: dict[str, str],
    questions: Sequence[Question], vectors: np.ndarray, tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Retrieval quality of each mode over a store that holds the corpus."""
    db = Database(url)
    per_question: list[dict[str, Any]] = [
        {"q": q.text, "docs": sorted(q.docs), "top5": {}, "ndcg@10": {}} for q in questions]
    summary: dict[str, dict[str, float]] = {}
    try:
        for mode in MODES:
            totals = dict.fromkeys(METRICS, 0.0)
            for question, vector, row in zip(questions, vectors, per_question, strict=True):
                hits = await index.search(db, project_id, [store_id], question.text, vector,
                                          max_results=MAX_RESULTS, mode=mode)
                ranked = list(dict.fromkeys(doc_of_file[hit.file_id] for hit in hits))
                metrics = doc_metrics(ranked, question.docs)
                for name in METRICS:
                    totals[name] += metrics[name]
                row["top5"][mode] = ranked[:5]
                row["ndcg@10"][mode] = round(metrics["ndcg@10"], 3)
                tick()
            summary[mode] = {name: total / len(questions) for name, total in totals.items()}
    finally:
        await db.close()
        index.clear_cache()
    return {"questions": len(questions), "summary": summary, "per_question": per_question}


def ingest_and_evaluate(store: Store, plan: Plan, vectors: np.ndarray,
                        options: RunOptions) -> dict[str, Any]:
    """Ingestion through a real server on ``store``, then quality on what it stored."""
    with (running_server(store, [API_KEY], env=SERVER_ENV) as server,
          httpx.Client(base_url=server.base_url, headers=auth_headers(API_KEY),
                       timeout=120.0) as client):
        assert server.process is not None
        url = server.env["RUNSTEP_DATABASE_URL"]
        ingestion, store_id, doc_of_file, project_id = _ingest(
            store, server.process.pid, client, url, plan.documents, options)
        task = options.progress.add_task(f"file_search {store}: quality",
                                         total=len(MODES) * len(plan.questions))
        quality = asyncio.run(evaluate_quality(
            url, project_id, store_id, doc_of_file, plan.questions, vectors,
            lambda: options.progress.advance(task)))
        options.progress.remove_task(task)
    return {"ingestion": ingestion, "quality": quality}


# --- 3. latency on synthetic chunks ----------------------------------------------------------


def synthetic_chunks(begin: int, count: int, sentences: Sequence[str], lengths: Sequence[int],
                     picker: random.Random, rng: np.random.Generator,
                     dimensions: int = LOCAL_DIMENSIONS) -> list[index.ChunkRecord]:
    """Chunks ``begin`` .. ``begin + count - 1`` of the synthetic store."""
    vectors = rng.standard_normal((count, dimensions), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = []
    for offset, vector in enumerate(vectors):
        number = begin + offset
        target = lengths[picker.randrange(len(lengths))]
        parts, size = [], 0
        while size < target:
            sentence = sentences[picker.randrange(len(sentences))]
            parts.append(sentence)
            size += len(sentence) + 1
        records.append(index.ChunkRecord(
            STORE_ID, f"file-{number // CHUNKS_PER_FILE:06d}", number % CHUNKS_PER_FILE,
            " ".join(parts)[:target], vector))
    return records


@contextmanager
def fresh_database(store: Store) -> Iterator[str]:
    """A new, migrated database of its own on ``store``, removed on exit."""
    if store == "postgresql":
        with postgres_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="runstep-bench-fs-") as tmp:
        url = databases.sqlite_url(Path(tmp))
        databases.migrate_sync(url)
        yield url


def _vacuum_analyze(url: str) -> None:
    parsed = sa.make_url(url)
    with psycopg.connect(host=parsed.host, port=parsed.port or 5432, user=parsed.username,
                         password=parsed.password, dbname=parsed.database,
                         autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE chunks")


async def _time_searches(db: Database, queries: Sequence[tuple[str, np.ndarray]], searches: int,
                         tick: Callable[[], None]) -> dict[str, Any]:
    async def search(number: int, mode: index.Mode) -> int:
        text, vector = queries[number % len(queries)]
        hits = await index.search(db, PROJECT, [STORE_ID], text, vector,
                                  max_results=MAX_RESULTS, mode=mode)
        return len(hits)

    index.clear_cache()
    started = time.perf_counter()
    await search(0, "vector")
    result: dict[str, Any] = {"cold_vector_ms": (time.perf_counter() - started) * 1000}
    for mode in MODES:
        for number in range(WARMUP_SEARCHES):
            await search(number, mode)
        samples, hits = [], 0
        cpu = time.process_time()
        for number in range(searches):
            started = time.perf_counter()
            hits += await search(number, mode)
            samples.append(time.perf_counter() - started)
            tick()
        cpu = time.process_time() - cpu
        result[mode] = {**summarize(samples), "client_cpu_ms_per_search": 1000 * cpu / searches,
                        "mean_hits": hits / searches}
    return result


async def _latency(url: str, store: Store, plan: Plan, queries: Sequence[tuple[str, np.ndarray]],
                   sentences: Sequence[str], lengths: Sequence[int],
                   options: RunOptions) -> dict[str, Any]:
    progress = options.progress
    picker, rng = random.Random(SEED), np.random.default_rng(SEED)
    db = Database(url)
    results: dict[str, Any] = {}
    inserted = 0
    try:
        for size in plan.sizes:
            task = progress.add_task(f"file_search {store}: insert {size:,} chunks",
                                     total=size, completed=inserted)
            started = time.perf_counter()
            while inserted < size:
                records = synthetic_chunks(inserted, min(INSERT_BATCH, size - inserted),
                                           sentences, lengths, picker, rng)
                async with db.write() as conn:
                    await index.add_chunks(conn, PROJECT, records)
                inserted += len(records)
                progress.update(task, completed=inserted)
            if store == "postgresql":
                await asyncio.to_thread(_vacuum_analyze, url)
            insert_seconds = time.perf_counter() - started
            progress.update(task, description=f"file_search {store}: search {size:,} chunks",
                            completed=0, total=len(MODES) * plan.searches)
            timings = await _time_searches(db, queries, plan.searches,
                                           lambda task=task: progress.advance(task))
            progress.remove_task(task)
            results[str(size)] = {"chunks": size, "insert_seconds": insert_seconds,
                                  "load_average": list(os.getloadavg()), **timings}
    finally:
        await db.close()
        index.clear_cache()
    return results


def measure_latency(store: Store, plan: Plan, queries: Sequence[tuple[str, np.ndarray]],
                    sentences: Sequence[str], lengths: Sequence[int],
                    options: RunOptions) -> dict[str, Any]:
    """Search latency by size and mode on a fresh database of ``store``."""
    with fresh_database(store) as url:
        return asyncio.run(_latency(url, store, plan, queries, sentences, lengths, options))


# --- reporting -------------------------------------------------------------------------------


def _targets(latency: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for store, sizes in latency.items():
        for size, bound in TARGETS_MS.items():
            if str(size) in sizes:
                value = sizes[str(size)]["hybrid"]["p50_ms"]
                found.append({"store": store, "chunks": size, "metric": "hybrid p50 ms",
                              "value": value, "target": f"< {bound:g}", "met": value < bound})
    return found


def _tables(payload: dict[str, Any]) -> list[Table]:
    ingestion = Table("store", "files", "chunks", "seconds", "chunks/s", "CPU s/chunk",
                      "server cores", "other cores",
                      title="Ingestion through runstep serve (extract, chunk auto 800/400, "
                            "embed locally, index)")
    for store, row in payload["ingestion"].items():
        ingestion.add_row(store, str(row["files"]), str(row["chunks"]), f"{row['seconds']:.1f}",
                          f"{row['chunks_per_second']:.2f}", f"{row['cpu_seconds_per_chunk']:.3f}",
                          f"{row['server_cores']:.2f}",
                          f"{row['cpu'].get('other_processes_cores') or 0:.2f}")
    quality = Table("store", "mode", *METRICS,
                    title=f"Retrieval quality ({len(payload['parameters']['questions'])} questions"
                          f", {payload['parameters']['corpus']['documents']} documents)")
    for store, result in payload["quality"].items():
        for mode in MODES:
            row = result["summary"][mode]
            quality.add_row(store, mode, *(f"{row[name]:.3f}" for name in METRICS))
        quality.add_section()
    latency = Table("store", "chunks", "mode", "p50 ms", "p99 ms", "mean ms", "cold vector ms",
                    title="index.search latency (synthetic chunks, real query embeddings; "
                          f"query embedding p50 {payload['query_embedding']['p50_ms']:.1f} ms)")
    for store, sizes in payload["latency"].items():
        for size, result in sizes.items():
            for mode in MODES:
                row = result[mode]
                latency.add_row(store, f"{int(size):,}", mode, f"{row['p50_ms']:.1f}",
                                f"{row['p99_ms']:.1f}", f"{row['mean_ms']:.1f}",
                                f"{result['cold_vector_ms']:.0f}" if mode == "vector" else "")
            latency.add_section()
    if not payload["targets"]:
        return [ingestion, quality, latency]
    targets = Table("store", "chunks", "metric", "value", "target", "result", title="Targets")
    for target in payload["targets"]:
        targets.add_row(target["store"], f"{target['chunks']:,}", target["metric"],
                        f"{target['value']:.1f}", target["target"],
                        "[green]met[/green]" if target["met"] else "[red]missed[/red]")
    return [ingestion, quality, latency, targets]


def measure(plan: Plan, options: RunOptions) -> dict[str, Any]:
    """Run ``plan``; print tables; return the result payload."""
    load_average = list(os.getloadavg())
    stages = measure_extract_chunk(plan.documents)
    lengths = stages.pop("chunk_lengths")
    vectors, query_embedding = asyncio.run(embed_queries(LocalEmbedder(), plan.questions))
    ingestion, quality = {}, {}
    for store in plan.ingest_stores:
        result = ingest_and_evaluate(store, plan, vectors, options)
        ingestion[store], quality[store] = result["ingestion"], result["quality"]
    queries = [(question.text, vector) for question, vector in zip(plan.questions, vectors,
                                                                   strict=True)]
    sentences = corpus_sentences(plan.documents)
    latency = {store: measure_latency(store, plan, queries, sentences, lengths, options)
               for store in plan.latency_stores}
    payload = {
        "parameters": {
            "corpus": {"documents": len(plan.documents), "text_bytes": stages["text_bytes"],
                       "source": "pydoc_data.topics.topics + docstrings of "
                                 f"{', '.join(m for m in MODULES)}"},
            "questions": [question.text for question in plan.questions],
            "model": LOCAL_MODEL_NAME, "dimensions": LOCAL_DIMENSIONS,
            "chunking": {"max_chunk_size_tokens": AUTO_MAX_TOKENS,
                         "chunk_overlap_tokens": AUTO_OVERLAP_TOKENS},
            "modes": list(MODES), "max_results": MAX_RESULTS, "sizes": list(plan.sizes),
            "searches_per_mode": plan.searches, "warmup_searches": WARMUP_SEARCHES,
            "synthetic_sentences": len(sentences), "chunks_per_synthetic_file": CHUNKS_PER_FILE,
        },
        "notes": NOTES,
        "load_average_at_start": load_average,
        "extract_and_chunk_in_process": stages,
        "query_embedding": query_embedding,
        "ingestion": ingestion,
        "quality": quality,
        "latency": latency,
    }
    payload["targets"] = _targets(latency)
    for table in _tables(payload):
        options.console.print(table)
    return payload


def run(options: RunOptions) -> dict[str, Any]:
    """The full plan, or the quick one (a few short documents, 1k and 3k chunks)."""
    return measure(quick_plan() if options.quick else full_plan(), options)


def tiny_plan(plan: Plan, questions: int = 3, size: int = 200, searches: int = 3) -> Plan:
    """``plan`` cut down to a few questions and their documents, for smoke tests."""
    kept = plan.questions[:questions]
    wanted = {doc for question in kept for doc in question.docs}
    return replace(plan, questions=kept,
                   documents=tuple(d for d in plan.documents if d.id in wanted),
                   sizes=(size,), searches=searches)
