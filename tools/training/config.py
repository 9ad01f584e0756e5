"""What a LoRA training run takes in and hands out: the job's hyperparameters and the whole run's
config (validated), the metrics of each optimizer step, the typed result, and the errors that stop a
run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from tools.hardware import Precision
from tools.refusals import RefusedToLoad


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why, before any work is lost."""


class CheckpointRefused(TrainingError, RefusedToLoad):
    """A step checkpoint that holds more than tensors and plain values: unpickling it could run
    code, so it is never loaded (checkpoints are read with torch.load(weights_only=True))."""


class LoraHyperparameters(BaseModel):
    """The knobs a job sets (the job spec's `training` section is this, with job defaults)."""

    epochs: float = Field(2.0, gt=0, le=50)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    batch_size: int = Field(8, ge=1)  # examples per optimizer step
    max_seq_len: int = Field(384, ge=16)
    checkpoint_every: int = Field(20, ge=1)
    # a job's "auto" takes the precision setting; the recipe's, the hardware
    precision: Precision = "auto"
    seed: int = 0
    # training processes (torchrun): "auto" = one per visible GPU, 1 without a GPU; N > 1 on a CPU
    # runs N processes with the gloo backend. The batch size stays examples per optimizer step over
    # all of them. One for a direct caller of the recipe; a job's default is auto (graphs/spec.py).
    nproc: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = 1
    # with several processes: DDP (each holds the model) or FSDP (sharded, for a model too big for
    # one GPU); "auto" takes FSDP only when the model's weights do not fit one GPU
    distributed: Literal["auto", "ddp", "fsdp"] = "auto"


class TrainingConfig(LoraHyperparameters):
    """Everything one training run needs; saved next to the adapter."""

    base_model_path: str
    output_dir: str
    checkpoint_dir: str
    metrics_path: str | None = None
    plot_path: str | None = None  # loss-curve PNG; default: loss_curve.png next to metrics_path
    backend: Literal["auto", "peft", "unsloth"] = "auto"
    qlora: bool = False  # 4-bit base weights via bitsandbytes; CUDA only
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    # None: from free memory and sequence length
    gradient_accumulation: int | None = Field(None, ge=1)
    gradient_checkpointing: bool | None = None  # None: only when memory needs it
    # None: on a CPU CPU_MICRO_BATCH_TOKENS, or CPU_FUSED_MICRO_BATCH_TOKENS through the fused layers in
    # bf16 (tools/training/memory.py); what memory allows on a GPU
    micro_batch_tokens: int | None = Field(None, ge=16)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    keep_checkpoints: int = Field(2, ge=1)
    early_stopping_patience: int = Field(
        2, ge=1, description="validations without a new best before stopping"
    )
    validations_per_epoch: int = Field(
        1,
        ge=1,
        le=20,
        description="validation-loss checks per epoch (early "
        "stopping and the best adapter are chosen on them)",
    )
    threads: int | None = None
    max_rollbacks: int = Field(2, ge=0)
    spike_factor: float = Field(3.0, gt=1)  # loss above this x the recent steps' highest is an anomaly
    grad_spike_factor: float = Field(10.0, gt=1)  # grad norm above this x its moving average too
    anomaly_warmup_steps: int = Field(10, ge=1)  # accepted steps before spikes count
    rollback_lr_factor: float = Field(0.5, gt=0, lt=1)
    inject_nan_at_step: int | None = Field(None, ge=1)  # test hook: NaN loss once at this step

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not value:
            raise ValueError("target_modules must name at least one module (or be 'all-linear')")
        return value


@dataclass
class StepMetrics:
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    grad_norm: float
    tokens_per_second: float
    elapsed_seconds: float
    rss_mb: float = 0.0


@dataclass
class TrainingResult:
    adapter_dir: str
    steps: int
    total_steps: int
    train_loss: float
    val_loss: float | None
    val_history: list[float]
    train_tokens: int
    tokens_per_second: float
    wall_seconds: float
    resumed_from_step: int
    stopped_early: bool
    precision: str
    device: str
    truncated_examples: int
    loss_history: list[float] = field(default_factory=list)
    backend: str = "peft"
    rollbacks: int = 0
    micro_batch: int = 0
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    plot_path: str | None = None
    peak_rss_mb: float = 0.0
    processes: int = 1  # training processes (torchrun ranks)
    distributed: str = "single"  # single, ddp or fsdp
    distributed_backend: str | None = None  # gloo (CPU) or nccl (CUDA) with several processes

    def to_dict(self) -> dict:
        return asdict(self)
