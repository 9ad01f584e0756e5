"""Training rows as token ids and labels, and their batches: a chat row is supervised on the
assistant's reply only, a document row on every token; an epoch's optimizer steps group examples of
similar length (little padding), and a step's examples are split into micro-batches that fit."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tools.training.config import TrainingError

IGNORED = -100  # the label of a token the loss skips (a prompt token, padding)


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]


def encode_chat(tokenizer, messages: Sequence[dict], max_seq_len: int) -> tuple[EncodedExample, bool]:
    """Token ids of the whole conversation and labels that keep only the assistant's reply
    (prompt tokens are -100). Returns (example, truncated)."""
    prompt_text = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False,
                                                add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full_text.startswith(prompt_text):
        raise TrainingError("the chat template does not render the prompt as a prefix of the conversation")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    input_ids = prompt_ids + reply_ids
    labels = [IGNORED] * len(prompt_ids) + reply_ids
    truncated = len(input_ids) > max_seq_len
    return EncodedExample(input_ids[:max_seq_len], labels[:max_seq_len]), truncated


def encode_text(tokenizer, text: str, max_seq_len: int) -> list[EncodedExample]:
    """A document row: its tokens (with the end-of-sequence token) and labels on every token, in
    windows of at most `max_seq_len` (a long passage is split, never cut off)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    windows = [ids[start:start + max_seq_len] for start in range(0, len(ids), max_seq_len)]
    return [EncodedExample(window, list(window)) for window in windows if len(window) >= 2]


def encode_record(tokenizer, record: dict, max_seq_len: int) -> tuple[list[EncodedExample], bool]:
    """A chat row (loss on the assistant's reply) or a document row {"text": ...} (loss on every
    token). Returns (encoded rows, truncated)."""
    if "messages" in record:
        example, truncated = encode_chat(tokenizer, record["messages"], max_seq_len)
        return [example], truncated
    if isinstance(record.get("text"), str):
        return encode_text(tokenizer, record["text"], max_seq_len), False
    raise TrainingError(f"a training row is neither a chat row ('messages') nor a document row ('text'): "
                        f"keys {sorted(record)[:6]}")


def encode_records(tokenizer, records: Sequence[dict], max_seq_len: int) -> tuple[list[EncodedExample], int]:
    """The rows that have at least one supervised token, and how many rows were truncated."""
    encoded: list[EncodedExample] = []
    truncated = 0
    for record in records:
        examples, was_truncated = encode_record(tokenizer, record, max_seq_len)
        truncated += was_truncated
        encoded += [e for e in examples if any(label != IGNORED for label in e.labels)]
    return encoded, truncated


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, sort within windows of 16 batches by length (little padding), shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def micro_batches(examples: Sequence[EncodedExample], micro_batch: int,
                  micro_tokens: int | None) -> list[list[EncodedExample]]:
    """One step's examples sorted by length and split into micro-batches (little padding each): of at
    most `micro_tokens` padded tokens each when the memory plan packs by tokens, else `micro_batch`
    examples."""
    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    if not micro_tokens:
        return [ordered[k : k + micro_batch] for k in range(0, len(ordered), micro_batch)]
    batches: list[list[EncodedExample]] = [[]]
    for example in ordered:  # ascending length: the newest example sets the padded width
        if batches[-1] and (len(batches[-1]) + 1) * len(example.input_ids) > micro_tokens:
            batches.append([])
        batches[-1].append(example)
    return batches


def collate(examples: Sequence[EncodedExample], pad_token_id: int, device):
    """(input ids, attention mask, labels) as right-padded tensors on `device`."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORED, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return ids.to(device), mask.to(device), labels.to(device)
