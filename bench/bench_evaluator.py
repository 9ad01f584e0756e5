"""The evaluator's comparison (tuned vs base) on a finished job, timed per answer batch size, as JSON lines.

It runs `compare_with_base` the way the evaluator node does (the job's test split, general texts and general
questions, the job's evaluation settings) once per `--batches` value, taking turns so a drift in load hits all
alike, and prints one line per run (wall and CPU seconds, the scores) and a comparison line: the seconds
ratio against the first batch size and whether every answer and score is the same. Needs a finished job
(`bench/bench_demo.py --fresh` leaves one in /tmp/ftagent-bench-demo). Usage:
  python bench/bench_evaluator.py [--home /tmp/ftagent-bench-demo] [--batches 8,48] [--precision auto]
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
    parser.add_argument("--batches", default="8,48", help="answer batch sizes, comma-separated; the first is the reference")
    parser.add_argument("--precision", default="auto")
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
    for batch in [int(b) for b in args.batches.split(",")]:
        started, cpu = time.time(), time.process_time()
        comparison = compare_with_base(str(base), str(adapter), records, texts,
                                       max_new_tokens=evaluation.get("max_new_tokens", 64),
                                       generate_limit=evaluation.get("generate_limit", 40), threads=args.threads,
                                       general_questions=questions, precision=args.precision, answer_batch=batch)
        line = {"bench": "evaluator", "answer_batch": batch, "wall_seconds": round(time.time() - started, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
                "tuned": comparison.tuned.to_dict(), "base": comparison.base.to_dict(),
                "loadavg": [round(x, 1) for x in os.getloadavg()]}
        print(json.dumps(line), flush=True)
        runs.append((line, comparison))
    (first, reference), rest = runs[0], runs[1:]
    for line, comparison in rest:
        print(json.dumps({"event": "comparison", "answer_batch": line["answer_batch"], "vs": first["answer_batch"],
                          "wall_seconds_ratio": round(first["wall_seconds"] / line["wall_seconds"], 2),
                          "same_answers": comparison.per_example == reference.per_example
                          and comparison.general_per_example == reference.general_per_example,
                          "same_scores": line["tuned"] == first["tuned"] and line["base"] == first["base"]}))


if __name__ == "__main__":
    main()
