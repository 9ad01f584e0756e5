"""How one optimizer step of a LoRA run fits in memory: the step's batch (each rank's share of it)
split into micro-batches, with activation checkpointing only when even one example per micro-batch
would not fit without it (tools.hardware.plan_memory estimates; this module gives it the run's
sizes)."""

from __future__ import annotations

from typing import Any

from tools.hardware import MemoryPlan, ModelShape, available_memory_bytes, plan_memory
from tools.training.config import TrainingConfig, TrainingError

# Padded tokens per micro-batch on a CPU through transformers' layers: bigger micro-batches ran a little
# faster but held more activations (eager attention's fp32 and bf16 probabilities; SmolLM2-135M, batch 8
# of <=400 tokens: 3.0 GB at 1024).
CPU_MICRO_BATCH_TOKENS = 512
# Through the fused layers (tools.training.fused_decoder), which keep fewer activations, in bf16: their
# products run 15-20% faster at 1024 rows than at 512 (SmolLM2-135M, 2-core AMX Xeon: 466 -> 554 effective
# tokens/s, peak RSS 2.8 GB); 2048 gained 6% more for 1 GB more. fp32 values take twice the bytes, so an
# fp32 run keeps 512 (at 1024 its peak RSS was 4.2 GB).
CPU_FUSED_MICRO_BATCH_TOKENS = 1024
# the longest (padded) example for which a CPU run trains with eager attention (transformers' or the fused
# layers' own): its scores stay a few MB a layer (SmolLM2-135M: 9 heads x 512 x 512 x 2 bytes); longer, SDPA
EAGER_ATTENTION_MAX_TOKENS = 512


def micro_token_target(device: str, fused: bool = False, bf16: bool = False) -> int | None:
    """The micro-batch size in padded tokens when none is set: on a CPU CPU_MICRO_BATCH_TOKENS, or
    CPU_FUSED_MICRO_BATCH_TOKENS through the fused layers in bf16; a GPU takes what memory allows (None)."""
    if device != "cpu":
        return None
    return CPU_FUSED_MICRO_BATCH_TOKENS if fused and bf16 else CPU_MICRO_BATCH_TOKENS


def plan_step_memory(
    model: Any, longest: int, per_rank: int, config: TrainingConfig, bf16: bool, device: str,
    fused: bool = False,
) -> MemoryPlan:
    """The plan for `per_rank` examples of at most `longest` tokens per step in the memory free now;
    a TrainingError when nothing fits and the accumulation was not set by hand."""
    from tools.training.linear_cross_entropy import DEFAULT_CHUNK_ROWS

    plan = plan_memory(
        model_shape(model),
        longest,
        per_rank,
        available_memory_bytes(),
        config.gradient_accumulation,
        config.gradient_checkpointing,
        value_bytes=2 if bf16 else 4,
        head_chunk_rows=DEFAULT_CHUNK_ROWS,
        max_micro_tokens=config.micro_batch_tokens or micro_token_target(device, fused, bf16),
    )
    if not plan.fits and config.gradient_accumulation is None:
        raise TrainingError(f"not enough memory to train: {plan.note}")
    return plan


def model_shape(model: Any) -> ModelShape:
    """Sizes of a transformers causal LM, for the memory plan."""
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    return ModelShape(
        hidden=hidden,
        intermediate=int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden),
        layers=int(getattr(config, "num_hidden_layers", 1) or 1),
        heads=int(getattr(config, "num_attention_heads", 1) or 1),
        vocab=int(getattr(config, "vocab_size", 0) or 0),
        parameters=sum(p.numel() for p in model.parameters()),
    )
