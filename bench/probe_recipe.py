"""Recipe probe: retrain a finished PubMedQA bench job's dataset with one variation, score the experts' answers.

A full job per variation costs generation, curation and evaluation; this keeps the job's dataset (its
train/val splits and document rows) and varies only what is asked: the QA forms kept, the document share,
the training hyperparameters. It prints one JSON line: the expert LONG_ANSWER NLL base -> tuned and the
general perplexity, as bench_pubmedqa.py measures them. Usage:
  python bench/probe_recipe.py --home /tmp/ftagent-bench-pubmedqa --name ep6 --set epochs=6 \
      --keep-forms findings,section
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from bench_pubmedqa import PUBMEDQA, drop, expert_records, mesh_groups, nll_by_split, score, split_of_abstracts

from graphs.spec import Training
from tools.data.dataset import read_jsonl
from tools.evaluation.scoring import answer_nll, general_texts, perplexity
from tools.models.loading import load_for_inference
from tools.text import without_statistics
from tools.training.backends import train_lora
from tools.training.config import TrainingConfig

_SPEC = Training()  # a job's own defaults
JOB_DEFAULTS = {"epochs": _SPEC.epochs, "learning_rate": _SPEC.learning_rate, "lora_r": _SPEC.lora_r,
                "lora_alpha": _SPEC.lora_alpha, "batch_size": _SPEC.batch_size, "max_seq_len": _SPEC.max_seq_len,
                "checkpoint_every": 10, "validations_per_epoch": 2}


def form_of(row: dict) -> str:
    return (row.get("metadata") or {}).get("type", "")


def _plain_findings(row: dict) -> dict:
    if form_of(row) != "findings":
        return row
    messages = [dict(m) for m in row["messages"]]
    messages[-1]["content"] = without_statistics(messages[-1]["content"])
    return {**row, "messages": messages}


def choose_rows(train: list[dict], documents: list[dict], args: argparse.Namespace,
                held_out: list[dict] = ()) -> tuple[list[dict], list[dict]]:
    if args.keep_forms:
        train = [r for r in train if form_of(r) in set(args.keep_forms.split(","))]
    if args.drop_questions:
        train = [r for r in train if not re.search(args.drop_questions, r["messages"][-2]["content"])]
    if args.max_share:
        caps = {k: float(v) for k, v in (item.split(":") for item in args.max_share.split(","))}
        random.Random(0).shuffle(train)
        kept, seen = [], Counter()
        for row in train:
            if form_of(row) in caps and seen[form_of(row)] >= caps[form_of(row)] * len(train):
                continue
            seen[form_of(row)] += 1
            kept.append(row)
        train = kept
    if args.plain_findings:  # the findings answers as the generator now words them
        train = [_plain_findings(row) for row in train]
    if args.repeat_forms:
        times = {k: int(v) for k, v in (item.split(":") for item in args.repeat_forms.split(","))}
        train = [row for row in train for _ in range(times.get(form_of(row), 1))]
    if args.study_header:  # every split's questions name studies (the generator names each document)
        documents = with_study_headers(documents, [*train, *held_out])
    unique = list({row["text"]: row for row in documents}.values())
    if args.document_share is not None:
        wanted = round(args.document_share * len(train) / (1 - args.document_share))
        documents = [unique[i % len(unique)] for i in range(wanted)] if unique else []
    return train, documents


_STUDY = re.compile(r"\bthe (study that (?:set out to|asked whether) .+?)(?: find| carried out)?\?$")


def with_study_headers(documents: list[dict], train: list[dict]) -> list[dict]:
    """Each document row headed by the name its document's questions give the study ("The study that set
    out to ...") when its text does not start with a title: a chunk from the middle of an abstract then
    says what it is about."""
    names: dict[str, str] = {}
    for row in train:
        found = _STUDY.search(row["messages"][-2]["content"])
        if found:
            names.setdefault(row["metadata"]["doc_id"], f"The {found[1]}")
    headed = []
    for row in documents:
        name = names.get(row["metadata"]["doc_id"])
        headed.append({**row, "text": f"{name}\n\n{row['text']}"} if name else row)
    return headed


def expert_curve(model, tokenizer, experts: list[dict], checkpoints: Path, splits: dict[str, str]) -> dict[int, dict]:
    """The experts' answer NLL (all, and by split) with the adapter of each kept checkpoint (the model's
    adapter replaced)."""
    import torch
    from peft import set_peft_model_state_dict

    curve = {}
    for folder in sorted(checkpoints.glob("step-*")):
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
        set_peft_model_state_dict(model, state["adapter"])
        curve[state["step"]] = {"all": round(answer_nll(model, tokenizer, experts), 4),
                                **nll_by_split(model, tokenizer, experts, splits)}
    return curve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True, help="the bench job's home (one job in it)")
    parser.add_argument("--group", default="Treatment Outcome", help="the MeSH group that job ran on")
    parser.add_argument("--name", required=True)
    parser.add_argument("--keep-forms", help="only these QA forms, comma-separated")
    parser.add_argument("--drop-questions", help="leave out the rows whose question matches this regex")
    parser.add_argument("--max-share", help="form:share caps of QA forms, comma-separated")
    parser.add_argument("--repeat-forms", help="form:times repeats of QA forms, comma-separated")
    parser.add_argument("--plain-findings", action="store_true", help="findings answers without statistical asides")
    parser.add_argument("--study-header", action="store_true",
                        help="document rows headed by the study's name from its questions")
    parser.add_argument("--document-share", type=float, help="document rows repeated or trimmed to this share")
    parser.add_argument("--set", action="append", default=[], help="training hyperparameter key=value")
    parser.add_argument("--generate", type=int, default=0, help="expert questions answered (ROUGE-L), as the bench")
    parser.add_argument("--curve", action="store_true",
                        help="keep every checkpoint and score the experts' answers at each (NLL by step)")
    args = parser.parse_args()
    home = Path(args.home)
    dataset = next((home / "jobs").iterdir()) / "dataset"
    held_out = read_jsonl(dataset / "val.jsonl") + read_jsonl(dataset / "test.jsonl")
    train, documents = choose_rows(read_jsonl(dataset / "train.jsonl"), read_jsonl(dataset / "train.documents.jsonl"),
                                   args, held_out)
    overrides = {key: json.loads(value) for key, _, value in (s.partition("=") for s in args.set)}
    if args.curve:
        overrides.setdefault("keep_checkpoints", 1000)
    threads = int(os.environ.get("FTAGENT_THREADS", "2"))
    out = home / "probes" / args.name
    out.mkdir(parents=True, exist_ok=True)
    base_path = str(home / "models" / "base" / "smollm2-135m")
    config = TrainingConfig(base_model_path=base_path, output_dir=str(out / "adapter"),
                            checkpoint_dir=str(out / "ckpt"), metrics_path=str(out / "metrics.jsonl"),
                            threads=threads, **(JOB_DEFAULTS | overrides))
    started = time.time()
    result = train_lora(config, train + documents, read_jsonl(dataset / "val.jsonl"))
    seconds = time.time() - started
    records = json.loads(PUBMEDQA.read_text())
    system_prompt = read_jsonl(dataset / "val.jsonl")[0]["messages"][0]["content"]  # the job's own
    experts = expert_records(records, dict(mesh_groups(records, 3, 34, 0))[args.group], system_prompt)
    model, tokenizer = load_for_inference(base_path, result.adapter_dir, threads)
    texts = general_texts(30)
    tuned, tuned_ppl = answer_nll(model, tokenizer, experts), perplexity(model, tokenizer, texts)
    splits = split_of_abstracts({name: str(dataset / f"{name}.jsonl") for name in ("train", "val", "test")})
    tuned_split = nll_by_split(model, tokenizer, experts, splits)
    rouge = {"tuned": score(model, tokenizer, experts, args.generate, 64, splits)["rouge_l"]} if args.generate else {}
    with model.disable_adapter():
        base, base_ppl = answer_nll(model, tokenizer, experts), perplexity(model, tokenizer, texts)
        base_split = nll_by_split(model, tokenizer, experts, splits)
        if args.generate:
            rouge["base"] = score(model, tokenizer, experts, args.generate, 64, splits)["rouge_l"]
    curve = expert_curve(model, tokenizer, experts, out / "ckpt", splits) if args.curve else None
    print(json.dumps({"bench": "recipe_probe", "name": args.name, "group": args.group, "qa_rows": len(train),
                      "document_rows": len(documents), "forms": dict(Counter(map(form_of, train))),
                      "overrides": overrides, "steps": result.steps,
                      "val_history": [round(v, 3) for v in result.val_history],
                      "expert_answer_nll": {"base": round(base, 4), "tuned": round(tuned, 4),
                                            "drop": round((base - tuned) / base, 4),
                                            "by_split": {k: {"base": base_split[k], "tuned": v,
                                                             "drop": drop(base_split[k], v)}
                                                         for k, v in tuned_split.items()}},
                      "general_perplexity": {"base": round(base_ppl, 2), "tuned": round(tuned_ppl, 2)},
                      **({"expert_rouge_l": rouge} if rouge else {}),
                      **({"expert_nll_by_step": curve} if curve else {}),
                      "train_seconds": round(seconds), "loadavg": [round(x, 1) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
