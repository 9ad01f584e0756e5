"""Curator embeddings: `tools.llm.embeddings.Embedder.embed` against raw sentence-transformers `encode` on the same
model and texts, side by side in one run (alternating, best of `--repeats`), printed as JSON lines.

The texts are the demo corpus's chunks, repeated to `--texts` (the curator embeds every chunk of a job in
one call). A line per way (texts/s, tokens/s), then a comparison line with the ratio; the machine line
carries the load average, because on a shared machine it explains most of the spread.

Run: `.venv/bin/python bench/bench_embeddings.py [--texts 512] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tools.hardware import machine_report
from tools.llm.embeddings import Embedder

REPO = Path(__file__).resolve().parents[1]


def corpus_chunks(count: int) -> list[str]:
    from tools.data.chunking import chunk_document
    from tools.sources.documents import Document

    chunks = []
    for path in sorted((REPO / "tools" / "eval_sets" / "demo_corpus").glob("*.md")):
        document = Document(source="local", native_id=path.name, title=path.stem, text=path.read_text(),
                            uri=str(path))
        chunks += [chunk.text for chunk in chunk_document(document)]
    return [chunks[i % len(chunks)] for i in range(count)]


def best_rate(embed, texts: list[str], repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        embed(texts)
        seconds.append(time.perf_counter() - started)
    return len(texts) / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(machine_report()), flush=True)
    texts = corpus_chunks(args.texts)
    embedder = Embedder()
    raw = embedder._model  # the same SentenceTransformer, called the way its documentation shows
    tokens = sum(len(raw.tokenizer(t, truncation=True, max_length=raw.max_seq_length)["input_ids"]) for t in texts)
    embedder.embed(texts[:32])  # warm-up
    ways = {"ftagent Embedder.embed": embedder.embed,
            "sentence-transformers encode": lambda batch: raw.encode(batch, normalize_embeddings=True)}
    rates = {name: best_rate(embed, texts, args.repeats) for name, embed in ways.items()}
    for name, rate in rates.items():
        print(json.dumps({"bench": "embeddings", "way": name, "texts": len(texts), "texts_per_s": round(rate, 1),
                          "tokens_per_s": round(rate * tokens / len(texts), 1),
                          "load_average_1m": round(os.getloadavg()[0], 2)}), flush=True)
    ours, theirs = rates.values()
    print(json.dumps({"event": "comparison", "bench": "embeddings", "vs": "sentence-transformers encode",
                      "texts_per_s_ratio": round(ours / theirs, 2)}), flush=True)


if __name__ == "__main__":
    main()
