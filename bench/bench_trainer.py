"""Benchmark: ftagent's LoRA recipe vs TRL's SFTTrainer on the embedded SmolLM2-135M, same data, same LoRA.

Each trainer runs in its own child process (so peak RSS is its own) for the same number of optimizer
steps of 8 examples; prints JSON lines: the machine's load and matmul rates, one line per trainer, and a
comparison line. Both do the same work in the timed span: training steps only (ours gets no validation
set, so it runs no validation passes and keeps its last adapter, as TRL with no eval set does), and both
final adapters are measured the same way afterwards (`supervised_val_loss`, fp32). Effective tokens are
non-padding tokens. Model FLOPs per token for LoRA training are taken as 4 x params (forward 2N +
activation gradients 2N, no weight gradients for frozen weights) + 8 x layers x mean_seq_len x hidden
(attention scores and values, forward and backward).

    .venv/bin/python bench/bench_trainer.py [--steps 20] [--home /tmp/ftagent-bench] [--dataset train.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.hardware import machine_report

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PROMPT = "You answer questions about the documents you were trained on, precisely and briefly."


def corpus_records(tokenizer, train_count: int, val_count: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, val) chat examples of 50-400 tokens from tools/eval_sets/demo_corpus: every extractive QA pair
    twice, once bare and once with its source passage in the user turn (so lengths vary like a real
    job's). Validation examples are distinct from training ones; a small corpus repeats in training."""
    from tools.data.chunking import chunk_document
    from tools.data.dataset import to_chat_record
    from tools.data.qa_extractive import generate_examples
    from tools.sources.documents import Document

    records = []
    for path in sorted((REPO / "tools" / "eval_sets" / "demo_corpus").glob("*")):
        if path.suffix not in {".md", ".txt"}:
            continue
        document = Document(source="local", native_id=path.name, title=path.stem, text=path.read_text(), uri=str(path))
        for chunk in chunk_document(document):
            for example in generate_examples(chunk, "local"):
                records.append(to_chat_record(example, SYSTEM_PROMPT))
                with_passage = to_chat_record(example, SYSTEM_PROMPT)
                with_passage["messages"][1]["content"] = f"Passage: {chunk.text}\n\nQuestion: {example.question}"
                records.append(with_passage)

    def length(record: dict) -> int:
        text = tokenizer.apply_chat_template(record["messages"], tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    keep = [r for r in records if 50 <= length(r) <= 400]
    if len(keep) <= val_count:
        raise SystemExit(f"only {len(keep)} examples of 50-400 tokens in the demo corpus")
    random.Random(seed).shuffle(keep)
    val, train = keep[:val_count], keep[val_count:]
    while len(train) < train_count:
        train += train[: train_count - len(train)]
    return train[:train_count], val


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def supervised_val_loss(model, tokenizer, records: list[dict], max_len: int) -> float:
    """Loss per assistant token on the validation records (the same measure for both trainers)."""
    import torch
    import torch.nn.functional as F

    from tools.training.encoding import encode_chat

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for record in records:
            example, _ = encode_chat(tokenizer, record["messages"], max_len)
            ids = torch.tensor([example.input_ids])
            labels = torch.tensor([example.labels])
            logits = model(input_ids=ids).logits[0, :-1].float()
            total += float(F.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="sum"))
            count += int((labels[0, 1:] != -100).sum())
    return total / count


def run_ours(base: Path, train: list[dict], val: list[dict], args) -> dict:
    from tools.training.backends import train_lora
    from tools.training.config import TrainingConfig

    work = Path(tempfile.mkdtemp(prefix="bench-ours-"))
    config = TrainingConfig(base_model_path=str(base), output_dir=str(work / "adapter"),
                            checkpoint_dir=str(work / "ck"), max_steps=args.steps, batch_size=args.batch,
                            max_seq_len=args.max_length, lora_r=16, lora_alpha=32, lora_dropout=args.lora_dropout,
                            target_modules="all-linear", checkpoint_every=10_000, precision=args.precision,
                            threads=args.threads, warmup_ratio=0.03, learning_rate=2e-4)
    steps = []
    result = train_lora(config, train, [], on_step=steps.append)  # no validation passes in the timed span
    last, peak = steps[-1], peak_rss_mb()  # training's peak, before a model is loaded to measure the adapter
    return {"trainer": "ftagent", "steps": result.steps, "effective_tokens": result.train_tokens,
            "train_seconds": round(last.elapsed_seconds, 2),
            "effective_tokens_per_s": round(result.train_tokens / last.elapsed_seconds, 1),
            "val_loss": round(adapter_val_loss(base, result.adapter_dir, val, args.max_length), 4),
            "peak_rss_mb": round(peak, 1),
            "precision": result.precision, "micro_batch": result.micro_batch, "base_weights": result.precision,
            "gradient_accumulation": result.gradient_accumulation,
            "gradient_checkpointing": result.gradient_checkpointing}


def adapter_val_loss(base: Path, adapter_dir: str, val: list[dict], max_len: int) -> float:
    """`supervised_val_loss` of a saved adapter on the fp32 base, as TRL's trained model is measured."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                                      adapter_dir)
    return supervised_val_loss(model, AutoTokenizer.from_pretrained(str(base)), val, max_len)


def run_trl(base: Path, train: list[dict], val: list[dict], args) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks["start"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            marks["end"] = time.perf_counter()

    extra = {} if args.trl_bf16 == "default" else {"bf16": args.trl_bf16 == "on"}
    if not torch.cuda.is_available():
        extra["use_cpu"] = True  # TRL's default config refuses to start on a CPU without it
    sft = SFTConfig(output_dir=tempfile.mkdtemp(prefix="bench-trl-"), per_device_train_batch_size=args.batch,
                    max_length=args.max_length, max_steps=args.steps, logging_steps=1, save_strategy="no",
                    report_to=[], seed=0, dataloader_num_workers=0, **extra)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=args.lora_dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=sft, train_dataset=Dataset.from_list([{"messages": r["messages"]}
                                                                                  for r in train]),
                         processing_class=tokenizer, peft_config=lora, callbacks=[Clock()])
    trainer.train()
    seconds = marks["end"] - marks["start"]
    tokens = int(trainer._total_train_tokens)
    return {"trainer": "trl-sft", "steps": args.steps, "effective_tokens": tokens,
            "train_seconds": round(seconds, 2), "effective_tokens_per_s": round(tokens / seconds, 1),
            "val_loss": round(supervised_val_loss(trainer.model, tokenizer, val, args.max_length), 4),
            "peak_rss_mb": round(peak_rss_mb(), 1), "bf16": sft.bf16,
            "gradient_checkpointing": sft.gradient_checkpointing, "padding_free": sft.padding_free,
            "assistant_only_loss": sft.assistant_only_loss}


def worker(args) -> None:
    """Child process: one trainer, one JSON line on stdout."""
    from transformers import AutoTokenizer

    base = Path(args.base)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if args.dataset:
        records = [json.loads(line) for line in Path(args.dataset).read_text().splitlines() if line.strip()]
        random.Random(0).shuffle(records)
        train, val = records[: args.steps * args.batch], records[-args.val:]
    else:
        train, val = corpus_records(tokenizer, args.steps * args.batch, args.val)
    runner = run_ours if args.worker == "ours" else run_trl
    print(json.dumps(runner(base, train, val, args)), flush=True)


def model_flops_per_token(base: Path, mean_len: float) -> float:
    from safetensors import safe_open
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(base))
    params = 0
    for file in base.glob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            params += sum(_numel(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118 - safe_open is not iterable
    return 4 * params + 8 * config.num_hidden_layers * mean_len * config.hidden_size


def _numel(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default="/tmp/ftagent-bench")
    parser.add_argument("--dataset", default=None, help="a job's dataset/train.jsonl instead of the demo corpus")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--lora-dropout", type=float, default=0.0,
                        help="both trainers' LoRA dropout (0: a job's default and peft's LoraConfig default)")
    parser.add_argument("--trl-bf16", default="default", choices=["default", "on", "off"],
                        help="TRL's SFTConfig bf16 (default: TRL's own default)")
    parser.add_argument("--only", default="both", choices=["both", "ours", "trl"])
    parser.add_argument("--worker", default=None, choices=["ours", "trl"])
    parser.add_argument("--base", default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args)
        return
    from tools.models.catalogue import resolve_base_model

    base = resolve_base_model("smollm2-135m", Path(args.home))
    machine = machine_report(args.threads)
    print(json.dumps(machine), flush=True)
    results = {}
    for name in (["ours", "trl"] if args.only == "both" else [args.only]):
        command = [sys.executable, __file__, "--worker", name, "--base", str(base)] + sys.argv[1:]
        output = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        if output.returncode:
            print(json.dumps({"trainer": name, "error": output.stderr[-2000:]}), flush=True)
            continue
        results[name] = json.loads(output.stdout.strip().splitlines()[-1])
        results[name]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        mean_len = results[name]["effective_tokens"] / (results[name]["steps"] * args.batch)
        flops = model_flops_per_token(base, mean_len)
        results[name]["model_gflops_per_token"] = round(flops / 1e9, 3)
        rate = results[name]["effective_tokens_per_s"] * flops / 1e9
        results[name]["fraction_of_fp32_matmul"] = round(rate / machine["fp32_matmul_gflops"], 3)
        results[name]["fraction_of_bf16_matmul"] = round(rate / machine["bf16_matmul_gflops"], 3)
        print(json.dumps(results[name]), flush=True)
    if len(results) == 2:
        ours, trl = results["ours"], results["trl"]
        print(json.dumps({"event": "comparison",
                          "tokens_per_s_ratio": round(ours["effective_tokens_per_s"]
                                                      / trl["effective_tokens_per_s"], 2),
                          "val_loss_ours_minus_trl": round(ours["val_loss"] - trl["val_loss"], 4),
                          "peak_rss_mb_ours": ours["peak_rss_mb"], "peak_rss_mb_trl": trl["peak_rss_mb"],
                          "steps": args.steps, "batch": args.batch, "max_length": args.max_length,
                          "load_avg": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
