"""The demo job end to end with the real embedded SmolLM2: wall time per phase and training tokens/s.

Prints one JSON line. Usage: python bench/bench_demo.py [--home DIR] [--fresh]
(--fresh starts from an empty home, so the one-time GGUF -> safetensors conversion is included)."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from agent.service import JobService
from agent.settings import resolve_settings
from graphs.state import plain_state

REPO = Path(__file__).resolve().parents[1]
PHASE_ORDER = ("intake", "researcher", "curator", "generator", "trainer", "evaluator", "critic", "deployer")


def phase_seconds(events: list[dict], started: float, ended: float) -> dict[str, float]:
    """Seconds spent in each phase: from its first event to the next phase's first event."""
    marks: list[tuple[float, str]] = []
    for event in events:
        if event["phase"] in PHASE_ORDER and (not marks or marks[-1][1] != event["phase"]):
            marks.append((event["ts"], event["phase"]))
    totals: dict[str, float] = {}
    boundaries = [started] + [ts for ts, _ in marks[1:]] + [ended]
    for (_, phase), begin, end in zip(marks, boundaries, boundaries[1:], strict=False):
        totals[phase] = round(totals.get(phase, 0.0) + end - begin, 1)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default="/tmp/ftagent-bench-demo")
    parser.add_argument("--fresh", action="store_true", help="empty the home first (includes the GGUF conversion)")
    args = parser.parse_args()
    home = Path(args.home)
    if args.fresh:
        shutil.rmtree(home, ignore_errors=True)
    service = JobService(resolve_settings({"home": home}))
    record = service.submit("fine-tune SmolLM2 on quantum error correction",
                            {"docs_path": str(REPO / "tools" / "eval_sets" / "demo_corpus")})
    started = time.time()
    state = plain_state(service.run(record.job_id))
    ended = time.time()
    events = [json.loads(line) for line in service.settings.job_paths(record.job_id).events.read_text().splitlines()]
    evaluation, training = state.get("evaluation") or {}, state.get("training") or {}
    print(json.dumps({
        "bench": "demo_job", "job_id": record.job_id, "wall_seconds": round(ended - started, 1),
        "phases_seconds": phase_seconds(events, started, ended),
        "train_tokens_per_second": round(training.get("tokens_per_second", 0.0), 1),
        "train_steps": training.get("steps"), "train_tokens": training.get("train_tokens"),
        "precision": training.get("precision"), "rounds": len(state.get("rounds", [])),
        "examples": (state.get("dataset") or {}).get("counts"),
        "answer_nll": {"base": evaluation.get("base", {}).get("answer_nll"),
                       "tuned": evaluation.get("tuned", {}).get("answer_nll")},
        "rouge_l": {"base": evaluation.get("base", {}).get("rouge_l"),
                    "tuned": evaluation.get("tuned", {}).get("rouge_l")},
        "general_perplexity": {"base": evaluation.get("base", {}).get("general_perplexity"),
                               "tuned": evaluation.get("tuned", {}).get("general_perplexity")},
        "gates_passed": evaluation.get("passed"), "model": (state.get("model") or {}).get("name"),
    }))


if __name__ == "__main__":
    main()
