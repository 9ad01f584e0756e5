"""Exact and near-duplicate detection (MinHash over word shingles)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from datasketch import MinHash, MinHashLSH

from tools.text import words


def content_hash(text: str) -> str:
    """Hash of the text's words, so whitespace and case differences still match."""
    return hashlib.sha1(" ".join(words(text)).encode()).hexdigest()


def _minhash(text: str, shingle: int, num_perm: int) -> MinHash:
    tokens = words(text)
    signature = MinHash(num_perm=num_perm, seed=1)
    grams = {" ".join(tokens[i : i + shingle]) for i in range(max(1, len(tokens) - shingle + 1))}
    for gram in grams:
        signature.update(gram.encode())
    return signature


def find_duplicates(
    texts: Sequence[str], threshold: float = 0.8, shingle: int = 5, num_perm: int = 128
) -> dict[int, tuple[int, str]]:
    """Map index -> (index of the earlier text it duplicates, "exact" | "near").

    The first occurrence always survives; later copies point at it."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    seen_hashes: dict[str, int] = {}
    duplicates: dict[int, tuple[int, str]] = {}
    for index, text in enumerate(texts):
        digest = content_hash(text)
        if digest in seen_hashes:
            duplicates[index] = (seen_hashes[digest], "exact")
            continue
        seen_hashes[digest] = index
        signature = _minhash(text, shingle, num_perm)
        matches = lsh.query(signature)
        if matches:
            duplicates[index] = (min(int(m) for m in matches), "near")
            continue
        lsh.insert(str(index), signature)
    return duplicates
