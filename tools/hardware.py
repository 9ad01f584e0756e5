"""What this machine can do for training: device, bf16 support, threads, memory."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "fp32", "bf16"]  # what a user asks for; "auto" = bf16 where the hardware has it
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Hardware:
    device: str  # "cuda", "mps" or "cpu"
    bf16: bool
    cpu_threads: int
    total_memory_gb: float
    note: str  # why this device and precision, for the job's events
    # bf16 matrix units (Intel AMX): a bf16 product of 8 rows and more runs 3-7x the fp32 rate on one
    # core, where avx512_bf16 alone gains little below a few dozen rows
    bf16_tiles: bool = False


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _cpu_flags() -> set[str]:
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
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
    native = "with native bf16 (avx512_bf16/amx): bf16 base weights"
    note = "no GPU; CPU " + (native if bf16 else "without native bf16: fp32")
    return Hardware("cpu", bf16, threads, memory, note, bf16_tiles="amx_bf16" in flags)


def matmul_gflops(dtype_name: str, threads: int | None = None, size: int = 1024, seconds: float = 1.5) -> float:
    """Measured GFLOP/s of a square matrix product in this dtype (float32, bfloat16) at this thread count:
    the ceiling the benchmarks compare model FLOPs against."""
    import time

    import torch

    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e9


def machine_report(threads: int | None = None) -> dict:
    """The benchmarks' machine line: CPU model and vector/matrix flags, measured fp32 and bf16 matmul rates,
    and the load average (the machine may be shared; load explains most of the spread between runs)."""
    import torch

    flags = _cpu_flags()
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")), "")
    return {"event": "machine", "cpu": model, "cpu_count": os.cpu_count(),
            "flags": sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2", "avx512_vnni"))),
            "native_bf16": bool(flags & {"avx512_bf16", "amx_bf16"}), "torch": torch.__version__,
            "threads": threads or torch.get_num_threads(),
            "load_avg_before": [round(x, 2) for x in os.getloadavg()],
            "fp32_matmul_gflops": round(matmul_gflops("float32", threads), 1),
            "bf16_matmul_gflops": round(matmul_gflops("bfloat16", threads), 1),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def resolve_precision(requested: str, hardware: Hardware | None = None) -> tuple[str, str]:
    """("bf16" or "fp32", why) for a requested precision on this machine: "auto" takes bf16 only where the
    hardware computes in it natively; an explicit "bf16" is honoured anywhere (emulated, slower, without)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested != "auto":
        return requested, f"precision {requested} as configured"
    hardware = hardware or detect_hardware()
    return ("bf16" if hardware.bf16 else "fp32"), f"precision auto: {hardware.note}"


def available_memory_bytes() -> int:
    """Memory this process can still use (psutil's "available": free plus reclaimable caches)."""
    import psutil

    return int(psutil.virtual_memory().available)


def process_rss_mb() -> float:
    """Resident memory of this process in MiB, for the per-step metrics."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def return_freed_memory() -> None:
    """Give the pages the C heap holds free back to the system (glibc's malloc_trim; elsewhere nothing).

    Loading a model converts its weights tensor by tensor and frees the originals; glibc keeps those
    pages, so they stay in the process's RSS under everything allocated after them. Trimmed once after
    the trainer's setup: SmolLM2-135M, bf16, bench_trainer's corpus, 20 steps on a 2-core AMX Xeon: peak
    RSS 2913 -> 2683 MB, the same speed. (After every step it would cost 11%: the pages come back as
    page faults.)"""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return


@dataclass(frozen=True)
class ModelShape:
    """What the activation estimate needs to know about a decoder-only transformer."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int
    parameters: int


@dataclass(frozen=True)
class MemoryPlan:
    micro_batch: int  # examples per micro-batch at the longest sequence
    gradient_accumulation: int
    gradient_checkpointing: bool
    estimated_bytes: int
    budget_bytes: int
    note: str
    micro_batch_tokens: int | None = None  # padded tokens per micro-batch (None: a fixed example count)

    @property
    def fits(self) -> bool:
        """Whether the estimate stays within the budget."""
        return self.estimated_bytes <= self.budget_bytes


def activation_bytes_per_token(shape: ModelShape, seq_len: int, checkpointing: bool, value_bytes: int = 4,
                               chunked_head: bool = False) -> int:
    """Rough bytes kept for the backward pass per token in LoRA training (`value_bytes`: 4 for fp32
    activations, 2 for a bf16 base).

    Per layer a Llama-style block keeps ~20 hidden-sized and ~6 intermediate-sized tensors (norm inputs,
    q/k/v/o, LoRA dropout copies, gate/up/act/product) plus the attention weights of the math SDPA path
    (heads x seq). With checkpointing only each layer's input stays, plus one layer recomputed at a time.
    The loss head keeps logits, softmax and their gradient (~3 x vocab) for the supervised tokens unless
    it is chunked (`chunked_head`, tools.training.linear_cross_entropy: then a fixed `chunked_head_bytes` instead)."""
    per_layer = 20 * shape.hidden + 6 * shape.intermediate + shape.heads * seq_len
    kept = shape.layers * shape.hidden + per_layer if checkpointing else shape.layers * per_layer
    return value_bytes * kept + (0 if chunked_head else 4 * 3 * shape.vocab)


def chunked_head_bytes(shape: ModelShape, chunk_rows: int) -> int:
    """The chunked loss head's transient memory: one chunk's logits in fp32 and their bf16/fp32 copies."""
    return 3 * 4 * chunk_rows * shape.vocab


def plan_memory(shape: ModelShape, seq_len: int, batch_size: int, available: int,
                accumulation: int | None = None, checkpointing: bool | None = None,
                fraction: float = 0.6, value_bytes: int = 4, max_micro_tokens: int | None = None,
                head_chunk_rows: int | None = None) -> MemoryPlan:
    """Micro-batch, gradient accumulation and checkpointing that fit `fraction` of the available memory.

    The optimizer-step batch stays `batch_size` examples (split into micro-batches); checkpointing is
    turned on only when even one example per micro-batch would not fit without it. Explicit
    `accumulation` / `checkpointing` values are kept as given. With `max_micro_tokens`, micro-batches
    hold at most that many padded tokens (the trainer then packs each step's examples by their real
    lengths): on a CPU a matrix product of a few hundred rows already runs near full rate, so larger micro-batches
    only cost memory. `value_bytes`: 2 for a bf16 base, 4 for fp32; `head_chunk_rows`: the loss head is
    chunked (tools.training.linear_cross_entropy) with this many positions per chunk."""
    head = chunked_head_bytes(shape, head_chunk_rows) if head_chunk_rows else 0
    budget = int(fraction * available) - value_bytes * shape.parameters - head  # weights stay resident
    sizes = _ActivationSizes(shape, seq_len, value_bytes, bool(head_chunk_rows))
    if max_micro_tokens and not accumulation:
        return _token_plan(sizes, batch_size, budget, checkpointing, max_micro_tokens)
    options = [checkpointing] if checkpointing is not None else [False, True]
    for use_checkpointing in options:
        per_example = sizes.per_token(use_checkpointing) * seq_len
        steps = [accumulation] if accumulation else [a for a in range(1, batch_size + 1) if batch_size % a == 0
                                                     or a == batch_size]
        for accum in steps:
            micro = math.ceil(batch_size / accum)
            if micro * per_example <= budget or (accumulation and use_checkpointing == options[-1]):
                note = (f"{micro} x {accum} accumulation for {batch_size} examples of <= {seq_len} tokens: "
                        f"~{micro * per_example / 2**30:.1f} GiB of activations within a "
                        f"{max(budget, 0) / 2**30:.1f} GiB budget"
                        + ("; gradient checkpointing on to fit" if use_checkpointing else ""))
                return MemoryPlan(micro, accum, use_checkpointing, micro * per_example, budget, note)
    return _hopeless(sizes, batch_size, budget)


@dataclass(frozen=True)
class _ActivationSizes:
    shape: ModelShape
    seq_len: int
    value_bytes: int
    chunked_head: bool

    def per_token(self, checkpointing: bool) -> int:
        return activation_bytes_per_token(self.shape, self.seq_len, checkpointing, self.value_bytes,
                                          self.chunked_head)


def _token_plan(sizes: _ActivationSizes, batch_size: int, budget: int, checkpointing: bool | None,
                max_micro_tokens: int) -> MemoryPlan:
    """Micro-batches of at most `max_micro_tokens` padded tokens (fewer when memory is short)."""
    seq_len = sizes.seq_len
    for use_checkpointing in [checkpointing] if checkpointing is not None else [False, True]:
        per_token = sizes.per_token(use_checkpointing)
        wanted = min(max(max_micro_tokens, seq_len), batch_size * seq_len)  # one example even when longer
        tokens = min(wanted, max(0, budget) // per_token)
        if tokens >= seq_len:
            micro = min(batch_size, tokens // seq_len)
            accum = math.ceil(batch_size / micro)
            note = (f"micro-batches of <= {tokens} padded tokens ({micro} examples of the longest, {seq_len} "
                    f"tokens; ~{accum} per step of {batch_size}): ~{tokens * per_token / 2**30:.1f} GiB of "
                    f"activations within a {max(budget, 0) / 2**30:.1f} GiB budget"
                    + ("; gradient checkpointing on to fit" if use_checkpointing else ""))
            return MemoryPlan(micro, accum, use_checkpointing, tokens * per_token, budget, note, tokens)
    return _hopeless(sizes, batch_size, budget)


def _hopeless(sizes: _ActivationSizes, batch_size: int, budget: int) -> MemoryPlan:
    per_example = sizes.per_token(True) * sizes.seq_len
    return MemoryPlan(1, batch_size, True, per_example, budget,
                      f"even one example of {sizes.seq_len} tokens (~{per_example / 2**30:.1f} GiB) exceeds the "
                      f"{max(budget, 0) / 2**30:.1f} GiB budget")
