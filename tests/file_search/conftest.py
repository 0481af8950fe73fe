"""Fixtures for file_search tests: the local model (loaded once) and an embeddings server."""

from collections.abc import Iterator

import pytest

from runstep.tools.file_search.embeddings import LocalEmbedder
from tests.file_search.embedding_server import EmbeddingServer


@pytest.fixture(scope="session")
async def local_embedder() -> LocalEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once per test session."""
    embedder = LocalEmbedder()
    await embedder.load()
    return embedder


@pytest.fixture(scope="package")
def running_embedding_server() -> Iterator[EmbeddingServer]:
    server = EmbeddingServer().start()
    yield server
    server.stop()


@pytest.fixture
def embedding_server(running_embedding_server: EmbeddingServer) -> EmbeddingServer:
    """The embeddings server with no queued failures and an empty request log."""
    running_embedding_server.reset()
    return running_embedding_server
