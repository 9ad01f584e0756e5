"""Tuned vs base on PubMedQA after a job on the same abstracts, with the real embedded SmolLM2.

Writes N PubMedQA abstracts (their CONTEXTS) as local .txt documents, runs one job on them through
`JobService` (the same path as every front door), then on the abstracts' expert questions measures:
- answer NLL of the authors' LONG_ANSWER given the QUESTION (chat format, the job's system prompt),
- ROUGE-L / token F1 of greedy answers against the LONG_ANSWER,
for the base model and the tuned adapter, split by whether the abstract's document reached the
training split or stayed held out (test/val documents or dropped by curation).

The data set is bench input only (../shared/datasets/pubmedqa); the product never reads it.
Prints JSON lines. Usage:
  python bench/bench_pubmedqa.py [--abstracts 120] [--generate 30] [--home DIR] [--base-home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.service import JobService
from graphs.context import resolve_settings
from tools.dataset import read_jsonl
from tools.evaluation import answer_nll, generate_answers, load_for_inference
from tools.metrics import rouge_l, token_f1
from tools.prompts import render_prompt

REPO = Path(__file__).resolve().parents[1]
PUBMEDQA = REPO.parent / "shared" / "datasets" / "pubmedqa" / "pqal_dev.json"
SUBJECT_SENTENCE = "fine-tune SmolLM2 on biomedical and clinical research"


def load_items(count: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` PubMedQA items (pmid, item), a seeded sample in a stable order."""
    items = sorted(json.loads(PUBMEDQA.read_text()).items())
    random.Random(seed).shuffle(items)
    return items[:count]


def write_documents(items: list[tuple[str, dict[str, Any]]], folder: Path) -> Path:
    """One .txt per abstract: its CONTEXTS joined by blank lines (no question, no conclusion)."""
    folder.mkdir(parents=True, exist_ok=True)
    for pmid, item in items:
        (folder / f"pubmed-{pmid}.txt").write_text("\n\n".join(item["CONTEXTS"]) + "\n")
    return folder


def prepare_home(home: Path, base_home: Path) -> None:
    """Reuse the converted SmolLM2 of another home (a symlink) so no conversion is timed."""
    source, target = base_home / "models" / "base" / "smollm2-135m", home / "models" / "base" / "smollm2-135m"
    if source.exists() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)


def trained_pmids(state: dict[str, Any]) -> set[str]:
    """PubMed ids whose document produced at least one training example."""
    train_docs = {r["metadata"]["doc_id"] for r in read_jsonl(Path(state["dataset"]["paths"]["train"]))}
    return {Path(d["uri"]).stem.removeprefix("pubmed-") for d in state["documents"] if d["doc_id"] in train_docs}


def question_records(items: list[tuple[str, dict[str, Any]]], system: str) -> list[dict[str, Any]]:
    return [{"pmid": pmid, "messages": [{"role": "system", "content": system},
                                        {"role": "user", "content": item["QUESTION"]},
                                        {"role": "assistant", "content": item["LONG_ANSWER"]}]}
            for pmid, item in items]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def score(model: Any, tokenizer: Any, records: list[dict[str, Any]], generate: int,
          max_new_tokens: int) -> dict[str, Any]:
    """Answer NLL on all records; ROUGE-L and token F1 of greedy answers on the first `generate`, and how
    often an answer echoes its question: its ROUGE-L against the question above 0.7 and no yes/no
    opening (a yes/no answer that restates the question is an answer, not an echo)."""
    answers = generate_answers(model, tokenizer, records[:generate], max_new_tokens)
    references = [r["messages"][-1]["content"] for r in records[:generate]]
    questions = [r["messages"][-2]["content"] for r in records[:generate]]
    echoes = [rouge_l(a, q) > 0.7 and not a.lstrip().lower().startswith(("yes", "no"))
              for a, q in zip(answers, questions, strict=True)]
    return {"answer_nll": round(answer_nll(model, tokenizer, records), 4) if records else None,
            "rouge_l": _mean([rouge_l(a, r) for a, r in zip(answers, references, strict=True)]),
            "token_f1": _mean([token_f1(a, r) for a, r in zip(answers, references, strict=True)]),
            "echoed_questions": sum(echoes),
            "questions": len(records), "generated": len(answers), "sample_answer": answers[0] if answers else None}


def compare(state: dict[str, Any], records: list[dict[str, Any]], generate: int, max_new_tokens: int,
            threads: int | None) -> dict[str, dict[str, Any]]:
    """{group: {base, tuned}} for the questions of trained and of held-out abstracts."""
    training = state["training"]
    model, tokenizer = load_for_inference(training["base_model_path"], training["adapter_dir"], threads)
    trained = trained_pmids(state)
    groups = {"trained_abstracts": [r for r in records if r["pmid"] in trained],
              "held_out_abstracts": [r for r in records if r["pmid"] not in trained]}
    results: dict[str, dict[str, Any]] = {}
    for name, group in groups.items():
        share = max(1, round(generate * len(group) / max(1, len(records)))) if group else 0
        tuned = score(model, tokenizer, group, share, max_new_tokens)
        with model.disable_adapter():
            base = score(model, tokenizer, group, share, max_new_tokens)
        results[name] = {"base": base, "tuned": tuned}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--abstracts", type=int, default=120)
    parser.add_argument("--generate", type=int, default=30, help="questions answered by generation (ROUGE-L)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-examples", type=int, default=300)
    parser.add_argument("--max-steps", type=int, help="cap on training steps (default: the spec's 2 epochs)")
    parser.add_argument("--home", default="/tmp/ftagent-bench-pubmedqa")
    parser.add_argument("--base-home", default="/tmp/ftagent-bench-demo", help="a home with SmolLM2 converted")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    home = Path(args.home)
    prepare_home(home, Path(args.base_home))
    items = load_items(args.abstracts, args.seed)
    service = JobService(resolve_settings({"home": home}))
    with tempfile.TemporaryDirectory(prefix="pubmedqa-docs-") as tmp:
        docs = write_documents(items, Path(tmp) / "abstracts")
        options = {"docs_path": str(docs), "max_rounds": 0,
                   "budget": {"max_documents": args.abstracts, "max_examples": args.max_examples},
                   "curation": {"doc_relevance_threshold": 0.05, "chunk_relevance_threshold": 0.0},
                   "training": {"max_steps": args.max_steps} if args.max_steps else {}}
        record = service.submit(SUBJECT_SENTENCE, options)
        started = time.time()
        state = service.run(record.job_id)
        job_seconds = time.time() - started
    system = render_prompt("system_subject_expert", subject=state["spec"]["subject"])
    started = time.time()
    results = compare(state, question_records(items, system), args.generate, args.max_new_tokens,
                      service.settings.threads)
    evaluation, training = state.get("evaluation") or {}, state.get("training") or {}
    print(json.dumps({"bench": "pubmedqa_job", "job_id": record.job_id, "abstracts": len(items),
                      "documents_kept": (state.get("curation") or {}).get("documents_kept"),
                      "examples": (state.get("dataset") or {}).get("counts"), "train_steps": training.get("steps"),
                      "train_loss": training.get("train_loss"), "val_loss": training.get("val_loss"),
                      "job_gates_passed": evaluation.get("passed"),
                      "job_answer_nll": {"base": evaluation.get("base", {}).get("answer_nll"),
                                         "tuned": evaluation.get("tuned", {}).get("answer_nll")},
                      "job_seconds": round(job_seconds, 1), "loadavg": os.getloadavg()}))
    for group, scores in results.items():
        print(json.dumps({"bench": "pubmedqa_questions", "group": group, **scores,
                          "eval_seconds": round(time.time() - started, 1), "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
