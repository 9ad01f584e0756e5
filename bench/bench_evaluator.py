"""The evaluator's comparison (tuned vs base) on a finished job, timed per answer batch size, as JSON lines.

It runs `compare_with_base` the way the evaluator node does (the job's test split, general texts and general
questions, the job's evaluation settings) once per `--runs` item (answer batch size : precision), and prints
one line per run (wall and CPU seconds, the scores) and a comparison line per later run against the first:
the seconds ratio, whether every answer is the same, and the largest relative change of a score. Needs a finished job
(`bench/bench_demo.py --fresh` leaves one in /tmp/ftagent-bench-demo). Usage:
  python bench/bench_evaluator.py [--home /tmp/ftagent-bench-demo] [--runs 8:fp32,48:auto]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from tools.evaluation.scoring import compare_with_base, general_qa, general_texts, read_qa_set
from tools.hardware import detect_hardware


def finished_job(home: Path) -> tuple[Path, Path, Path]:
    """(job folder, base model folder, last round's adapter) of the home's newest job with an adapter."""
    for job in sorted((home / "jobs").iterdir(), reverse=True):
        adapters = sorted((job / "adapters").glob("round-*"))
        if adapters:
            base = json.loads((adapters[-1] / "training_config.json").read_text())["base_model_path"]
            return job, Path(base), adapters[-1]
    raise SystemExit(f"no finished job with an adapter under {home}/jobs: run bench/bench_demo.py --fresh first")


def job_spec(job: Path) -> dict:
    """The spec the job ran with (its intake event), {} when the event log has none."""
    for line in (job / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("phase") == "intake" and "spec" in (event.get("data") or {}):
            return event["data"]["spec"]
    return {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default="/tmp/ftagent-bench-demo")
    parser.add_argument("--runs", default="8:fp32,48:auto",
                        help="batch:precision items, comma-separated; the first is the reference")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    job, base, adapter = finished_job(Path(args.home))
    evaluation = job_spec(job).get("evaluation", {})
    system_prompt = json.loads((job / "dataset" / "val.jsonl").open().readline())["messages"][0]["content"]
    records = read_qa_set(job / "dataset" / "test.jsonl", system_prompt)
    texts = general_texts(evaluation.get("general_texts", 30))
    questions = general_qa(system_prompt, evaluation.get("general_qa", 8))
    hardware = detect_hardware()
    print(json.dumps({"bench": "machine", "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "bf16": hardware.bf16, "bf16_tiles": hardware.bf16_tiles,
                      "loadavg": [round(x, 1) for x in os.getloadavg()], "job": job.name,
                      "test_records": len(records), "general_questions": len(questions)}))
    runs = []
    for item in args.runs.split(","):
        batch, _, precision = item.partition(":")
        started, cpu = time.time(), time.process_time()
        comparison = compare_with_base(str(base), str(adapter), records, texts,
                                       max_new_tokens=evaluation.get("max_new_tokens", 64),
                                       generate_limit=evaluation.get("generate_limit", 40), threads=args.threads,
                                       general_questions=questions, precision=precision or "auto",
                                       answer_batch=int(batch))
        line = {"bench": "evaluator", "answer_batch": int(batch), "precision": precision or "auto",
                "wall_seconds": round(time.time() - started, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
                "tuned": scores(comparison.tuned), "base": scores(comparison.base),
                "loadavg": [round(x, 1) for x in os.getloadavg()]}
        print(json.dumps(line), flush=True)
        runs.append((line, comparison))
    (first, reference), rest = runs[0], runs[1:]
    for line, comparison in rest:
        change = max(abs(line[m][k] - first[m][k]) / abs(first[m][k]) for m in ("tuned", "base")
                     for k in first[m] if first[m][k])
        print(json.dumps({"event": "comparison", "run": f"{line['answer_batch']}:{line['precision']}",
                          "vs": f"{first['answer_batch']}:{first['precision']}",
                          "wall_seconds_ratio": round(first["wall_seconds"] / line["wall_seconds"], 2),
                          "same_answers": comparison.per_example == reference.per_example
                          and comparison.general_per_example == reference.general_per_example,
                          "largest_score_change": round(change, 5)}))


def scores(model_scores) -> dict[str, float]:
    return {key: round(value, 5) for key, value in model_scores.to_dict().items()
            if key in ("answer_nll", "rouge_l", "token_f1", "general_perplexity", "general_qa_rouge_l")
            and value is not None}

if __name__ == "__main__":
    main()
