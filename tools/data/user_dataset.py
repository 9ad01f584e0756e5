"""A dataset the user brings instead of documents: chat-messages, Alpaca or ShareGPT JSONL, a folder of
<split>.jsonl files, or a folder saved by `datasets` (`save_to_disk`). Every row becomes a chat record
({"messages": [...]}) that ends with the assistant turn the trainer learns; a row in no known format is
refused with its line (or row) number and what was expected, before any work starts.

Only the last assistant turn of a multi-turn conversation is trained and evaluated (the trainer's recipe
masks the prompt, which holds the earlier turns)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "validation": "val", "valid": "val",
                 "dev": "val", "eval": "val", "test": "test", "testing": "test"}
EXPECTED = ('one JSON object per line in one of: chat {"messages": [{"role", "content"}, ...]} ending with '
            'an assistant message; Alpaca {"instruction", "input"?, "output", "system"?}; ShareGPT '
            '{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]} ending with a gpt turn')
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "bot": "assistant", "model": "assistant"}
CHAT_ROLES = frozenset({"system", "user", "assistant"})


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message names the file, the row and what is wrong."""


@dataclass
class UserDataset:
    source: str  # the path as resolved
    format: str  # "chat", "alpaca", "sharegpt" (the rows' format; mixed files say "mixed")
    splits: dict[str, list[dict[str, Any]]]  # "train"/"val"/"test" -> chat records
    had_splits: bool  # the source came split (else split here)
    formats: dict[str, int] = field(default_factory=dict)  # rows per format

    @property
    def rows(self) -> int:
        return sum(len(v) for v in self.splits.values())


# -- one row --------------------------------------------------------------------------------------

def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def chat_from_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list')
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES or not _text(message.get("content")):
            raise ValueError(f'message {number} needs a "role" (system, user or assistant) and a non-empty '
                             '"content" string')
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def chat_from_alpaca(row: dict[str, Any]) -> list[dict[str, str]]:
    if not _text(row.get("instruction")) or not _text(row.get("output")):
        raise ValueError('Alpaca rows need non-empty "instruction" and "output" strings')
    prompt = row["instruction"] + (f"\n\n{row['input']}" if _text(row.get("input")) else "")
    system = [{"role": "system", "content": row["system"]}] if _text(row.get("system")) else []
    return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]


def chat_from_sharegpt(row: dict[str, Any]) -> list[dict[str, str]]:
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise ValueError('"conversations" must be a non-empty list')
    messages = []
    for number, turn in enumerate(turns, start=1):
        role = SHAREGPT_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
        if role is None or not _text(turn.get("value")):
            raise ValueError(f'turn {number} needs "from" (human, gpt or system) and a non-empty "value"')
        messages.append({"role": role, "content": turn["value"]})
    return messages


def to_chat_record(row: Any) -> tuple[dict[str, Any], str]:
    """(chat record, format name) for one row; ValueError says what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError(f"a {type(row).__name__}, not a JSON object")  # noqa: TRY004 - a bad row
    if "messages" in row:
        fmt, messages = "chat", chat_from_messages(row)
    elif "conversations" in row:
        fmt, messages = "sharegpt", chat_from_sharegpt(row)
    elif "instruction" in row or "output" in row:
        fmt, messages = "alpaca", chat_from_alpaca(row)
    else:
        raise ValueError(f"keys {sorted(row)[:6]} match no known format")
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer (the turn the model learns)")
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("no user message: the model needs a question to answer")
    metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    return {"messages": messages, "metadata": {**metadata, "format": fmt}}, fmt


# -- files and folders ----------------------------------------------------------------------------

def _records(rows: Iterable[tuple[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Chat records from (where, row) pairs; DatasetError at the first bad row."""
    records, formats = [], {}
    for where, row in rows:
        try:
            record, fmt = to_chat_record(row)
        except ValueError as error:
            raise DatasetError(f"{where}: {error}; expected {EXPECTED}") from error
        records.append(record)
        formats[fmt] = formats.get(fmt, 0) + 1
    return records, formats


def _jsonl_rows(path: Path) -> Iterable[tuple[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: not JSON ({error.msg}); expected {EXPECTED}") from error


def _saved_by_datasets(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _read_saved_dataset(folder: Path) -> dict[str, Iterable[tuple[str, Any]]]:
    """{split name as saved: rows} from a `save_to_disk` folder (a DatasetDict or a single Dataset)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    loaded = load_from_disk(str(folder))
    parts = dict(loaded) if isinstance(loaded, DatasetDict) else {"train": loaded}
    return {name: ((f"{folder} [{name}] row {i + 1}", row) for i, row in enumerate(part))
            for name, part in parts.items() if isinstance(part, Dataset)}


def _read_split_files(folder: Path) -> dict[str, Iterable[tuple[str, Any]]]:
    """{split: rows} from <split>.jsonl files (train.jsonl, validation.jsonl, …; format exports such as
    train.alpaca.jsonl are ignored: they repeat train.jsonl)."""
    files = {path.stem: path for path in sorted(folder.glob("*.jsonl")) if "." not in path.stem}
    if not files:
        raise DatasetError(f"{folder}: no .jsonl files and not a folder saved by datasets.save_to_disk")
    return {stem: _jsonl_rows(path) for stem, path in files.items()}


def _named_splits(parts: dict[str, Iterable[tuple[str, Any]]], where: Path) -> dict[str, Iterable]:
    """Split names mapped to train/val/test; an unknown or repeated name is refused."""
    if len(parts) == 1:
        return {"train": next(iter(parts.values()))}
    named: dict[str, Iterable] = {}
    for name, rows in parts.items():
        split = SPLIT_ALIASES.get(name.lower())
        if split is None or split in named:
            raise DatasetError(f"{where}: split {name!r} is not one of train, validation (val, dev) or test"
                               + (" or names a split twice" if split else ""))
        named[split] = rows
    if "train" not in named:
        raise DatasetError(f"{where}: splits {sorted(parts)} have no train split")
    return named


def read_user_dataset(path: Path | str, seed: int = 0) -> UserDataset:
    """The dataset at `path`, validated and split (train/val/test; split here when it came unsplit).
    DatasetError: missing path, a bad row (named with its line or row number), fewer than two rows."""
    source = Path(path).expanduser()
    if not source.exists():
        raise DatasetError(f"the dataset {path} does not exist")
    if source.is_file():
        parts: dict[str, Iterable] = {"train": _jsonl_rows(source)}
    elif _saved_by_datasets(source):
        parts = _named_splits(_read_saved_dataset(source), source)
    else:
        parts = _named_splits(_read_split_files(source), source)
    splits, formats = {}, {}
    for split, rows in parts.items():
        splits[split], counts = _records(rows)
        formats = {k: formats.get(k, 0) + counts.get(k, 0) for k in {*formats, *counts}}
    had_splits = len(splits) > 1
    total = sum(len(v) for v in splits.values())
    if total == 0:
        raise DatasetError(f"the dataset {path} is empty: no rows to train on")
    if total == 1:
        raise DatasetError(f"the dataset {path} has one row: at least two are needed (one to train on, "
                           "and more to evaluate on held-out rows)")
    if not had_splits:
        splits = split_rows(splits["train"], seed)
    splits = {name: splits.get(name, []) for name in ("train", "val", "test")}
    fmt = next(iter(formats)) if len(formats) == 1 else "mixed"
    return UserDataset(str(source.resolve()), fmt, splits, had_splits, formats)


def split_rows(records: Sequence[dict[str, Any]], seed: int = 0, val_share: float = 0.1,
               test_share: float = 0.15) -> dict[str, list[dict[str, Any]]]:
    """A seeded random split by row; with three or more rows val and test get at least one each, with
    fewer everything trains (as for documents)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(test_share * n)) if n >= 3 else 0
    n_val = max(1, round(val_share * n)) if n >= 3 else 0
    bounds = {"test": (0, n_test), "val": (n_test, n_test + n_val), "train": (n_test + n_val, n)}
    # each split keeps the file's order
    return {name: [records[i] for i in sorted(order[lo:hi])] for name, (lo, hi) in bounds.items()}


def with_system_prompt(record: dict[str, Any], system_prompt: str) -> dict[str, Any]:
    """The record with the job's system prompt first when it has none of its own (the prompt the model is
    asked with later by `ftagent ask` and the server)."""
    if record["messages"][0]["role"] == "system":
        return record
    return {**record, "messages": [{"role": "system", "content": system_prompt}, *record["messages"]]}
