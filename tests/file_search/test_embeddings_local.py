"""LocalEmbedder with the real bundled all-MiniLM-L6-v2 (loaded once per session)."""

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runstep.tools.file_search import embeddings
from runstep.tools.file_search.embeddings import (
    LOCAL_DIMENSIONS,
    LOCAL_MODEL_NAME,
    Embedder,
    LocalEmbedder,
)

COOKING = (
    "Knead the dough for ten minutes, let it rise in a warm kitchen until doubled, then shape "
    "the loaves, score the tops and bake them in a hot oven with a tray of water for steam. "
)
ASTRONOMY = (
    "Astronomers pointed the telescope at a distant star and measured how its light dimmed as "
    "an orbiting exoplanet passed in front of it, revealing the planet's size and orbit. "
)


async def test_dimensions_and_normalized(local_embedder: LocalEmbedder) -> None:
    assert isinstance(local_embedder, Embedder)
    assert local_embedder.name == LOCAL_MODEL_NAME
    assert local_embedder.dimensions == LOCAL_DIMENSIONS == 384
    vectors = await local_embedder.embed(["first text", "second text", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


async def test_paraphrase_is_closer_than_unrelated(local_embedder: LocalEmbedder) -> None:
    query, paraphrase, unrelated = await local_embedder.embed(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten login password?",
            "The recipe needs two cups of flour and a pinch of salt.",
        ]
    )
    assert query @ paraphrase > 0.5
    assert query @ paraphrase > query @ unrelated + 0.3


async def test_empty_batch(local_embedder: LocalEmbedder) -> None:
    assert (await local_embedder.embed([])).shape == (0, 384)


async def test_long_texts_are_averaged_over_windows(local_embedder: LocalEmbedder) -> None:
    long_text = COOKING * 6 + ASTRONOMY * 6  # ~550 word pieces: the astronomy comes after 256
    truncating = LocalEmbedder(long_texts="truncate")
    query = (await local_embedder.embed(["exoplanet transiting a star seen by a telescope"]))[0]
    [mean] = await local_embedder.embed([long_text])
    [first_window] = await truncating.embed([long_text])
    assert query @ mean > query @ first_window + 0.1
    np.testing.assert_allclose(np.linalg.norm(mean), 1.0, atol=1e-5)
    # short texts are the same either way
    short = ["a short sentence", "another one"]
    np.testing.assert_allclose(
        await local_embedder.embed(short), await truncating.embed(short), atol=1e-6
    )


async def test_order_and_batches_and_sync_path(local_embedder: LocalEmbedder) -> None:
    texts = [f"sentence number {i} about {word}" for i, word in enumerate("abcdefghij")]
    texts.append(COOKING * 4)
    small_batches = LocalEmbedder(batch_size=3)
    together = await local_embedder.embed(texts)
    np.testing.assert_allclose(await small_batches.embed(texts), together, atol=1e-5)
    np.testing.assert_allclose(local_embedder.embed_sync(texts), together, atol=1e-5)
    singles = np.concatenate([await local_embedder.embed([text]) for text in texts[:3]])
    np.testing.assert_allclose(singles, together[:3], atol=1e-5)


async def test_event_loop_stays_free(local_embedder: LocalEmbedder) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    await local_embedder.embed([COOKING * 4] * 24)
    elapsed = time.monotonic() - started
    stop.set()
    await task
    # Had the model run on the event loop, the ticker could not have run before it finished.
    assert ticks >= min(3, int(elapsed / 0.01) // 3)


def test_model_loaded_once_per_process(local_embedder: LocalEmbedder) -> None:
    LocalEmbedder(batch_size=3).embed_sync(["one more instance"])
    assert list(embeddings._MODELS) == [(str(local_embedder.model_path), "cpu")]


OFFLINE_SCRIPT = """
import asyncio
from runstep.tools.file_search.embeddings import LocalEmbedder
vectors = asyncio.run(LocalEmbedder().embed(["no network here"]))
print(vectors.shape)
"""


def test_loads_without_network(tmp_path: Path) -> None:
    """In a network namespace with no interfaces up, and an empty Hugging Face cache."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], check=False).returncode:
        pytest.skip("cannot create a network namespace here (needs root and unshare)")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS_"))
    }
    env.update(HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf"))
    result = subprocess.run(
        [unshare, "-n", sys.executable, "-W", "error", "-c", OFFLINE_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "(1, 384)"
    assert not (tmp_path / "hf").exists()
