"""OpenAIEmbedder against a real local HTTP server, and create_embedder's selection."""

from types import SimpleNamespace

import numpy as np
import pytest

from runstep.tools.file_search.embeddings import (
    EmbeddingError,
    LocalEmbedder,
    OpenAIEmbedder,
    create_embedder,
)
from tests.file_search.embedding_server import EmbeddingServer, Failure, expected_unit


def embedder(server: EmbeddingServer, **options: object) -> OpenAIEmbedder:
    options.setdefault("retry_base_seconds", 0.01)
    return OpenAIEmbedder(server.base_url, "test-embed", "sk-test", **options)  # type: ignore[arg-type]


async def test_batches_order_and_normalization(embedding_server: EmbeddingServer) -> None:
    texts = [f"text {i}" for i in range(5)] + [""]
    async with embedder(embedding_server, batch_size=2) as client:
        vectors = await client.embed(texts)
        assert client.name == "test-embed" and client.dimensions == 8
    assert vectors.shape == (6, 8) and vectors.dtype == np.float32
    expected = np.stack([expected_unit(text or " ") for text in texts])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    bodies = [request["body"] for request in embedding_server.requests]
    assert [body["input"] for body in bodies] == [
        ["text 0", "text 1"], ["text 2", "text 3"], ["text 4", " "]
    ]  # fmt: skip
    assert all(body["model"] == "test-embed" for body in bodies)
    assert all(body["encoding_format"] == "float" and "dimensions" not in body for body in bodies)
    assert embedding_server.requests[0]["headers"]["authorization"] == "Bearer sk-test"


async def test_dimensions_requested_or_learnt(embedding_server: EmbeddingServer) -> None:
    async with embedder(embedding_server, dimensions=16) as client:
        assert client.dimensions == 16
        assert (await client.embed(["a"])).shape == (1, 16)
    assert embedding_server.requests[-1]["body"]["dimensions"] == 16
    async with embedder(embedding_server) as client:
        with pytest.raises(EmbeddingError, match="probe_dimensions"):
            _ = client.dimensions
        assert await client.probe_dimensions() == 8
    assert OpenAIEmbedder("http://x/v1", "text-embedding-3-large").dimensions == 3072


async def test_no_api_key_sends_no_authorization(embedding_server: EmbeddingServer) -> None:
    async with OpenAIEmbedder(embedding_server.base_url + "/", "m") as client:
        await client.embed(["a"])
    assert "authorization" not in embedding_server.requests[0]["headers"]


async def test_retries_rate_limits_and_server_errors(embedding_server: EmbeddingServer) -> None:
    embedding_server.fail_next(
        Failure(429, "slow down", {"retry-after": "0"}), Failure(503, "overloaded")
    )
    async with embedder(embedding_server, max_retries=2) as client:
        vectors = await client.embed(["retry me"])
    np.testing.assert_allclose(vectors[0], expected_unit("retry me"), atol=1e-6)
    assert len(embedding_server.requests) == 3


async def test_gives_up_after_max_retries(embedding_server: EmbeddingServer) -> None:
    embedding_server.fail_next(*[Failure(500, "boom")] * 3)
    async with embedder(embedding_server, max_retries=1) as client:
        with pytest.raises(EmbeddingError, match="HTTP 500: boom") as caught:
            await client.embed(["x"])
    assert caught.value.retryable
    assert len(embedding_server.requests) == 2


async def test_client_errors_are_not_retried(embedding_server: EmbeddingServer) -> None:
    embedding_server.fail_next(Failure(400, "model 'test-embed' does not exist"))
    async with embedder(embedding_server) as client:
        with pytest.raises(EmbeddingError, match="HTTP 400: model 'test-embed' does not") as caught:
            await client.embed(["x"])
    assert not caught.value.retryable
    assert len(embedding_server.requests) == 1


async def test_malformed_response(embedding_server: EmbeddingServer) -> None:
    embedding_server.extra_vectors = 1
    async with embedder(embedding_server) as client:
        with pytest.raises(EmbeddingError, match="2 vectors for 1 inputs"):
            await client.embed(["x"])


async def test_dimension_mismatch(embedding_server: EmbeddingServer) -> None:
    async with embedder(embedding_server) as client:
        await client.embed(["a"])  # learns 8
        client._requested_dimensions = 4  # the server now answers with 4
        with pytest.raises(EmbeddingError, match="returned 4-dimensional vectors; expected 8"):
            await client.embed(["b"])


async def test_connection_refused(embedding_server: EmbeddingServer) -> None:
    async with OpenAIEmbedder("http://127.0.0.1:9/v1", "m", max_retries=0) as client:
        with pytest.raises(EmbeddingError, match=r"127\.0\.0\.1:9/v1/embeddings failed") as caught:
            await client.embed(["x"])
    assert caught.value.retryable


def test_create_embedder_from_environment() -> None:
    client = create_embedder(
        {
            "RUNSTEP_EMBEDDINGS_BASE_URL": "http://127.0.0.1:1/v1",
            "RUNSTEP_EMBEDDINGS_MODEL": "nomic-embed-text",
            "RUNSTEP_EMBEDDINGS_API_KEY": "sk-x",
            "RUNSTEP_EMBEDDINGS_DIMENSIONS": "768",
        }
    )
    assert isinstance(client, OpenAIEmbedder)
    assert (client.url, client.name, client.dimensions) == (
        "http://127.0.0.1:1/v1/embeddings", "nomic-embed-text", 768
    )  # fmt: skip
    default = create_embedder({"RUNSTEP_EMBEDDINGS_BASE_URL": "https://api.example/v1"})
    assert isinstance(default, OpenAIEmbedder) and default.name == "text-embedding-3-small"
    assert isinstance(create_embedder({}), LocalEmbedder)
    assert isinstance(
        create_embedder({"RUNSTEP_EMBEDDINGS_MODEL": "all-MiniLM-L6-v2"}), LocalEmbedder
    )
    settings = SimpleNamespace(embeddings_base_url="http://h/v1", embeddings_model="m")
    assert isinstance(create_embedder(settings), OpenAIEmbedder)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RUNSTEP_EMBEDDINGS_MODEL": "text-embedding-3-small"},
            "needs RUNSTEP_EMBEDDINGS_BASE_URL",
        ),
        ({"RUNSTEP_EMBEDDINGS_DIMENSIONS": "lots"}, "must be an integer"),
        ({"RUNSTEP_EMBEDDINGS_DIMENSIONS": "768"}, "384 dimensions"),
    ],
)
def test_create_embedder_rejects(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_embedder(env)
