"""Chunks, their embeddings and provenance in chromadb: an embedded PersistentClient in a folder by
default, or a chroma server (`chroma run`, or a chroma deployment) through HttpClient when the store's
location is an http(s):// URL, so that workers on several hosts share one chunk store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tools.data.chunking import Chunk


class ChunkStore:
    """One chroma collection per job. We always pass our own embeddings: chroma's default
    embedding function would try to download a model."""

    def __init__(self, location: str | Path, collection: str) -> None:
        self._client = chroma_client(location)
        self._collection = self._client.get_or_create_collection(
            name=collection, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )

    def clear(self) -> None:
        """Remove every chunk (a re-curation replaces the collection's contents)."""
        existing = self._collection.get(include=[])["ids"]
        if existing:
            self._collection.delete(ids=existing)

    def add(self, chunks: Sequence[Chunk], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None:
        """Insert or replace chunks (idempotent: a resumed job re-adding them changes nothing)."""
        if not chunks:
            return
        self._collection.upsert(
            ids=[c.chunk_id for c in chunks],
            documents=[c.text for c in chunks],
            embeddings=[v.tolist() for v in vectors],
            metadatas=[{**m, "doc_id": c.doc_id, "heading": c.heading, "position": c.position}
                       for c, m in zip(chunks, metadatas, strict=True)],
        )

    def all(self) -> list[tuple[Chunk, dict[str, Any]]]:
        """Every stored chunk with its metadata, in document order."""
        records = self._collection.get(include=["documents", "metadatas"])
        rows = []
        for chunk_id, text, meta in zip(records["ids"], records["documents"], records["metadatas"], strict=True):
            chunk = Chunk(chunk_id, meta["doc_id"], text, meta.get("heading", ""), int(meta["position"]))
            rows.append((chunk, dict(meta)))
        return sorted(rows, key=lambda row: (row[0].doc_id, row[0].position))

    def texts(self, chunk_ids: Sequence[str]) -> dict[str, str]:
        """{chunk_id: text} for the stored chunks among `chunk_ids` (ids not stored are left out)."""
        if not chunk_ids:
            return {}
        found = self._collection.get(ids=list(dict.fromkeys(chunk_ids)), include=["documents"])
        return dict(zip(found["ids"], found["documents"], strict=True))

    def query(self, vector: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """(chunk_id, cosine similarity) of the k nearest chunks."""
        found = self._collection.query(query_embeddings=[vector.tolist()], n_results=k)
        return [(cid, 1.0 - dist) for cid, dist in zip(found["ids"][0], found["distances"][0], strict=True)]

    def count(self) -> int:
        return self._collection.count()


def chroma_client(location: str | Path) -> Any:
    """A chroma client: HttpClient for an http(s):// URL (a chroma server), else a PersistentClient in
    that folder. Telemetry is off either way."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if isinstance(location, str) and location.startswith(("http://", "https://")):
        url = urlsplit(location)
        if not url.hostname:
            raise ValueError(f"chroma server URL {location!r} names no host")
        https = url.scheme == "https"
        return chromadb.HttpClient(host=url.hostname, port=url.port or (443 if https else 8000), ssl=https,
                                   settings=settings)
    Path(location).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(location), settings=settings)


def stored_vectors(location: str | Path, collection: str, ids: Sequence[str]) -> np.ndarray:
    """The embeddings the curator stored in chroma (a folder, or a chroma server's URL) for these chunk
    ids, in the same order."""
    client = chroma_client(location)
    found = client.get_collection(collection, embedding_function=None).get(ids=list(ids), include=["embeddings"])
    by_id = dict(zip(found["ids"], found["embeddings"], strict=True))
    return np.asarray([by_id[i] for i in ids], dtype=np.float32)
