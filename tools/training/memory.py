"""How one optimizer step of a LoRA run fits in memory: the step's batch (each rank's share of it)
split into micro-batches, with activation checkpointing only when even one example per micro-batch
would not fit without it (tools.hardware.plan_memory estimates; this module gives it the run's
sizes)."""

from __future__ import annotations

from typing import Any

from tools.hardware import MemoryPlan, ModelShape, available_memory_bytes, plan_memory
from tools.training.config import TrainingConfig, TrainingError

# Padded tokens per micro-batch on a CPU: its matrix products run near their full rate from a few
# hundred rows, so bigger micro-batches would only hold more activations.
CPU_MICRO_BATCH_TOKENS = 512


def micro_token_target(device: str) -> int | None:
    """The micro-batch size in padded tokens when none is set: CPU_MICRO_BATCH_TOKENS on a CPU; a
    GPU takes what memory allows (None)."""
    return CPU_MICRO_BATCH_TOKENS if device == "cpu" else None


def plan_step_memory(
    model: Any, longest: int, per_rank: int, config: TrainingConfig, bf16: bool, device: str
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
        max_micro_tokens=config.micro_batch_tokens or micro_token_target(device),
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
