"""What this machine can do for training: device, bf16 support, threads, memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hardware:
    device: str  # "cuda", "mps" or "cpu"
    bf16: bool
    cpu_threads: int
    total_memory_gb: float
    note: str  # why this device and precision, for the job's events


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


def detect_hardware() -> Hardware:
    import torch

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = _memory_gb()
    if torch.cuda.is_available():
        return Hardware("cuda", torch.cuda.is_bf16_supported(), threads, memory,
                        f"CUDA GPU {torch.cuda.get_device_name(0)}")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return Hardware("mps", False, threads, memory, "Apple GPU (MPS)")
    flags = _cpu_flags()
    bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    note = "no GPU; CPU " + ("with native bf16 (avx512_bf16/amx): bf16 autocast" if bf16 else "without native bf16: fp32")
    return Hardware("cpu", bf16, threads, memory, note)
