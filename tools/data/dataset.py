"""Train/val/test splits by source document, chat-messages JSONL, and the dataset hash."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tools.data.examples import Example

SPLITS = ("train", "val", "test")


def split_by_document(
    examples: Sequence[Example], seed: int = 0, val_share: float = 0.1, test_share: float = 0.1,
    min_rows: int = 10, max_held_out: float = 0.4,
) -> dict[str, list[Example]]:
    """No document appears in two splits. With three or more documents, validation and test each get at
    least `val_share` / `test_share` of the documents (at least one) and then more documents until they
    hold `min_rows` rows, as long as the two together keep at most `max_held_out` of the rows; with
    fewer documents everything trains and the evaluator has no held-out set."""
    doc_ids = sorted({e.doc_id for e in examples})
    random.Random(seed).shuffle(doc_ids)
    if len(doc_ids) < 3:
        return {"train": list(examples), "val": [], "test": []}
    rows = Counter(e.doc_id for e in examples)
    budget = max_held_out * len(examples)
    assignment: dict[str, str] = {}
    queue = list(doc_ids)
    for split, share in (("test", test_share), ("val", val_share)):
        taken = 0
        while queue and len(queue) > 1 and (
                taken < max(1, math.ceil(share * len(doc_ids))) or
                (sum(rows[d] for d, s in assignment.items() if s == split) < min_rows
                 and sum(rows[d] for d in assignment) + rows[queue[0]] <= budget)):
            assignment[queue.pop(0)] = split
            taken += 1
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for example in examples:
        splits[assignment.get(example.doc_id, "train")].append(example)
    return splits


def to_chat_record(example: Example, system_prompt: str) -> dict:
    """The job format: {"messages": [system, user, assistant], "metadata": {...}}."""
    return {
        "messages": [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": example.question},
            {"role": "assistant", "content": example.answer},
        ],
        "metadata": {
            "source": example.source,
            "chunk_id": example.chunk_id,
            "doc_id": example.doc_id,
            "type": example.type,
            "quality_score": example.quality_score,
            **example.metadata,
        },
    }


def to_alpaca_record(example: Example, system_prompt: str) -> dict:
    """Alpaca format: instruction / input / output (the system prompt as `system`)."""
    return {"instruction": example.question, "input": "", "output": example.answer, "system": system_prompt}


def to_sharegpt_record(example: Example, system_prompt: str) -> dict:
    """ShareGPT format: {"conversations": [{"from": "system"|"human"|"gpt", "value": ...}]}."""
    return {"conversations": [{"from": "system", "value": system_prompt},
                              {"from": "human", "value": example.question},
                              {"from": "gpt", "value": example.answer}]}


EXPORTS = {"alpaca": to_alpaca_record, "sharegpt": to_sharegpt_record}


def write_splits(folder: Path, splits: dict[str, list[Example]], system_prompt: str,
                 documents: Sequence[dict] = ()) -> dict[str, dict[str, Path]]:
    """Every split's QA rows in the job format (<split>.jsonl) and next to it in Alpaca and ShareGPT
    (<split>.alpaca.jsonl, <split>.sharegpt.jsonl); the document rows ({"text": ...} records) of the
    training set in train.documents.jsonl. Returns {format: {split: path}} ("documents": {"train": path})."""
    written: dict[str, dict[str, Path]] = {"chat": {}, **{name: {} for name in EXPORTS}}
    written["documents"] = {"train": folder / "train.documents.jsonl"}
    write_jsonl(written["documents"]["train"], list(documents))
    for split in SPLITS:
        written["chat"][split] = folder / f"{split}.jsonl"
        write_jsonl(written["chat"][split], [to_chat_record(e, system_prompt) for e in splits[split]])
        for name, convert in EXPORTS.items():
            written[name][split] = folder / f"{split}.{name}.jsonl"
            write_jsonl(written[name][split], [convert(e, system_prompt) for e in splits[split]])
    return written


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    """Write atomically: a crash never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    temporary.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dataset_hash(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]
