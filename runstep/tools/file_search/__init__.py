"""Ingestion building blocks for the ``file_search`` tool.

- `extract`: bytes on disk -> plain text (`extract_text`), raising `UnsupportedFile` /
  `InvalidFile`, whose ``code`` is the vector-store file ``last_error.code``.
- `chunking`: a download-free token estimate and `chunk_text` (``auto`` = 800 / 400 overlap).
- `embeddings`: the `Embedder` protocol, `LocalEmbedder` (bundled all-MiniLM-L6-v2, offline),
  `OpenAIEmbedder` (any OpenAI-compatible ``/embeddings``) and `create_embedder`.

Importing this package is cheap: torch and sentence-transformers load only when a
`LocalEmbedder` embeds for the first time.
"""
