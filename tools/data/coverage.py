"""Which chunks the generator draws, in which order: spread over topics (clusters of the chunk
embeddings) and over documents, rather than the top relevance scores only."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def spherical_kmeans(vectors: np.ndarray, k: int, seed: int = 0, iterations: int = 15) -> np.ndarray:
    """Cluster labels of unit vectors by cosine k-means (k-means++ style seeding, deterministic)."""
    n = len(vectors)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = [vectors[rng.integers(n)]]
    for _ in range(1, k):
        distance = 1.0 - np.max(vectors @ np.stack(centres).T, axis=1)
        weights = np.clip(distance, 0, None) + 1e-9
        centres.append(vectors[rng.choice(n, p=weights / weights.sum())])
    centre_matrix = np.stack(centres)
    labels = np.zeros(n, dtype=int)
    for _ in range(iterations):
        labels = np.argmax(vectors @ centre_matrix.T, axis=1)
        for cluster in range(k):
            members = vectors[labels == cluster]
            if len(members):
                mean = members.mean(axis=0)
                centre_matrix[cluster] = mean / (np.linalg.norm(mean) or 1.0)
    return labels


def _interleave_documents(indices: list[int], doc_ids: Sequence[str], relevance: Sequence[float]) -> list[int]:
    """Round-robin over the documents of one cluster, each document's chunks best first."""
    per_doc: dict[str, list[int]] = defaultdict(list)
    for index in sorted(indices, key=lambda i: -relevance[i]):
        per_doc[doc_ids[index]].append(index)
    queues = list(per_doc.values())
    return [queue[r] for r in range(max(map(len, queues), default=0)) for queue in queues if r < len(queue)]


def coverage_order(doc_ids: Sequence[str], vectors: np.ndarray, relevance: Sequence[float],
                   n_clusters: int | None = None, seed: int = 0) -> list[int]:
    """All chunk indices, ordered for coverage: round-robin over subtopic clusters (largest first),
    inside each cluster round-robin over documents, best relevance first. Taking any prefix of the
    order gives a sample spread across subtopics and documents."""
    if len(doc_ids) == 0:
        return []
    k = n_clusters or max(1, round(math.sqrt(len(doc_ids) / 2)))
    labels = spherical_kmeans(vectors, k, seed)
    clusters = [_interleave_documents([i for i in range(len(labels)) if labels[i] == c], doc_ids, relevance)
                for c in sorted(set(labels.tolist()), key=lambda c: -int(np.sum(labels == c)))]
    return [cluster[r] for r in range(max(map(len, clusters))) for cluster in clusters if r < len(cluster)]
