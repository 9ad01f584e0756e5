"""The demo job end to end with the real embedded SmolLM2: wall and CPU time per phase and training tokens/s.

Prints one JSON line. Usage: python bench/bench_demo.py [--home DIR] [--fresh]
(--fresh starts from an empty home, so the one-time GGUF -> safetensors conversion is included).
On a shared machine wall seconds say more about the other processes than about the job: the line also
gives this process's CPU seconds per phase (a listener reads the clock at every event), the CPU seconds
of the long tasks inside a phase (embedding chunks, each model's answers), the load average at the start
and end, and the CPUs it was allowed (pin it: `taskset -c 1 ... FTAGENT_THREADS=1`)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from agent.service import JobService
from agent.settings import resolve_settings
from graphs.state import plain_state

REPO = Path(__file__).resolve().parents[1]
PHASE_ORDER = ("intake", "researcher", "curator", "generator", "trainer", "evaluator", "critic", "deployer")


def phase_totals(marks: list[tuple[str, float]], started: float, ended: float) -> dict[str, float]:
    """Each phase's share of [started, ended], from (phase, clock reading) at each of its events in order.
    A run of one phase's events ends at its last event and begins where the run before it ended: the
    researcher, curator and generator emit their "phase" event when they finish, the trainer and evaluator
    when they start as well, so a phase's first event is no start time. What follows the last event (the
    job's end) goes to the last phase."""
    runs: list[tuple[str, float]] = []  # (phase, clock at its run's last event)
    for phase, reading in marks:
        if runs and runs[-1][0] == phase:
            runs[-1] = (phase, reading)
        else:
            runs.append((phase, reading))
    if runs:
        runs[-1] = (runs[-1][0], ended)
    totals: dict[str, float] = {}
    for (phase, end), begin in zip(runs, [started] + [end for _, end in runs[:-1]], strict=True):
        totals[phase] = round(totals.get(phase, 0.0) + end - begin, 1)
    return totals


def phase_seconds(events: list[dict], started: float, ended: float) -> dict[str, float]:
    """Wall seconds spent in each phase (see `phase_totals`)."""
    return phase_totals([(e["phase"], e["ts"]) for e in events if e["phase"] in PHASE_ORDER], started, ended)


class CpuClock:
    """An event listener: this process's CPU seconds (children's too) at each event of a phase, and the CPU
    seconds from the first to the last progress tick of each task (a task's own cost, without the phase's
    other work)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self.tasks: dict[str, list[float]] = {}

    @staticmethod
    def now() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def __call__(self, event: dict[str, Any]) -> None:
        phase, now = event.get("phase"), self.now()
        if phase in PHASE_ORDER:
            self.marks.append((phase, now))
        if event.get("kind") == "progress":
            span = self.tasks.setdefault(f"{phase}: {event['message']}", [now, now])
            span[1] = now

    def phase_cpu_seconds(self, started: float, ended: float) -> dict[str, float]:
        return phase_totals(self.marks, started, ended)

    def task_cpu_seconds(self) -> dict[str, float]:
        return {task: round(end - begin, 1) for task, (begin, end) in self.tasks.items()}


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
    clock, load_before = CpuClock(), round(os.getloadavg()[0], 2)
    started, cpu_started = time.time(), clock.now()
    state = plain_state(service.run(record.job_id, (clock,)))
    ended, cpu_ended = time.time(), clock.now()
    events = [json.loads(line) for line in service.settings.job_paths(record.job_id).events.read_text().splitlines()]
    evaluation, training = state.get("evaluation") or {}, state.get("training") or {}
    print(json.dumps({
        "bench": "demo_job", "job_id": record.job_id, "wall_seconds": round(ended - started, 1),
        "phases_seconds": phase_seconds(events, started, ended),
        "cpu_seconds": round(cpu_ended - cpu_started, 1),
        "phases_cpu_seconds": clock.phase_cpu_seconds(cpu_started, cpu_ended),
        "tasks_cpu_seconds": clock.task_cpu_seconds(),
        "load_average_1m": {"start": load_before, "end": round(os.getloadavg()[0], 2)},
        "pinned_cpus": sorted(os.sched_getaffinity(0)), "threads": service.settings.threads,
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
