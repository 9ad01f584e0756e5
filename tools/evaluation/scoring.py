"""Tuned vs base on held-out examples, general text and general questions, with one model in memory.

The tuned model is the adapter merged into a copy of the base weights (no LoRA layers to run per
generated token); the base numbers come from the same files loaded in the same dtype with the same
tokenizer, so the comparison cannot be skewed by loading differences. Answers are generated in
left-padded batches, so the weights are bf16 on a GPU with bf16 and on a CPU with bf16 matrix units (AMX),
fp32 on other CPUs (`inference_dtype` says why); under "auto" the teacher-forced scores (answer NLL,
perplexity) of fp32 weights run in bf16 autocast where the CPU has native bf16 (`scoring_precision`).

Also here: reading question/answer sets (``{"question","answer"}`` lines or the job's chat format), the
general-capability sets in tools/eval_sets/general, and mixing general examples into a training split (replay).
The general QA set is split in two so replay never trains on the questions the evaluator asks: the first
`GENERAL_QA_EVAL` lines are for evaluation, the rest for replay."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.evaluation.metrics import (
    DEFAULT_MAX_ANSWER_WORDS,
    exact_match,
    format_compliance,
    format_problems,
    rouge_l,
    strip_template_tokens,
    token_f1,
)
from tools.models.decoding import greedy_decode, plain_argmax
from tools.models.loading import load_for_inference, scoring_precision
from tools.package_data import GENERAL_SETS_DIR
from tools.training.encoding import encode_chat

Progress = Callable[[int, int], None]  # (done, total), e.g. answers generated

GENERAL_QA_EVAL = 10  # general_qa.jsonl lines reserved for evaluation; later lines may be replayed in training


class QASetError(ValueError):
    """A question/answer set that cannot be read; the message names the file and line."""


@dataclass
class ModelScores:
    """One model's numbers. Generation metrics cover the first `generated` examples."""

    answer_nll: float | None
    token_f1: float | None
    rouge_l: float | None
    exact_match: float | None
    general_perplexity: float | None
    examples: int
    format_compliance: float | None = None
    general_qa_f1: float | None = None
    general_qa_rouge_l: float | None = None
    generated: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    """Tuned vs base; `tuned` is None when there was no adapter (one model scored alone)."""

    base: ModelScores
    tuned: ModelScores | None
    per_example: list[dict] = field(default_factory=list)
    general_per_example: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "tuned": self.tuned.to_dict() if self.tuned else None,
                "per_example": self.per_example, "general_per_example": self.general_per_example}


# Answers decoded at a time. Decoding a token reads every weight once whatever the rows, so on a CPU more
# rows cost little more per step: SmolLM2-135M, fp32, 2-core avx512_bf16 EPYC, the demo job's 40 test and
# 8 general questions (64 new tokens): 37.0 s in batches of 8, 30.8 of 16, 25.4 of 24, 21.0 of 48, the same
# answers. `answer_rows` lowers it where the KV cache of that many rows would not fit its budget.
ANSWER_BATCH_ROWS = 48
KV_CACHE_BUDGET_BYTES = 1 << 30


@dataclass(frozen=True)
class EvalPlan:
    """How much generation an evaluation does (generation dominates its cost on CPU)."""

    max_new_tokens: int = 64
    generate_limit: int = 40
    max_answer_words: int = DEFAULT_MAX_ANSWER_WORDS
    batch_size: int = ANSWER_BATCH_ROWS
    precision: str = "auto"  # the comparison's; "auto" scores NLL and perplexity as `scoring_precision` says


# -- question/answer sets ------------------------------------------------------------------------


def qa_record(row: dict[str, Any], system_prompt: str, where: str = "record") -> dict[str, Any]:
    """A chat record from `{"question","answer"}` (the system prompt is added) or `{"messages": [...]}`
    whose last message is the assistant's reference answer. A source passage (`"passage"` or `"context"`
    beside the question, or `metadata.passage`) is kept as metadata.passage for the LLM judge."""
    if isinstance(row, dict) and isinstance(row.get("messages"), list):
        messages = row["messages"]
        if len(messages) < 2 or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
            raise QASetError(f"{where}: 'messages' needs at least a user and an assistant message with role/content")
        if messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
            raise QASetError(f"{where}: the last two messages must be user then assistant (the reference answer)")
        return {"messages": messages} | _passage_metadata(row, where)
    if isinstance(row, dict) and isinstance(row.get("question"), str) and isinstance(row.get("answer"), str):
        if not row["question"].strip() or not row["answer"].strip():
            raise QASetError(f"{where}: empty question or answer")
        return {"messages": [{"role": "system", "content": system_prompt},
                             {"role": "user", "content": row["question"]},
                             {"role": "assistant", "content": row["answer"]}]} | _passage_metadata(row, where)
    raise QASetError(f"{where}: expected {{\"question\", \"answer\"}} strings or {{\"messages\": [...]}}")


def _passage_metadata(row: dict[str, Any], where: str) -> dict[str, Any]:
    """{"metadata": {"passage": …}} when the row names its source passage, else {}."""
    metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    passage = row.get("passage", row.get("context", metadata.get("passage")))
    if passage is None:
        return {}
    if not isinstance(passage, str) or not passage.strip():
        raise QASetError(f"{where}: the source passage must be a non-empty string")
    return {"metadata": {"passage": passage}}


def record_passage(record: dict[str, Any]) -> str | None:
    """The source passage a record carries (metadata.passage), or None."""
    return (record.get("metadata") or {}).get("passage")


def qa_records(rows: Sequence[dict[str, Any]], system_prompt: str, limit: int | None = None) -> list[dict]:
    """Chat records from in-memory rows (see `qa_record`), at most `limit`."""
    chosen = list(rows)[:limit] if limit else list(rows)
    if not chosen:
        raise QASetError("no examples: give at least one question/answer pair")
    return [qa_record(row, system_prompt, f"example {i + 1}") for i, row in enumerate(chosen)]


def read_qa_set(path: Path, system_prompt: str, limit: int | None = None) -> list[dict]:
    """Chat records from a JSONL file of question/answer pairs or chat records, at most `limit`."""
    path = Path(path)
    if not path.is_file():
        raise QASetError(f"{path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(qa_record(json.loads(line), system_prompt, f"{path}:{number}"))
        except json.JSONDecodeError as error:
            raise QASetError(f"{path}:{number}: not JSON ({error.msg})") from error
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise QASetError(f"{path}: no examples")
    return rows


def general_texts(limit: int) -> list[str]:
    """The first `limit` texts of tools/eval_sets/general/general_text.jsonl (general perplexity)."""
    path = GENERAL_SETS_DIR / "general_text.jsonl"
    if limit <= 0 or not path.exists():
        return []
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()][:limit]


def general_qa(system_prompt: str, limit: int, replay: bool = False) -> list[dict]:
    """General questions as chat records: the evaluation part (first GENERAL_QA_EVAL lines), or with
    `replay` the rest, which training may mix in. At most `limit`."""
    path = GENERAL_SETS_DIR / "general_qa.jsonl"
    if limit <= 0 or not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows[GENERAL_QA_EVAL:] if replay else rows[:GENERAL_QA_EVAL]
    return [qa_record(row, system_prompt) for row in rows[:limit]]


def mix_replay(train: Sequence[dict], general: Sequence[dict], fraction: float, seed: int = 0) -> list[dict]:
    """The training split with round(fraction x len(train)) general examples mixed in (cycled when the
    general set is smaller; tagged metadata.replay=True), shuffled with `seed`."""
    wanted = round(max(0.0, fraction) * len(train))
    if wanted == 0 or not general:
        return list(train)
    extra = [{**general[i % len(general)], "metadata": {"source": "general", "replay": True}} for i in range(wanted)]
    mixed = list(train) + extra
    random.Random(seed).shuffle(mixed)
    return mixed


def answer_nll(model, tokenizer, records: Sequence[dict], max_seq_len: int = 512, batch_size: int = 8) -> float:
    """Mean negative log-likelihood per answer token of the reference answers given their prompts."""
    import torch

    encoded = sorted((encode_chat(tokenizer, r["messages"], max_seq_len)[0] for r in records),
                     key=lambda e: len(e.input_ids))  # batches of similar lengths: little padding
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
            total += float(_answer_loss_sum(model, ids, mask, labels))
            count += int((labels[:, 1:] != -100).sum())
    return total / max(1, count)


def _answer_loss_sum(model, ids, mask, labels):
    """Summed loss over the answer tokens: through the chunked head (never batch x length x vocabulary
    logits at once), or the model's own logits for a head that must not be bypassed."""
    import torch

    from tools.training.linear_cross_entropy import supervised_loss_sum

    loss = supervised_loss_sum(model, ids, mask, labels)
    if loss is not None:
        return loss
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                             ignore_index=-100, reduction="sum")


def generate_answers(model, tokenizer, records: Sequence[dict], max_new_tokens: int = 64,
                     batch_size: int = 8, raw: bool = False, progress: Progress | None = None) -> list[str]:
    """Greedy answers to each record's prompt (its messages without the assistant's reply), in the records'
    order. Prompts decode `batch_size` at a time, left-padded and grouped by length (little padding), through
    `greedy_decode` (a row that ends leaves the batch; `generate` when the model's generation config changes
    the logits, `plain_argmax`); a batched greedy answer equals the one-at-a-time answer and
    `generate`'s (tests/integration/test_fast_generation.py). With `raw`,
    special tokens the model wrote before stopping are kept (format compliance looks for them).
    `progress(done, total)` before the first batch and after each."""
    import torch

    prompts = [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
               for r in records]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    answers: dict[int, str] = {}
    batch_size = answer_rows(model, max(lengths, default=0) + max_new_tokens, batch_size)
    if progress is not None and prompts:
        progress(0, len(prompts))  # started (one batch may hold every answer)
    config_stops = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stops = config_stops if config_stops is not None else tokenizer.eos_token_id  # what generate stops at
    plain_greedy = plain_argmax(model)
    tokenizer.padding_side = "left"
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True,
                                  add_special_tokens=False)
                if plain_greedy:
                    new_tokens = greedy_decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens,
                                               stops, tokenizer.pad_token_id)
                else:  # the model's generation config changes the logits: generate applies it
                    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                            pad_token_id=tokenizer.pad_token_id)
                    new_tokens = output[:, batch["input_ids"].shape[1]:]
                answers |= {i: _decode(tokenizer, row, raw) for i, row in zip(rows, new_tokens.tolist(), strict=True)}
                if progress is not None:
                    progress(len(answers), len(prompts))
    finally:
        tokenizer.padding_side = "right"
    return [answers[i] for i in range(len(prompts))]


def answer_rows(model, tokens_per_row: int, wanted: int, budget_bytes: int = KV_CACHE_BUDGET_BYTES) -> int:
    """At most `wanted` rows, fewer when their KV cache (keys and values of every layer for
    `tokens_per_row` tokens each) would pass `budget_bytes`; at least one."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers, heads = getattr(config, "num_hidden_layers", 0), getattr(config, "num_attention_heads", 0)
    if not layers or not heads:
        return max(1, wanted)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = next(model.parameters()).element_size()
    per_row = 2 * layers * kv_heads * head_dim * element * max(1, tokens_per_row)
    return max(1, min(wanted, budget_bytes // per_row))


def _decode(tokenizer, token_ids: list[int], raw: bool) -> str:
    """Text of the generated ids up to the end-of-sequence token that stopped generation."""
    if not raw:
        return tokenizer.decode(token_ids, skip_special_tokens=True).strip()
    stop = tokenizer.eos_token_id
    if stop in token_ids:
        token_ids = token_ids[: token_ids.index(stop)]
    return tokenizer.decode(token_ids, skip_special_tokens=False).strip()


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


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def answer_scores(answers: Sequence[str], references: Sequence[str], max_words: int) -> dict[str, float | None]:
    """Mean token F1, ROUGE-L, exact match (template tokens removed first) and format compliance."""
    cleaned = [strip_template_tokens(a) for a in answers]
    pairs = list(zip(cleaned, references, strict=True))
    return {"token_f1": _mean([token_f1(a, r) for a, r in pairs]), "rouge_l": _mean([rouge_l(a, r) for a, r in pairs]),
            "exact_match": _mean([exact_match(a, r) for a, r in pairs]),
            "format_compliance": _mean([format_compliance(a, max_words) for a in answers])}


def reference(record: dict) -> str:
    return record["messages"][-1]["content"]


def score_model(model, tokenizer, records: Sequence[dict], general_texts: Sequence[str], plan: EvalPlan,
                general_questions: Sequence[dict] = (),
                progress: Progress | None = None) -> tuple[ModelScores, list[str], list[str]]:
    """(scores, answers to the first `plan.generate_limit` records, answers to the general questions);
    `progress(done, total)` over both sets of answers (generation is the slow part)."""
    with scoring_precision(model, plan.precision):
        nll = answer_nll(model, tokenizer, records) if records else None
        ppl = perplexity(model, tokenizer, general_texts) if general_texts else None
    chosen = list(records[: plan.generate_limit])
    everything = generate_answers(model, tokenizer, [*chosen, *general_questions], plan.max_new_tokens,
                                  plan.batch_size, raw=True, progress=progress)  # one pass: fuller batches
    answers, general_answers = everything[: len(chosen)], everything[len(chosen) :]
    general = answer_scores(general_answers, [reference(r) for r in general_questions], plan.max_answer_words)
    scores = ModelScores(
        answer_nll=nll, **answer_scores(answers, [reference(r) for r in chosen], plan.max_answer_words),
        general_perplexity=ppl,
        examples=len(records), general_qa_f1=general["token_f1"], general_qa_rouge_l=general["rouge_l"],
        generated=len(answers))
    return scores, answers, general_answers


def example_rows(records: Sequence[dict], base_answers: Sequence[str], tuned_answers: Sequence[str] | None,
                 max_words: int) -> list[dict]:
    """One row per generated example: question, reference, answers, their ROUGE-L and format problems."""
    rows = []
    for index, (record, base) in enumerate(zip(records, base_answers, strict=False)):
        row = {"question": record["messages"][-2]["content"], "reference": reference(record), "base_answer": base,
               "base_rouge_l": round(rouge_l(strip_template_tokens(base), reference(record)), 4),
               "base_format": format_problems(base, max_words)}
        if tuned_answers is not None:
            tuned = tuned_answers[index]
            row |= {"tuned_answer": tuned,
                    "tuned_rouge_l": round(rouge_l(strip_template_tokens(tuned), reference(record)), 4),
                    "tuned_format": format_problems(tuned, max_words)}
        rows.append(row)
    return rows


def compare_with_base(base_model_path: str, adapter_dir: str | None, records: Sequence[dict],
                      general_texts: Sequence[str], max_new_tokens: int = 64, generate_limit: int = 40,
                      threads: int | None = None, general_questions: Sequence[dict] = (),
                      max_answer_words: int = DEFAULT_MAX_ANSWER_WORDS, precision: str = "auto",
                      progress: Callable[[str], Progress] | None = None,
                      answer_batch: int = ANSWER_BATCH_ROWS) -> Comparison:
    """Score the tuned model (the adapter merged into a copy of the base weights), then the base model
    loaded from the same files in the same dtype, with the same tokenizer. Without an adapter only the
    base is scored (`tuned` is None). `precision`: see `inference_dtype`. `progress("tuned" | "base")`:
    the callback for that model's answers. `answer_batch`: answers decoded at a time (at most)."""
    plan = EvalPlan(max_new_tokens, generate_limit, max_answer_words, answer_batch, precision)
    tuned = tuned_answers = tuned_general = None
    if adapter_dir:
        model, tokenizer = load_for_inference(base_model_path, adapter_dir, threads, precision, merge=True,
                                              rows=plan.batch_size)
        tuned, tuned_answers, tuned_general = score_model(model, tokenizer, records, general_texts, plan,
                                                          general_questions, progress and progress("tuned"))
        del model
        model = load_for_inference(base_model_path, None, None, precision, rows=plan.batch_size)[0]  # same dtype
    else:
        model, tokenizer = load_for_inference(base_model_path, None, threads, precision, rows=plan.batch_size)
    base, base_answers, base_general = score_model(model, tokenizer, records, general_texts, plan,
                                                   general_questions, progress and progress("base"))
    return Comparison(base=base, tuned=tuned,
                      per_example=example_rows(records, base_answers, tuned_answers, max_answer_words),
                      general_per_example=example_rows(general_questions, base_general, tuned_general,
                                                       max_answer_words))
