"""The file_search index on both stores, with the real local embedder over a small corpus.

Set ``RUNSTEP_BENCH_SEARCH=1`` to also run `test_search_latency_10k_chunks`, which prints
search latencies over 10,000 chunks (nothing about timing is asserted).
"""

import os
import random
import time
from collections.abc import Sequence

import numpy as np
import pytest
import sqlalchemy as sa

from runstep.store import chunks as chunk_sql
from runstep.store import tables
from runstep.store.db import Database
from runstep.tools.file_search import index
from runstep.tools.file_search.embeddings import LocalEmbedder
from runstep.tools.file_search.index import ChunkRecord, Hit

PROJECT = "proj_index"
OTHER_PROJECT = "proj_other"
STORE_A = "vs_a"
STORE_B = "vs_b"

# file id -> its paragraphs (one chunk each). Distinct topics, a few deliberate overlaps.
CORPUS: dict[str, list[str]] = {
    "file-tomato": [
        "Tomato plants suffer from early blight, a fungus that spots the lower leaves. Water at "
        "the base in the morning, mulch the soil, and remove infected foliage to keep it away.",
    ],
    "file-sourdough": [
        "A sourdough starter is flour and water fermented by wild yeast and lactobacilli. Feed it "
        "daily, keep it at room temperature, and use it when it doubles within six hours.",
    ],
    "file-pterosaur": [
        "Quetzalcoatlus was a giant azhdarchid pterosaur of the Late Cretaceous. Its wingspan "
        "reached about ten metres, making it one of the largest flying animals that ever lived.",
    ],
    "file-flight": [
        "Pterosaurs flew on membranes of skin stretched from an elongated fourth finger. They "
        "launched from the ground by vaulting on their forelimbs, then soared on thermals.",
    ],
    "file-giftshop": [
        "Gift shop opening hours are nine to five; the checkout takes cards and cash, and members "
        "get ten percent off. Bestsellers: Quetzalcoatlus plush, Quetzalcoatlus mug, "
        "Quetzalcoatlus keychain, postcards and umbrellas.",
    ],
    "file-password": [
        "To change a forgotten login password, open the sign-in page, choose 'Forgot password', "
        "and follow the link we email you. The link expires after thirty minutes.",
    ],
    "file-espresso": [
        "Pull an espresso shot with eighteen grams of finely ground coffee and thirty-six grams "
        "of water in about twenty-eight seconds; adjust the grind if it runs fast or slow.",
    ],
    "file-tides": [
        "Ocean tides are caused mainly by the Moon's gravity pulling on the Earth's oceans, with "
        "the Sun adding spring tides at new and full moon and neap tides at the quarters.",
    ],
    "file-rust": [
        "In Rust, the borrow checker enforces that a value has either one mutable reference or "
        "any number of shared references, which prevents data races at compile time.",
    ],
    "file-marathon": [
        "Marathon training plans build weekly mileage gradually, include one long run each week, "
        "and taper for two to three weeks before race day to let the legs recover.",
    ],
    "file-volcano": [
        "Shield volcanoes such as Mauna Loa form from fluid basaltic lava that flows far before "
        "cooling, building broad gentle slopes rather than steep explosive cones.",
    ],
    "file-taxes": [
        "Quarterly estimated tax payments are due in April, June, September and January for "
        "freelancers whose income is not subject to withholding by an employer.",
    ],
    "file-chess": [
        "In chess, castling moves the king two squares toward a rook and places the rook on the "
        "other side; it is illegal if the king is in check or passes through attacked squares.",
    ],
    "file-bees": [
        "Honeybees communicate the direction and distance of flowers with the waggle dance; the "
        "angle of the run relative to vertical encodes the direction relative to the sun.",
    ],
    "file-vaccines": [
        "Vaccines train the immune system by presenting a harmless antigen, so memory B and T "
        "cells respond faster and stronger when the real pathogen appears later.",
    ],
    "file-guitar": [
        "To tune a guitar by ear, fret the low E string at the fifth fret and match the open A "
        "string, then repeat the pattern, except the fourth fret for the B string.",
    ],
    "file-photosynthesis": [
        "Photosynthesis in chloroplasts turns carbon dioxide and water into glucose using light "
        "energy, releasing oxygen as a by-product of splitting water molecules.",
    ],
    "file-compost": [
        "A hot compost pile needs a balance of green nitrogen-rich scraps and brown carbon-rich "
        "leaves, regular turning for air, and moisture like a wrung-out sponge.",
    ],
    "file-manual": [
        "Section 4 of the manual: replacing the printer's fuser unit. Power off, wait thirty "
        "minutes for it to cool, release the two blue levers, and slide the unit out.",
        "Section 5 of the manual: the error code E-4417 means the paper tray sensor is dirty; "
        "wipe it with a dry cloth and restart the printer to clear the zorblatt condition.",
    ],
}
STORE_B_FILES = {"file-chess", "file-bees", "file-vaccines", "file-guitar"}


def store_of(file_id: str) -> str:
    return STORE_B if file_id in STORE_B_FILES else STORE_A


@pytest.fixture(scope="session")
async def corpus_records(local_embedder: LocalEmbedder) -> list[ChunkRecord]:
    """Every chunk of the corpus with its real embedding (embedded once per session)."""
    items = [
        (file_id, number, text)
        for file_id, paragraphs in CORPUS.items()
        for number, text in enumerate(paragraphs)
    ]
    vectors = await local_embedder.embed([text for _, _, text in items])
    return [
        ChunkRecord(store_of(file_id), file_id, number, text, vector)
        for (file_id, number, text), vector in zip(items, vectors, strict=True)
    ]


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    index.clear_cache()


@pytest.fixture
async def corpus_db(db: Database, corpus_records: list[ChunkRecord]) -> Database:
    async with db.write() as conn:
        await index.add_chunks(conn, PROJECT, corpus_records)
    return db


async def run(
    db: Database,
    embedder: LocalEmbedder,
    query: str,
    stores: Sequence[str] = (STORE_A, STORE_B),
    **options,  # type: ignore[no-untyped-def]
) -> list[Hit]:
    vector = (await embedder.embed([query]))[0]
    return await index.search(db, PROJECT, stores, query, vector, **options)


def assert_well_formed(hits: list[Hit], max_results: int = 10) -> None:
    assert len(hits) <= max_results
    scores = [hit.score for hit in hits]
    assert all(0.0 <= score <= 1.0 for score in scores), scores
    assert scores == sorted(scores, reverse=True)
    keys = [(hit.vector_store_id, hit.file_id, hit.chunk_index) for hit in hits]
    assert len(set(keys)) == len(keys)
    for hit in hits:
        assert hit.text == CORPUS[hit.file_id][hit.chunk_index]
        assert hit.vector_store_id == store_of(hit.file_id)


# --- ranking ------------------------------------------------------------------------------


async def test_vector_mode_finds_a_paraphrase(
    corpus_db: Database, local_embedder: LocalEmbedder
) -> None:
    hits = await run(
        corpus_db,
        local_embedder,
        "How do I stop my tomatoes from getting a leaf disease?",
        mode="vector",
    )
    assert_well_formed(hits)
    assert hits[0].file_id == "file-tomato"
    hits = await run(corpus_db, local_embedder, "why does the sea rise and fall", mode="vector")
    assert hits[0].file_id == "file-tides"
    # Vector-mode scores are cosine similarities: the best one is well above the rest.
    assert hits[0].score > 0.4 and hits[0].score > hits[-1].score + 0.2


async def test_keyword_mode_finds_a_rare_word(
    corpus_db: Database, local_embedder: LocalEmbedder
) -> None:
    hits = await run(corpus_db, local_embedder, "zorblatt", mode="keyword")
    assert [(hit.file_id, hit.chunk_index) for hit in hits] == [("file-manual", 1)]
    assert hits[0].score == 1.0  # first of the one list
    hits = await run(corpus_db, local_embedder, "what does E-4417 mean?", mode="keyword")
    assert (hits[0].file_id, hits[0].chunk_index) == ("file-manual", 1)
    # Stemming: "lactobacillus"-free, but "feeding" finds "Feed".
    hits = await run(corpus_db, local_embedder, "feeding starters", mode="keyword")
    assert hits[0].file_id == "file-sourdough"
    assert_well_formed(hits)


def test_selective_terms_keeps_the_rarest_within_the_budget() -> None:
    terms = ["common", "rare", "middling", "rarest"]
    counts = [900.0, 40.0, 300.0, 5.0]
    assert index.selective_terms(terms, counts, 400) == ["rare", "middling", "rarest"]
    assert index.selective_terms(terms, counts, 100) == ["rare", "rarest"]
    assert index.selective_terms(terms, counts, 1) == ["rarest"]  # always the rarest
    assert index.selective_terms(["a", "b"], [7.0, 7.0], 10) == ["a"]  # ties: query order


async def analyzed(db: Database) -> Database:
    """``db`` with planner statistics (PostgreSQL's term counts come from them)."""
    if db.engine.dialect.name == "postgresql":
        async with db.write() as conn:
            await conn.execute(sa.text("ANALYZE chunks"))
    return db


async def test_term_document_counts(corpus_db: Database) -> None:
    words = ["zorblatt", "quetzalcoatlus", "unheardofword", "the"]
    async with (await analyzed(corpus_db)).read() as conn:
        counts = await chunk_sql.term_document_counts(conn, words, cap=3)
    if corpus_db.engine.dialect.name == "sqlite":
        assert counts == [1, 2, 0, 3]  # exact, "the" (in most chunks) capped
    else:  # estimates; "the" is a stop word there, in no tsvector
        assert counts[3] == 0 and all(0 <= count <= 3 for count in counts)
        assert counts[0] <= counts[1]


async def test_keyword_candidates_come_from_the_rarest_terms(
    corpus_db: Database, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    await analyzed(corpus_db)
    everything = await run(corpus_db, local_embedder, "zorblatt printer", mode="keyword")
    assert {hit.chunk_index for hit in everything if hit.file_id == "file-manual"} == {0, 1}
    monkeypatch.setattr(index, "KEYWORD_ROW_BUDGETS", {"sqlite": 1, "postgresql": 1})
    hits = await run(corpus_db, local_embedder, "zorblatt printer", mode="keyword")
    assert [(hit.file_id, hit.chunk_index) for hit in hits] == [("file-manual", 1)]


async def test_hybrid_ranks_a_chunk_matching_both_first(
    corpus_db: Database, local_embedder: LocalEmbedder
) -> None:
    query = "How large was the wingspan of Quetzalcoatlus?"
    keyword = await run(corpus_db, local_embedder, query, mode="keyword")
    vector = await run(corpus_db, local_embedder, query, mode="vector")
    hybrid = await run(corpus_db, local_embedder, query)
    assert_well_formed(hybrid)
    # The gift shop repeats the keyword; the flight paragraph is on topic without it.
    assert {hit.file_id for hit in keyword} == {"file-pterosaur", "file-giftshop"}
    assert "file-flight" in [hit.file_id for hit in vector[:3]]
    assert hybrid[0].file_id == "file-pterosaur"
    assert hybrid[0].score >= hybrid[1].score
    assert hybrid[0].score > 1 / (1 + index.KEYWORD_WEIGHT)  # in both lists
    only_one_list = [
        hit for hit in hybrid if hit.file_id not in {"file-pterosaur", "file-giftshop"}
    ]
    assert all(hit.score <= 1 / (1 + index.KEYWORD_WEIGHT) for hit in only_one_list)


async def test_hybrid_still_works_without_keyword_matches(
    corpus_db: Database, local_embedder: LocalEmbedder
) -> None:
    hits = await run(corpus_db, local_embedder, "sign-in credentials recovery")
    assert hits[0].file_id == "file-password"
    hits = await run(corpus_db, local_embedder, "the of and")  # only stop words: kept as terms
    assert_well_formed(hits)


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
async def test_scores_in_range_sorted_and_limited(
    corpus_db: Database, local_embedder: LocalEmbedder, mode: str
) -> None:
    for query in ("printer paper tray", "coffee", "immune memory cells", "moon"):
        for max_results in (1, 3, 50):
            hits = await run(corpus_db, local_embedder, query, mode=mode, max_results=max_results)
            assert_well_formed(hits, max_results)
            if mode != "keyword":
                assert len(hits) == min(max_results, sum(len(p) for p in CORPUS.values()))


async def test_search_is_deterministic(corpus_db: Database, local_embedder: LocalEmbedder) -> None:
    first = await run(corpus_db, local_embedder, "the moon and the sea")
    for _ in range(3):
        assert await run(corpus_db, local_embedder, "the moon and the sea") == first


async def test_score_threshold(corpus_db: Database, local_embedder: LocalEmbedder) -> None:
    query = "How large was the wingspan of Quetzalcoatlus?"
    everything = await run(corpus_db, local_embedder, query, max_results=50)
    cut = 0.7  # above the best score of a chunk in one list only (1 / 1.5)
    high = await run(corpus_db, local_embedder, query, max_results=50, score_threshold=cut)
    assert high and all(hit.score >= cut for hit in high)
    assert high == [hit for hit in everything if hit.score >= cut]
    assert len(high) < len(everything)
    vector = await run(corpus_db, local_embedder, query, mode="vector", score_threshold=0.3)
    assert vector and all(hit.score >= 0.3 for hit in vector)
    assert await run(corpus_db, local_embedder, "bread", mode="vector", score_threshold=1.0) == []


# --- scoping and filtering -------------------------------------------------------------------


async def test_store_and_project_scoping(
    corpus_db: Database, local_embedder: LocalEmbedder, corpus_records: list[ChunkRecord]
) -> None:
    for mode in ("hybrid", "vector", "keyword"):
        hits = await run(corpus_db, local_embedder, "chess castling king", [STORE_B], mode=mode)
        assert hits and {hit.vector_store_id for hit in hits} == {STORE_B}
        assert hits[0].file_id == "file-chess"
        hits = await run(corpus_db, local_embedder, "chess castling king", [STORE_A], mode=mode)
        assert "file-chess" not in {hit.file_id for hit in hits}
    assert await run(corpus_db, local_embedder, "chess", ["vs_missing"]) == []
    assert await run(corpus_db, local_embedder, "chess", []) == []
    vector = (await local_embedder.embed(["chess"]))[0]
    other = await index.search(corpus_db, OTHER_PROJECT, [STORE_A, STORE_B], "chess", vector)
    assert other == []


async def test_allowed_file_ids(corpus_db: Database, local_embedder: LocalEmbedder) -> None:
    query = "How large was the wingspan of Quetzalcoatlus?"
    allowed = {"file-giftshop", "file-espresso", "file-chess"}
    for mode in ("hybrid", "vector", "keyword"):
        hits = await run(corpus_db, local_embedder, query, allowed_file_ids=allowed, mode=mode)
        assert hits and {hit.file_id for hit in hits} <= allowed
        assert hits[0].file_id == "file-giftshop"
        assert await run(corpus_db, local_embedder, query, allowed_file_ids=[], mode=mode) == []
    # Applied before ranking: the best allowed chunk is first in its list, so it scores 1.0.
    hits = await run(corpus_db, local_embedder, query, allowed_file_ids=allowed)
    assert hits[0].score == pytest.approx(1.0)


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced quote',
        "AND OR NOT",
        "NEAR(printer paper, 2)",
        "prin* ^start col:value -minus +plus",
        "'; DROP TABLE chunks; --",
        "(((",
        "",
        "   ",
        "🦖 pterosaure géant — ¿qué? 翼竜",
        "a\x00b",
        "tree & ! | <-> :* stars",
        "x " * 200,
    ],
)
async def test_query_syntax_is_never_interpreted(
    corpus_db: Database, local_embedder: LocalEmbedder, query: str
) -> None:
    for mode in ("keyword", "hybrid"):
        hits = await run(corpus_db, local_embedder, query, mode=mode)
        assert_well_formed(hits)
    quoted = await run(corpus_db, local_embedder, '"zorblatt" OR', mode="keyword")
    assert [hit.file_id for hit in quoted] == ["file-manual"]


# --- deletes and the cache -------------------------------------------------------------------


async def test_delete_file_removes_results_and_cache(
    corpus_db: Database, local_embedder: LocalEmbedder
) -> None:
    query = "How large was the wingspan of Quetzalcoatlus?"
    before = await run(corpus_db, local_embedder, query)
    assert before[0].file_id == "file-pterosaur"
    info = index.cache_info()
    assert info["loads"] == 2 and (PROJECT, STORE_A) in info["keys"]  # type: ignore[operator]
    await run(corpus_db, local_embedder, query)
    assert index.cache_info()["loads"] == 2  # served from the cache

    async with corpus_db.write() as conn:
        removed = await index.delete_file_chunks(conn, PROJECT, STORE_A, "file-pterosaur")
    assert removed == 1
    assert (PROJECT, STORE_A) not in index.cache_info()["keys"]  # type: ignore[operator]
    for mode in ("hybrid", "vector", "keyword"):
        hits = await run(corpus_db, local_embedder, query, mode=mode, max_results=50)
        assert "file-pterosaur" not in {hit.file_id for hit in hits}
    assert index.cache_info()["loads"] == 3  # store A reloaded once, store B still cached
    entry = index._CACHE._entries[(PROJECT, STORE_A)]
    assert "file-pterosaur" not in entry.file_ids
    assert entry.matrix.shape[0] == sum(
        len(p) for f, p in CORPUS.items() if store_of(f) == STORE_A and f != "file-pterosaur"
    )
    async with corpus_db.write() as conn:
        assert await index.delete_file_chunks(conn, PROJECT, STORE_A, "file-pterosaur") == 0
        assert await index.delete_file_chunks(conn, OTHER_PROJECT, None, "file-giftshop") == 0


async def test_delete_file_from_every_store(
    db: Database, local_embedder: LocalEmbedder, corpus_records: list[ChunkRecord]
) -> None:
    manual = [record for record in corpus_records if record.file_id == "file-manual"]
    copies = [
        ChunkRecord(store, r.file_id, r.index, r.text, r.vector)
        for store in (STORE_A, STORE_B)
        for r in manual
    ]
    async with db.write() as conn:
        await index.add_chunks(conn, PROJECT, copies)
    hits = await run(db, local_embedder, "zorblatt", mode="keyword")
    assert {hit.vector_store_id for hit in hits} == {STORE_A, STORE_B}
    async with db.write() as conn:
        assert await index.delete_file_chunks(conn, PROJECT, None, "file-manual") == 4
    for mode in ("hybrid", "vector", "keyword"):
        assert await run(db, local_embedder, "zorblatt printer", mode=mode) == []


async def test_delete_store_chunks(corpus_db: Database, local_embedder: LocalEmbedder) -> None:
    await run(corpus_db, local_embedder, "chess")
    async with corpus_db.write() as conn:
        count = await index.delete_store_chunks(conn, PROJECT, STORE_B)
    assert count == sum(len(CORPUS[f]) for f in STORE_B_FILES)
    for mode in ("hybrid", "vector", "keyword"):
        assert await run(corpus_db, local_embedder, "chess castling", [STORE_B], mode=mode) == []
    assert await run(corpus_db, local_embedder, "printer", [STORE_A])  # untouched
    async with corpus_db.read() as conn:
        versions = await chunk_sql.store_versions(conn, PROJECT, [STORE_A, STORE_B])
    assert set(versions) == {STORE_A}


async def test_changes_made_elsewhere_invalidate_the_cache(
    corpus_db: Database, local_embedder: LocalEmbedder, corpus_records: list[ChunkRecord]
) -> None:
    """Another process writes through the SQL layer without touching this process's cache:
    the store's version token still changes, so the next search reloads."""
    await run(corpus_db, local_embedder, "espresso", mode="vector")
    vector = (await local_embedder.embed(["A kraken attacked the lighthouse keeper."]))[0]
    row = chunk_sql.ChunkRow(STORE_A, "file-kraken", 0, "A kraken attacked.", vector.tobytes())
    async with corpus_db.write() as conn:
        await chunk_sql.insert_chunks(conn, PROJECT, [row])
    assert (PROJECT, STORE_A) in index.cache_info()["keys"]  # type: ignore[operator]
    hits = await run(corpus_db, local_embedder, "sea monster attack", mode="vector")
    assert hits[0].file_id == "file-kraken"


async def test_add_chunks_stores_float32_and_rejects_duplicates(
    db: Database, corpus_records: list[ChunkRecord]
) -> None:
    record = corpus_records[0]
    async with db.write() as conn:
        await index.add_chunks(
            conn, PROJECT, [ChunkRecord(STORE_A, "f", 0, "t\x00ext", record.vector * 3.0)]
        )
        await index.add_chunks(conn, PROJECT, [])
    async with db.read() as conn:
        text, blob = (
            await conn.execute(sa.select(tables.chunks.c.text, tables.chunks.c.embedding))
        ).one()
    assert text == "text"
    stored = np.frombuffer(blob, dtype="<f4")
    np.testing.assert_allclose(stored, record.vector, atol=1e-6)
    with pytest.raises(sa.exc.IntegrityError):
        async with db.write() as conn:
            await index.add_chunks(
                conn, PROJECT, [ChunkRecord(STORE_A, "f", 0, "again", record.vector)]
            )
    with pytest.raises(ValueError):
        async with db.write() as conn:
            await index.add_chunks(
                conn, PROJECT, [ChunkRecord(STORE_A, "g", 0, "nan", record.vector * np.nan)]
            )


async def test_invalid_arguments(corpus_db: Database, local_embedder: LocalEmbedder) -> None:
    vector = (await local_embedder.embed(["x"]))[0]
    for options in ({"max_results": 0}, {"score_threshold": 1.5}, {"mode": "fuzzy"}):
        with pytest.raises(ValueError):
            await index.search(corpus_db, PROJECT, [STORE_A], "x", vector, **options)
    with pytest.raises(ValueError, match="dimensions"):
        await index.search(corpus_db, PROJECT, [STORE_A], "x", vector[:100], mode="vector")


# --- latency ---------------------------------------------------------------------------------


async def measure_search_latency(
    db: Database, chunks: int = 10_000, dimensions: int = 384, queries: int = 20
) -> dict[str, float]:
    """Milliseconds per search over ``chunks`` random chunks in one store (median of
    ``queries``), per mode, plus the first (cold-cache) vector search and the insert time."""
    rng = np.random.default_rng(0)
    words = [f"w{number}" for number in range(5000)]
    picker = random.Random(0)
    vectors = rng.standard_normal((chunks, dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        ChunkRecord("vs_bench", f"file-{n // 10}", n % 10, " ".join(picker.sample(words, 120)), v)
        for n, v in enumerate(vectors)
    ]
    started = time.perf_counter()
    async with db.write() as conn:
        await index.add_chunks(conn, "proj_bench", records)
    results = {"insert_s": time.perf_counter() - started}
    index.clear_cache()
    query_vectors = rng.standard_normal((queries, dimensions)).astype(np.float32)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    texts = [" ".join(picker.sample(words, 6)) for _ in range(queries)]
    started = time.perf_counter()
    await index.search(db, "proj_bench", ["vs_bench"], texts[0], query_vectors[0], mode="vector")
    results["vector_cold_ms"] = (time.perf_counter() - started) * 1000
    for mode in ("vector", "keyword", "hybrid"):
        timings = []
        for text, vector in zip(texts, query_vectors, strict=True):
            started = time.perf_counter()
            await index.search(db, "proj_bench", ["vs_bench"], text, vector, mode=mode)
            timings.append((time.perf_counter() - started) * 1000)
        results[f"{mode}_ms"] = float(np.median(timings))
    return results


@pytest.mark.skipif(not os.environ.get("RUNSTEP_BENCH_SEARCH"), reason="RUNSTEP_BENCH_SEARCH unset")
async def test_search_latency_10k_chunks(db: Database) -> None:
    results = await measure_search_latency(db)
    print(f"\n{db.engine.dialect.name}: " + ", ".join(f"{k}={v:.1f}" for k, v in results.items()))
