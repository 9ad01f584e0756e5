"""GPU check: one command for a person with a CUDA GPU, to run what this project cannot run on its
CPU machines, each part in its own child process and each printing one JSON line:

- environment:   torch, CUDA, the GPUs
- unsloth:       the Unsloth backend trains LoRA on SmolLM2 (tokens/s, peak GPU memory, final loss)
- qlora:         the peft recipe with 4-bit base weights (bitsandbytes)
- torchrun_2gpu: the peft recipe on 1 GPU, then 2 torchrun processes (DDP, NCCL) on 2 GPUs: scaling
- vllm:          `ftagent serve --engine vllm`'s command serving a freshly tuned adapter as a LoRA
                 module; concurrent chat requests to it (completion tokens/s, peak GPU memory)

A part that cannot run prints {"part": ..., "ran": false, "why": ...} with the reason (no CUDA, a
package missing, one GPU), never a traceback; a part that fails prints "ran": false with its error.

    .venv/bin/python bench/gpu_check.py [--steps 30] [--home /tmp/ftagent-gpu-check] [--part NAME]
    (on a CUDA machine: pip install -e '.[cuda]' first; vllm separately, a release built for this
    torch)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ("environment", "unsloth", "qlora", "torchrun_2gpu", "vllm")


def cuda_state() -> tuple[bool, int, str]:
    """(CUDA usable, GPU count, why not) without starting anything heavy."""
    import torch

    if not torch.cuda.is_available():
        build = (
            "a CPU-only build"
            if torch.version.cuda is None
            else f"built for CUDA {torch.version.cuda}"
        )
        return (
            False,
            0,
            f"no CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, {build})",
        )
    return True, torch.cuda.device_count(), ""


def missing(module: str) -> str | None:
    return None if importlib.util.find_spec(module) is not None else f"{module} is not installed"


def why_not(part: str) -> str | None:
    """The reason a part cannot run here, or None."""
    if part == "environment":
        return None
    cuda, gpus, reason = cuda_state()
    if not cuda:
        return reason
    if part == "unsloth":
        return missing("unsloth") and "unsloth is not installed: pip install -e '.[cuda]'"
    if part == "qlora":
        return missing("bitsandbytes") and "bitsandbytes is not installed: pip install -e '.[cuda]'"
    if part == "torchrun_2gpu":
        if gpus < 2:
            return f"needs 2 GPUs, this machine has {gpus}"
        return None
    if part == "vllm":
        return (
            missing("vllm")
            and "vllm is not installed: pip install vllm (a release built for this torch)"
        )
    raise ValueError(part)


# -- the parts (each runs in a child process) -----------------------------------------------------
def environment(args) -> dict:
    import torch

    cuda, gpus, reason = cuda_state()
    info = {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda": cuda,
        "gpus": gpus,
    }
    if cuda:
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(gpus)]
        info["memory_gib"] = [
            round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1) for i in range(gpus)
        ]
    else:
        info["why_no_gpu"] = reason
    return info


def _training_data(base: Path) -> tuple[list[dict], list[dict]]:
    # bench/ is on the path: this file runs as a script
    from bench_trainer import corpus_records
    from transformers import AutoTokenizer

    return corpus_records(AutoTokenizer.from_pretrained(str(base)), 240, 16)


def _base_model(args) -> Path:
    from tools.models.catalogue import DEFAULT_BASE_MODEL, resolve_base_model

    return resolve_base_model(DEFAULT_BASE_MODEL, Path(args.home))


def train_part(args, backend: str, qlora: bool) -> dict:
    import torch

    from tools.training.backends import train_lora
    from tools.training.config import TrainingConfig

    base = _base_model(args)
    train, val = _training_data(base)
    work = Path(args.home) / f"gpu-check-{backend}{'-qlora' if qlora else ''}"
    config = TrainingConfig(
        base_model_path=str(base),
        output_dir=str(work / "adapter"),
        checkpoint_dir=str(work / "checkpoints"),
        max_steps=args.steps,
        batch_size=8,
        max_seq_len=512,
        backend=backend,
        qlora=qlora,
        checkpoint_every=10_000,
    )
    torch.cuda.reset_peak_memory_stats()
    result = train_lora(config, train, val)
    return {
        "backend": result.backend,
        "qlora": qlora,
        "steps": result.steps,
        "tokens_per_s": round(result.tokens_per_second, 1),
        "train_tokens": result.train_tokens,
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "train_loss": round(result.train_loss, 4),
        "val_loss": result.val_loss,
        "precision": result.precision,
        "adapter": result.adapter_dir,
    }


def torchrun_part(args) -> dict:
    """The peft recipe in one process on one GPU, then in two torchrun processes (DDP, NCCL) on two
    GPUs with the same effective batch: tokens/s of both, the scaling ratio, and how far apart the two
    adapters are (float noise only, if DDP splits the batch right)."""
    from safetensors.torch import load_file

    from tools.training.backends import train_lora
    from tools.training.config import TrainingConfig

    base = _base_model(args)
    train, val = _training_data(base)
    runs = {}
    for processes in (1, 2):
        work = Path(args.home) / f"gpu-check-torchrun-{processes}"
        config = TrainingConfig(
            base_model_path=str(base),
            output_dir=str(work / "adapter"),
            checkpoint_dir=str(work / "checkpoints"),
            max_steps=args.steps,
            batch_size=8,
            max_seq_len=512,
            backend="peft",
            nproc=processes,
            distributed="ddp",
            precision="fp32",
            lora_dropout=0.0,
            checkpoint_every=10_000,
        )
        runs[processes] = (train_lora(config, train, val), work / "adapter" / "adapter_model.safetensors")
    one, two = (load_file(str(path)) for _, path in runs.values())
    (single, _), (double, _) = runs[1], runs[2]
    return {
        "processes": double.processes,
        "strategy": double.distributed,
        "backend": double.distributed_backend,
        "tokens_per_s_1gpu": round(single.tokens_per_second, 1),
        "tokens_per_s_2gpu": round(double.tokens_per_second, 1),
        "scaling": round(double.tokens_per_second / max(single.tokens_per_second, 1e-9), 2),
        "final_loss_1gpu": round(single.loss_history[-1], 5),
        "final_loss_2gpu": round(double.loss_history[-1], 5),
        "adapter_max_abs_difference": max(float((one[k] - two[k]).abs().max()) for k in one),
    }


def vllm_part(args) -> dict:
    import httpx

    from tools.serving.vllm_engine import (
        VllmClient,
        VllmPlan,
        lora_rank_for,
        vllm_command,
        vllm_environment,
    )

    adapter = train_part(args, "peft", False)["adapter"]
    base = _base_model(args)
    plan = VllmPlan(
        base_model_path=str(base),
        base_name="smollm2",
        lora_modules={"tuned": adapter},
        port=args.vllm_port,
        max_lora_rank=lora_rank_for([adapter]),
        extra_args=["--gpu-memory-utilization", "0.5", "--max-model-len", "2048"],
    )
    client = VllmClient(f"http://127.0.0.1:{args.vllm_port}")
    server = subprocess.Popen(vllm_command(plan), env=vllm_environment())
    try:
        deadline = time.monotonic() + 900
        while not client.healthy():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vLLM did not come up (exit code {server.poll()})")
            time.sleep(1)
        return {
            **_chat_load(httpx, client.base_url, args.requests),
            "served": client.served(),
            "peak_gpu_memory_mib": _gpu_memory_used_mib(),
        }
    finally:
        server.terminate()
        server.wait(60)


def _chat_load(httpx, base_url: str, requests: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    def ask(number: int) -> int:
        body = {
            "model": "tuned",
            "max_tokens": 128,
            "temperature": 0,
            "messages": [
                {"role": "user", "content": f"What does a surface code protect? ({number})"}
            ],
        }
        reply = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=300)
        reply.raise_for_status()
        return int(reply.json()["usage"]["completion_tokens"])

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        tokens = sum(pool.map(ask, range(requests)))
    seconds = time.perf_counter() - started
    return {
        "requests": requests,
        "completion_tokens": tokens,
        "completion_tokens_per_s": round(tokens / seconds, 1),
    }


def _gpu_memory_used_mib() -> float | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return max(float(line) for line in out.split())


def run_part(part: str, args) -> dict:
    """One part in this process: its figures, or why it did not run."""
    reason = why_not(part)
    if reason:
        return {"part": part, "ran": False, "why": reason}
    runners = {
        "environment": environment,
        "unsloth": lambda a: train_part(a, "unsloth", False),
        "qlora": lambda a: train_part(a, "peft", True),
        "torchrun_2gpu": torchrun_part,
        "vllm": vllm_part,
    }
    try:
        return {"part": part, "ran": True, **runners[part](args)}
    except Exception as error:  # noqa: BLE001 - a failed part is reported and the next one runs
        return {"part": part, "ran": False, "why": f"failed: {type(error).__name__}: {error}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, help="run only this part (in this process)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--home", default=str(Path(tempfile.gettempdir()) / "ftagent-gpu-check"))
    parser.add_argument("--requests", type=int, default=64, help="chat requests sent to vLLM")
    parser.add_argument("--vllm-port", type=int, default=8701)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(run_part(args.part, args)), flush=True)
        return
    for part in PARTS:  # each in a child: its GPU memory and any patching (Unsloth) end with it
        reason = why_not(part)
        if reason:
            print(json.dumps({"part": part, "ran": False, "why": reason}), flush=True)
            continue
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--part",
                part,
                "--steps",
                str(args.steps),
                "--home",
                args.home,
                "--requests",
                str(args.requests),
                "--vllm-port",
                str(args.vllm_port),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        print(
            lines[-1]
            if lines
            else json.dumps(
                {
                    "part": part,
                    "ran": False,
                    "why": f"the check crashed ({child.returncode}): {child.stderr[-800:]}",
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
