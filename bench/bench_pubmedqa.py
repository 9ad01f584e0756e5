"""Tuned vs base on PubMedQA, one job per group of abstracts that share a MeSH term, real SmolLM2.

For each group (30-40 abstracts sharing a MeSH term, groups disjoint), the abstracts are written as
PubMed text (one "LABEL: text" paragraph per section, as the PubMed source writes them; no conclusion, no
question) and one job runs on them through `JobService`, the path of every front door. Then, on the
experts' questions for those abstracts:
- answer NLL of the authors' LONG_ANSWER given the QUESTION (chat format, the job's system prompt),
- ROUGE-L of greedy answers against the LONG_ANSWER,
for the base model and the tuned adapter; plus the job's own figures: yield (QA rows, document rows),
questions the gate caught, cloze share, general perplexity, wall time.

The data set is bench input only (../shared/datasets/pubmedqa); the product never reads it.
Prints one JSON line per group and one with the means. Usage:
  python bench/bench_pubmedqa.py [--groups 3] [--per-group 36] [--generate 16] [--set generation.document_share=0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent.service import JobService
from agent.settings import resolve_settings
from graphs.state import plain_state
from tools.evaluation.metrics import rouge_l
from tools.evaluation.scoring import answer_nll, generate_answers
from tools.llm.prompt_files import render_prompt
from tools.models.loading import load_for_inference

REPO = Path(__file__).resolve().parents[1]
PUBMEDQA = REPO.parent / "shared" / "datasets" / "pubmedqa" / "pqal_dev.json"
# MeSH check tags (who was studied) and the two most generic design terms name no shared subject
NOT_A_SUBJECT = {"Humans", "Female", "Male", "Adult", "Middle Aged", "Aged", "Adolescent", "Child", "Infant",
                 "Young Adult", "Aged, 80 and over", "Child, Preschool", "Infant, Newborn", "Animals",
                 "Retrospective Studies", "Prospective Studies"}


def mesh_groups(records: dict[str, Any], count: int, size: int, seed: int) -> list[tuple[str, list[str]]]:
    """`count` disjoint groups of 30..`size` abstracts that share a MeSH subject term (most common first)."""
    by_term: dict[str, list[str]] = {}
    for pmid, item in sorted(records.items()):
        for term in set(item["MESHES"]) - NOT_A_SUBJECT:
            by_term.setdefault(term, []).append(pmid)
    used: set[str] = set()
    groups = []
    for term, pmids in sorted(by_term.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        free = [p for p in pmids if p not in used]
        if len(free) < 30:
            continue
        random.Random(seed).shuffle(free)
        groups.append((term, free[:size]))
        used |= set(free[:size])
        if len(groups) == count:
            break
    return groups


def write_documents(records: dict[str, Any], pmids: list[str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("pubmed-*.txt"):
        if stale.stem.removeprefix("pubmed-") not in pmids:
            stale.unlink()
    for pmid in pmids:
        item = records[pmid]
        sections = [f"{label}: {text}" for label, text in zip(item["LABELS"], item["CONTEXTS"], strict=True)]
        path, text = folder / f"pubmed-{pmid}.txt", "\n\n".join(sections) + "\n"
        if not path.exists() or path.read_text() != text:  # a run reading the folder never sees it rewritten
            path.write_text(text)
    return folder


def prepare_home(home: Path, base_home: Path) -> None:
    """Reuse the converted SmolLM2 of another home (a symlink) so no conversion is timed."""
    source, target = base_home / "models" / "base" / "smollm2-135m", home / "models" / "base" / "smollm2-135m"
    if source.exists() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)


def expert_records(records: dict[str, Any], pmids: list[str], system: str) -> list[dict[str, Any]]:
    return [{"pmid": p, "messages": [{"role": "system", "content": system},
                                     {"role": "user", "content": records[p]["QUESTION"]},
                                     {"role": "assistant", "content": records[p]["LONG_ANSWER"]}]} for p in pmids]


def split_of_abstracts(dataset_paths: dict[str, str]) -> dict[str, str]:
    """PubMed id -> the split its QA rows went to ("train", "val", "test"); an abstract with no row is absent."""
    found: dict[str, str] = {}
    for name in ("train", "val", "test"):
        for line in Path(dataset_paths[name]).read_text().splitlines():
            source = json.loads(line)["metadata"].get("source", "")
            found.setdefault(source.split()[-1] if source.startswith("pubmed ") else "", name)
    return found


def nll_by_split(model: Any, tokenizer: Any, records: list[dict[str, Any]], splits: dict[str, str]) -> dict:
    """The experts' answer NLL of the abstracts the model was asked about in training ("trained") and of those
    it only read as document rows ("held_out": the job's validation and test documents): what a job teaches
    about its own documents against what it teaches about the subject and the register."""
    kinds = {"trained": [r for r in records if splits.get(r["pmid"]) == "train"],
             "held_out": [r for r in records if splits.get(r["pmid"]) in ("val", "test")]}
    return {kind: round(answer_nll(model, tokenizer, chosen), 4) for kind, chosen in kinds.items() if chosen}


def score(model: Any, tokenizer: Any, records: list[dict[str, Any]], generate: int, max_new_tokens: int,
          splits: dict[str, str]) -> dict:
    answers = generate_answers(model, tokenizer, records[:generate], max_new_tokens)
    references = [r["messages"][-1]["content"] for r in records[:generate]]
    rouge = [rouge_l(a, r) for a, r in zip(answers, references, strict=True)]
    return {"answer_nll": round(answer_nll(model, tokenizer, records), 4),
            "by_split": nll_by_split(model, tokenizer, records, splits),
            "rouge_l": round(sum(rouge) / len(rouge), 4) if rouge else None,
            "sample_answer": answers[0] if answers else None}


def drop(base: float, tuned: float) -> float:
    return round((base - tuned) / base, 4)


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """--set section.key=value pairs as nested job options (numbers and booleans typed)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:  # numbers, booleans, lists typed; anything else ("fp32", "bf16") is a string
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, _, name = key.partition(".")
        options.setdefault(section, {})[name] = value
    return options


def job_figures(state: dict[str, Any], seconds: float) -> dict[str, Any]:
    dataset, evaluation = state.get("dataset") or {}, state.get("evaluation") or {}
    training = state.get("training") or {}
    stats = Counter(dataset.get("generator_stats") or {})
    caught = {k.removeprefix("question gate: "): v for k, v in stats.items() if k.startswith("question gate: ")}
    types = dataset.get("types") or {}
    qa_rows = sum((dataset.get("counts") or {}).values())
    return {"status": state.get("status"), "kept_words": dataset.get("kept_words"),
            "qa_rows": dataset.get("counts"), "document_rows": dataset.get("document_rows"),
            "words_per_qa_row": round(dataset.get("kept_words", 0) / max(1, qa_rows), 1),
            "questions_caught_by_gate": caught, "cloze_share": round(types.get("cloze", 0) / max(1, qa_rows), 3),
            "types": types, "train_steps": training.get("steps"), "val_history": training.get("val_history"),
            "stopped_early": training.get("stopped_early"), "gates_passed": evaluation.get("passed"),
            "job_answer_nll": {k: (evaluation.get(k) or {}).get("answer_nll") for k in ("base", "tuned")},
            "general_perplexity": {k: (evaluation.get(k) or {}).get("general_perplexity") for k in ("base", "tuned")},
            "registered": (state.get("model") or {}).get("name"), "job_seconds": round(seconds, 1)}


def compare_on_experts(model: Any, tokenizer: Any, experts: list[dict[str, Any]], splits: dict[str, str],
                       args: Any) -> tuple[dict, dict, dict]:
    """Base and tuned scores on the experts' questions (the adapter off, then on) and the answer NLL line: all
    abstracts, and by what the job did with each (trained / held out)."""
    tuned = score(model, tokenizer, experts, args.generate, args.max_new_tokens, splits)
    with model.disable_adapter():
        base = score(model, tokenizer, experts, args.generate, args.max_new_tokens, splits)
    counts = Counter("trained" if splits.get(r["pmid"]) == "train" else "held_out" for r in experts
                     if r["pmid"] in splits)
    by_split = {kind: {"base": base["by_split"][kind], "tuned": value, "drop": drop(base["by_split"][kind], value),
                       "abstracts": counts[kind]} for kind, value in tuned["by_split"].items()}
    return base, tuned, {"base": base["answer_nll"], "tuned": tuned["answer_nll"],
                         "drop": drop(base["answer_nll"], tuned["answer_nll"]), "by_split": by_split}


def run_group(service: JobService, records: dict[str, Any], term: str, pmids: list[str], args: Any,
              extra: dict[str, Any]) -> dict[str, Any]:
    # one folder per group: a local document's id comes from its file name in the folder and the split by
    # document from the ids, so two runs (two homes, two settings) train and test on the same split
    docs = write_documents(records, pmids, Path(args.docs) / re.sub(r"\W+", "-", term.lower()).strip("-"))
    options = {"docs_path": str(docs), "max_rounds": args.max_rounds,
               "curation": {"doc_relevance_threshold": 0.05, "chunk_relevance_threshold": 0.0}, **extra}
    record = service.submit(f"fine-tune SmolLM2 on {term.lower()}", options)
    started = time.time()
    state = plain_state(service.run(record.job_id))
    seconds = time.time() - started
    figures = job_figures(state, seconds)
    training = state.get("training") or {}
    if not training.get("adapter_dir"):
        return {"bench": "pubmedqa_group", "mesh": term, "abstracts": len(pmids), **figures}
    system = render_prompt("system_subject_expert", subject=state["spec"]["subject"])
    experts = expert_records(records, pmids, system)
    model, tokenizer = load_for_inference(training["base_model_path"], training["adapter_dir"],
                                          service.settings.threads)
    base, tuned, nll = compare_on_experts(model, tokenizer, experts, split_of_abstracts(state["dataset"]["paths"]),
                                          args)
    return {"bench": "pubmedqa_group", "mesh": term, "abstracts": len(pmids), "expert_questions": len(experts),
            "expert_answer_nll": nll,
            "expert_rouge_l": {"base": base["rouge_l"], "tuned": tuned["rouge_l"],
                               "generated": min(args.generate, len(experts))},
            "samples": {"base": base["sample_answer"], "tuned": tuned["sample_answer"]}, **figures,
            "loadavg": [round(x, 1) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--per-group", type=int, default=36)
    parser.add_argument("--only", help="run one group: its MeSH term")
    parser.add_argument("--generate", type=int, default=16, help="expert questions answered by generation")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-rounds", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="job option section.key=value")
    parser.add_argument("--home", default="/tmp/ftagent-bench-pubmedqa")
    parser.add_argument("--base-home", default="/tmp/ftagent-bench-demo", help="a home with SmolLM2 converted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", default=str(Path(tempfile.gettempdir()) / "ftagent-pubmedqa-docs"),
                        help="where each group's abstracts are written (a fixed path: the same split every run)")
    args = parser.parse_args()
    records = json.loads(PUBMEDQA.read_text())
    home = Path(args.home)
    prepare_home(home, Path(args.base_home))
    service = JobService(resolve_settings({"home": home}))
    print(json.dumps({"bench": "machine", "cpu": platform.processor() or platform.machine(),
                      "cores": os.cpu_count(), "bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text(),
                      "loadavg": [round(x, 1) for x in os.getloadavg()], "options": args.set}), flush=True)
    results = []
    for term, pmids in mesh_groups(records, args.groups, args.per_group, args.seed):
        if args.only and term != args.only:
            continue
        results.append(run_group(service, records, term, pmids, args, parse_sets(args.set)))
        print(json.dumps(results[-1]), flush=True)
    scored = [r for r in results if "expert_answer_nll" in r]
    if scored:
        def mean(path: tuple[str, ...]) -> float:
            values = []
            for r in scored:
                value: Any = r
                for key in path:
                    value = value[key]
                values.append(value)
            return round(sum(values) / len(values), 4)

        print(json.dumps({"bench": "pubmedqa_mean", "groups": len(scored), "of": len(results),
                          "expert_answer_nll_drop": mean(("expert_answer_nll", "drop")),
                          "expert_rouge_l": {"base": mean(("expert_rouge_l", "base")),
                                             "tuned": mean(("expert_rouge_l", "tuned"))},
                          "cloze_share": mean(("cloze_share",)), "words_per_qa_row": mean(("words_per_qa_row",)),
                          "job_seconds": mean(("job_seconds",)),
                          "gates_passed": sum(bool(r["gates_passed"]) for r in scored)}))


if __name__ == "__main__":
    main()
