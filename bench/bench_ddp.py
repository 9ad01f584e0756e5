"""Training in 2 torchrun processes (DDP, gloo) vs 1 process on this CPU, 1 thread each: training
tokens/s of both, the ratio, wall time with the processes' start-up, and how far apart the two runs
end (the same effective batch: float noise only). This machine has 2 cores, so expect little
speed-up; a GPU machine's figure comes from bench/gpu_check.py (torchrun_2gpu).

    .venv/bin/python bench/bench_ddp.py [--model smollm2|PATH] [--steps 8] [--batch-size 8]

Prints one JSON line per run and one summary line."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tools.hardware import machine_report


def _base(model: str) -> Path:
    from tools.base_models import DEFAULT_BASE_MODEL, resolve_base_model

    home = (
        Path(tempfile.gettempdir()) / "ftagent-bench"
    )  # SmolLM2 converted once, as bench_trainer does
    return resolve_base_model(DEFAULT_BASE_MODEL if model == "smollm2" else model, home)


def run(base: Path, train: list[dict], val: list[dict], processes: int, work: Path, args) -> dict:
    from safetensors.torch import load_file

    from tools.training.backends import train_lora
    from tools.training.config import TrainingConfig

    config = TrainingConfig(
        base_model_path=str(base),
        output_dir=str(work / "adapter"),
        checkpoint_dir=str(work / "checkpoints"),
        max_steps=args.steps,
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len,
        threads=1,
        nproc=processes,
        precision=args.precision,
        lora_dropout=0.0,
        checkpoint_every=10_000,
        early_stopping_patience=100,
    )
    started = time.perf_counter()
    result = train_lora(config, train, val)
    wall = time.perf_counter() - started
    adapter = load_file(str(work / "adapter" / "adapter_model.safetensors"))
    return {
        "event": "run",
        "processes": result.processes,
        "strategy": result.distributed,
        "backend": result.distributed_backend,
        "steps": result.steps,
        "train_tokens": result.train_tokens,
        "tokens_per_s": round(result.tokens_per_second, 1),
        "training_s": round(result.wall_seconds, 1),
        "wall_with_startup_s": round(wall, 1),
        "final_loss": result.loss_history[-1],
        "precision": result.precision,
        "_adapter": adapter,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="smollm2", help="smollm2 (the embedded default) or a model folder"
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    from bench_trainer import corpus_records  # bench/ is on the path: this file runs as a script
    from transformers import AutoTokenizer

    print(json.dumps(machine_report(threads=1)), flush=True)
    base = _base(args.model)
    train, val = corpus_records(
        AutoTokenizer.from_pretrained(str(base)), args.steps * args.batch_size, 8
    )
    runs = {}
    with tempfile.TemporaryDirectory(prefix="ftagent-bench-ddp-") as folder:
        for processes in (1, 2):
            runs[processes] = run(base, train, val, processes, Path(folder) / str(processes), args)
            print(
                json.dumps({k: v for k, v in runs[processes].items() if k != "_adapter"}),
                flush=True,
            )
    one, two = runs[1].pop("_adapter"), runs[2].pop("_adapter")
    print(
        json.dumps(
            {
                "event": "summary",
                "model": str(base),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "tokens_per_s_1": runs[1]["tokens_per_s"],
                "tokens_per_s_2": runs[2]["tokens_per_s"],
                "ratio_2_over_1": round(
                    runs[2]["tokens_per_s"] / max(runs[1]["tokens_per_s"], 1e-9), 2
                ),
                "startup_overhead_s": round(
                    runs[2]["wall_with_startup_s"]
                    - runs[2]["training_s"]
                    - (runs[1]["wall_with_startup_s"] - runs[1]["training_s"]),
                    1,
                ),
                "final_loss_difference": abs(runs[1]["final_loss"] - runs[2]["final_loss"]),
                "adapter_max_abs_difference": max(
                    float((one[k] - two[k]).abs().max()) for k in one
                ),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
