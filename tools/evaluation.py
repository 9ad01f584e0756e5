"""Tuned vs base on held-out examples and general text, with one model in memory.

The adapter is loaded on top of the base model; base numbers come from the same weights with
the adapter disabled, so the comparison cannot be skewed by loading differences."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from tools.metrics import exact_match, rouge_l, token_f1
from tools.training import encode_chat


@dataclass
class ModelScores:
    answer_nll: float | None
    token_f1: float | None
    rouge_l: float | None
    exact_match: float | None
    general_perplexity: float | None
    examples: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    base: ModelScores
    tuned: ModelScores
    per_example: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "tuned": self.tuned.to_dict(), "per_example": self.per_example}


def load_for_inference(base_model_path: str, adapter_dir: str | None = None, threads: int | None = None):
    """(model, tokenizer) in eval mode; with an adapter, a PeftModel whose adapter can be disabled."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir or base_model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    return model, tokenizer


def answer_nll(model, tokenizer, records: Sequence[dict], max_seq_len: int = 512, batch_size: int = 8) -> float:
    """Mean negative log-likelihood per answer token of the reference answers given their prompts."""
    import torch

    encoded = [encode_chat(tokenizer, r["messages"], max_seq_len)[0] for r in records]
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = encoded[start : start + batch_size]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, example in enumerate(batch):
                n = len(example.input_ids)
                ids[row, :n], labels[row, :n], mask[row, :n] = (
                    torch.tensor(example.input_ids), torch.tensor(example.labels), 1)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            targets = labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(losses)
            count += int((targets != -100).sum())
    return total / max(1, count)


def generate_answers(model, tokenizer, records: Sequence[dict], max_new_tokens: int = 64,
                     batch_size: int = 8) -> list[str]:
    """Greedy answers to each record's prompt (its messages without the assistant's reply)."""
    import torch

    prompts = [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
               for r in records]
    answers: list[str] = []
    tokenizer.padding_side = "left"
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            answers += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    tokenizer.padding_side = "right"
    return answers


def perplexity(model, tokenizer, texts: Sequence[str], max_length: int = 256) -> float:
    """Token-weighted perplexity of plain texts."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)["input_ids"]
            if ids.shape[1] < 2:
                continue
            loss = model(input_ids=ids, labels=ids).loss
            total += float(loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return math.exp(total / max(1, count))


def score_model(model, tokenizer, records: Sequence[dict], general_texts: Sequence[str],
                max_new_tokens: int, generate_limit: int) -> tuple[ModelScores, list[str]]:
    nll = answer_nll(model, tokenizer, records) if records else None
    generated = generate_answers(model, tokenizer, records[:generate_limit], max_new_tokens) if records else []
    references = [r["messages"][-1]["content"] for r in records[:generate_limit]]
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None
    scores = ModelScores(
        answer_nll=nll,
        token_f1=mean([token_f1(g, r) for g, r in zip(generated, references, strict=True)]),
        rouge_l=mean([rouge_l(g, r) for g, r in zip(generated, references, strict=True)]),
        exact_match=mean([exact_match(g, r) for g, r in zip(generated, references, strict=True)]),
        general_perplexity=perplexity(model, tokenizer, general_texts) if general_texts else None,
        examples=len(records),
    )
    return scores, generated


def compare_with_base(base_model_path: str, adapter_dir: str, records: Sequence[dict],
                      general_texts: Sequence[str], max_new_tokens: int = 64,
                      generate_limit: int = 40, threads: int | None = None) -> Comparison:
    """Score the tuned model, then the same weights with the adapter disabled (the base)."""
    model, tokenizer = load_for_inference(base_model_path, adapter_dir, threads)
    tuned, tuned_answers = score_model(model, tokenizer, records, general_texts, max_new_tokens, generate_limit)
    disabled = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with disabled:
        base, base_answers = score_model(model, tokenizer, records, general_texts, max_new_tokens, generate_limit)
    per_example = [
        {"question": r["messages"][-2]["content"], "reference": r["messages"][-1]["content"],
         "base_answer": b, "tuned_answer": t,
         "base_rouge_l": round(rouge_l(b, r["messages"][-1]["content"]), 4),
         "tuned_rouge_l": round(rouge_l(t, r["messages"][-1]["content"]), 4)}
        for r, b, t in zip(records, base_answers, tuned_answers, strict=False)
    ]
    return Comparison(base=base, tuned=tuned, per_example=per_example)
