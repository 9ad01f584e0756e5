"""Training rows as token ids and labels: a chat row is supervised on the assistant's reply only, a
document row on every token; and a micro-batch of them as padded tensors (`collate`). Which examples
go in which batch is tools/training/batches.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tools.training.config import TrainingError

IGNORED = -100  # the label of a token the loss skips (a prompt token, padding)
# A micro-batch is padded to a multiple of this many positions. Each new tensor shape makes oneDNN build (and
# cache) new kernels for every layer; with one width per example length a job's trainer kept growing (4.1 GB
# at step 51 of the demo job) and spent time building them. SmolLM2-135M, bf16, the demo job's data on a 2-core
# avx512_bf16 EPYC, 40 steps: unpadded 210.6 s, RSS 3227 MB at step 40, validation loss 2.8765; padded to 32
# 200.6 s, 2380 MB, 2.8754 (20 steps: 114.0 -> 103.7 s, 2711 -> 2122 MB).
PAD_MULTIPLE = 32


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]


def encode_chat(
    tokenizer, messages: Sequence[dict], max_seq_len: int
) -> tuple[EncodedExample, bool]:
    """Token ids of the whole conversation and labels that keep only the assistant's reply
    (prompt tokens are -100). Returns (example, truncated)."""
    prompt_text = tokenizer.apply_chat_template(
        list(messages[:-1]), tokenize=False, add_generation_prompt=True
    )
    full_text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full_text.startswith(prompt_text):
        raise TrainingError(
            "the chat template does not render the prompt as a prefix of the conversation"
        )
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
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
    windows = [ids[start : start + max_seq_len] for start in range(0, len(ids), max_seq_len)]
    return [EncodedExample(window, list(window)) for window in windows if len(window) >= 2]


def encode_record(tokenizer, record: dict, max_seq_len: int) -> tuple[list[EncodedExample], bool]:
    """A chat row (loss on the assistant's reply) or a document row {"text": ...} (loss on every
    token). Returns (encoded rows, truncated)."""
    if "messages" in record:
        example, truncated = encode_chat(tokenizer, record["messages"], max_seq_len)
        return [example], truncated
    if isinstance(record.get("text"), str):
        return encode_text(tokenizer, record["text"], max_seq_len), False
    raise TrainingError(
        f"a training row is neither a chat row ('messages') nor a document row ('text'): "
        f"keys {sorted(record)[:6]}"
    )


def encode_records(
    tokenizer, records: Sequence[dict], max_seq_len: int
) -> tuple[list[EncodedExample], int]:
    """The rows that have at least one supervised token, and how many rows were truncated."""
    encoded: list[EncodedExample] = []
    truncated = 0
    for record in records:
        examples, was_truncated = encode_record(tokenizer, record, max_seq_len)
        truncated += was_truncated
        encoded += [e for e in examples if any(label != IGNORED for label in e.labels)]
    return encoded, truncated


def padded_width(length: int) -> int:
    """The positions a micro-batch whose longest example has `length` tokens is padded to."""
    return -(-length // PAD_MULTIPLE) * PAD_MULTIPLE


def collate(examples: Sequence[EncodedExample], pad_token_id: int, device):
    """(input ids, attention mask, labels) as right-padded tensors on `device`, `padded_width` wide."""
    import torch

    width = padded_width(max(len(e.input_ids) for e in examples))
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORED, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return ids.to(device), mask.to(device), labels.to(device)
