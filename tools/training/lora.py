"""The LoRA training recipe: a validated config in, a typed result out.

setup (model, adapter, data, memory plan) -> train (length-grouped micro-batches with gradient
accumulation, loss on the assistant's tokens only, anomaly watch with rollback) -> checkpoint (every N
steps and at each epoch end, atomically, last K kept) -> cleanup (best adapter, loss-curve PNG).
A resumed run continues from the newest checkpoint with the same data order and RNG state, so its
loss history matches an uninterrupted run.

The recipe holds setup, the step (forward/backward over the ranks) and the loop, and wires the parts
of a run together, each in its own module of tools/training/: config (what goes in and out),
base_model (loading, the adapter), encoding (rows to tokens), memory (the micro-batch plan), batches
(which examples each rank computes), anomalies (AnomalyGuard), validation (Validator), checkpointing
(CheckpointKeeper, Progress) and outputs (StepReporter, the adapter folder, the loss curve)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.hardware import Hardware, detect_hardware, resolve_precision, return_freed_memory
from tools.training.anomalies import AnomalyGuard, TrainingAnomaly
from tools.training.base_model import (
    attach_lora,
    check_targets,
    load_base_model,
    quantization_kwargs,
    weight_dtype,
)
from tools.training.batches import StepBatches
from tools.training.checkpointing import CheckpointKeeper, Progress
from tools.training.config import (
    StepMetrics,
    TrainingConfig,
    TrainingError,
    TrainingResult,
)
from tools.training.encoding import EncodedExample, collate, encode_records, padded_width
from tools.training.memory import EAGER_ATTENTION_MAX_TOKENS, plan_step_memory
from tools.training.outputs import StepReporter, loss_plot_path, write_adapter, write_loss_plot
from tools.training.validation import Validator


class LoraRecipe:
    """peft + transformers LoRA on CPU, MPS or CUDA (QLoRA on CUDA)."""

    name = "peft"

    def __init__(self, config: TrainingConfig, on_step: Callable[[StepMetrics], None] | None = None,
                 on_event: Callable[[str, dict], None] | None = None, parallel=None) -> None:
        from tools.training.parallel import Parallelism

        self.config = config
        self.parallel: Parallelism = parallel or Parallelism()
        main = self.parallel.is_main  # only rank 0 reports (every rank sees the same numbers)
        self.on_step = (on_step if main else None) or (lambda metrics: None)
        self.on_event = (on_event if main else None) or (lambda message, data: None)
        self._nan_injected = False
        self.anomalies = AnomalyGuard(config, self.on_event)

    # -- setup ---------------------------------------------------------------------------------
    def setup(self, train: Sequence[dict], val: Sequence[dict]) -> None:
        """Load the base model, attach the adapter, encode the data, plan memory, build the optimizer."""
        import torch

        cfg = self.config
        if len(train) < 2:
            raise TrainingError(f"need at least 2 training examples, got {len(train)}")
        hardware = detect_hardware()
        self.device = hardware.device
        precision, why = resolve_precision(cfg.precision, hardware)
        self.bf16 = precision == "bf16"
        threads = cfg.threads or max(1, hardware.cpu_threads // self.parallel.world)
        torch.set_num_threads(threads)
        self.on_event("training setup", {"device": hardware.device, "bf16": self.bf16, "precision": precision,
                                         "threads": threads, "why": why})
        self._report_ranks(hardware.device, threads)
        self.tokenizer, model = self._load_base_model(hardware)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        check_targets(cfg.target_modules, model)
        torch.manual_seed(cfg.seed)  # before the adapter: LoRA's A matrices are drawn from this RNG
        random.seed(cfg.seed)
        self.model = self._attach_adapter(model)
        if self.parallel.world > 1:  # the same adapter everywhere, then each rank its own dropout masks
            torch.manual_seed(cfg.seed + 1000 * self.parallel.rank)
        self._encode_data(train, val)
        self.fusion_blocker = self._fusion_blocker()
        self._apply_memory_plan(model)
        self._choose_attention(model)
        self._fuse_layers()
        return_freed_memory()  # what loading the model freed, before training's activations
        self.batches = StepBatches(self.train_set, cfg.batch_size, cfg.seed, self.micro_batch, self.micro_tokens,
                                   self.parallel)
        self.steps_per_epoch = math.ceil(len(self.train_set) / cfg.batch_size)
        self.total_steps = cfg.max_steps or max(1, math.ceil(self.steps_per_epoch * cfg.epochs))
        self.validator = Validator(cfg, self.steps_per_epoch, self.total_steps, self.on_event)
        self._wrap_for_training()
        self._build_optimizer()
        self.checkpoints = CheckpointKeeper(cfg, self.parallel, self.model, self.optimizer, self.scheduler,
                                            self.on_event)

    def _report_ranks(self, device: str, threads: int) -> None:
        """With several processes: which rank runs where (host, pid, device, threads), as one event."""
        if self.parallel.world == 1:
            return
        ranks = self.parallel.all_gather(self.parallel.whoami(device, threads))
        self.on_event("distributed setup", {**self.parallel.describe(), "ranks": ranks})

    def _wrap_for_training(self) -> None:
        """The training forward through DDP or FSDP (or as is); FSDP replaces the parameters with shards,
        so the optimizer is built after this."""
        from tools.training.parallel import SupervisedLoss

        self.train_forward = self.parallel.wrap(SupervisedLoss(self.model, self._adapter_dtype()))

    def _adapter_dtype(self):
        """The dtype the LoRA layers compute in: bf16 beside bf16 base weights (their own weights and
        the optimizer's state stay fp32), else their weights' dtype (None). Not for 4-bit base layers
        (bitsandbytes computes in its own dtype) or sharded parameters (FSDP); a backend with its own
        kernels overrides this."""
        import torch

        plain = not self.config.qlora and self.parallel.strategy != "fsdp"
        return torch.bfloat16 if self.bf16 and plain else None

    def _load_base_model(self, hardware: Hardware):
        """(tokenizer, base model): the hook a backend with its own loading overrides."""
        extra = quantization_kwargs(self.config, hardware)
        return load_base_model(self.config.base_model_path, weight_dtype(self.bf16), extra)

    def _attach_adapter(self, model):
        """The model with the LoRA adapter on it: the hook a backend with its own injection overrides."""
        return attach_lora(model, self.config, self.device)

    def _encode_data(self, train: Sequence[dict], val: Sequence[dict]) -> None:
        self.train_set, truncated_train = encode_records(self.tokenizer, train, self.config.max_seq_len)
        # validation measures answers (the early-stopping signal): chat rows only
        chat_rows = [r for r in val if "messages" in r]
        self.val_set, truncated_val = encode_records(self.tokenizer, chat_rows, self.config.max_seq_len)
        self.truncated = truncated_train + truncated_val
        if self.truncated:
            self.on_event("examples truncated", {"count": self.truncated, "max_seq_len": self.config.max_seq_len})
        if len(self.train_set) < 2:
            raise TrainingError(f"need at least 2 training examples with assistant tokens, got {len(self.train_set)}")

    def _apply_memory_plan(self, model) -> None:
        """Split the step's batch into micro-batches that fit, and checkpoint activations only if needed."""
        per_rank = math.ceil(self.config.batch_size / self.parallel.world)  # each rank's share of a step's batch
        longest = padded_width(max(len(e.input_ids) for e in self.train_set))
        plan = plan_step_memory(model, longest, per_rank, self.config, self.bf16, self.device,
                                fused=self.fusion_blocker is None)
        self.micro_batch, self.accumulation = plan.micro_batch, plan.gradient_accumulation
        self.micro_tokens = plan.micro_batch_tokens
        self.gradient_checkpointing = plan.gradient_checkpointing
        if self.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.on_event("memory plan", {"micro_batch": plan.micro_batch,
                                      "gradient_accumulation": plan.gradient_accumulation,
                                      "micro_batch_tokens": plan.micro_batch_tokens,
                                      "gradient_checkpointing": plan.gradient_checkpointing, "why": plan.note,
                                      "processes": self.parallel.world, "examples_per_process": per_rank})

    def _choose_attention(self, model) -> None:
        """Eager attention on a CPU when every example is short: there the attention scores of a micro-batch
        are a few MB a layer, and torch's CPU flash-attention kernel (SDPA's choice) is slower than eager's
        batched products, its backward most of all. SmolLM2-135M, the demo job's data, 10 steps on a 2-core
        avx512_bf16 EPYC: bf16 31.9 / 33.1 s eager, 35.5 / 38.7 s SDPA (two runs each); fp32 57.5 / 59.1 s."""
        longest = padded_width(max(len(e.input_ids) for e in self.train_set))
        current = getattr(model.config, "_attn_implementation", None)
        if self.device != "cpu" or longest > EAGER_ATTENTION_MAX_TOKENS or current == "eager" \
                or self.gradient_checkpointing or not hasattr(model, "set_attn_implementation"):
            return
        model.set_attn_implementation("eager")
        self.on_event("attention", {"implementation": "eager", "was": current,
                                    "why": f"CPU, examples of at most {longest} tokens: eager attention is faster"})

    def _fusion_blocker(self) -> str | None:
        """Why this run cannot train through the fused decoder layers (None: it can); the hook a backend
        with its own kernels overrides."""
        from tools.training.fused_decoder import fusion_blocker

        cfg = self.config
        return fusion_blocker(self.model, device=self.device, strategy=self.parallel.strategy, qlora=cfg.qlora,
                              lora_dropout=cfg.lora_dropout)

    def _fuse_layers(self) -> None:
        """The fused training forward (tools.training.fused_decoder) where it applies; an event either way."""
        if self.fusion_blocker:
            self.on_event("training layers", {"fused": 0, "why": self.fusion_blocker})
            return
        from tools.training.fused_decoder import fuse_decoder_layers

        count = fuse_decoder_layers(self.model)
        self.on_event("training layers", {"fused": count, "why": "stacked projections and adapters, grouped "
                                          "attention (tools.training.fused_decoder)"})

    def _build_optimizer(self) -> None:
        import torch
        from transformers import get_cosine_schedule_with_warmup

        cfg = self.config
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable = parameters
        # foreach: one kernel per op over all LoRA tensors instead of a Python loop per tensor
        self.optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                           foreach=True)
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, math.ceil(cfg.warmup_ratio * self.total_steps), self.total_steps)

    # -- loss ------------------------------------------------------------------------------------
    def _collate(self, examples: Sequence[EncodedExample]):
        return collate(examples, self.tokenizer.pad_token_id, self.device)

    def _loss_sum(self, ids, mask, labels):
        """Summed cross-entropy (fp32) over the supervised tokens, through the DDP/FSDP wrapper when there
        is one (tools.training.parallel.SupervisedLoss).

        The vocabulary projection runs only on positions whose next token is supervised (for a 49k-token
        vocabulary that head is a fifth of the model's FLOPs, and prompt positions need none), a chunk of
        positions at a time (tools.training.linear_cross_entropy): the full positions x vocabulary logits
        never exist."""
        return self.train_forward(ids, mask, labels)

    def evaluate_loss(self, examples: Sequence[EncodedExample]) -> float | None:
        """Mean loss per assistant token over a set (None when the set is empty); each rank takes its
        shard and the sums are added over the ranks."""
        import torch

        if not examples:
            return None
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for part, weight in self.batches.evaluation_parts(examples):
                ids, mask, labels = self._collate(part)
                total += float(self._loss_sum(ids, mask, labels)) * weight
                count += int((labels[:, 1:] != -100).sum()) * weight
        self.model.train()
        total, count = self.parallel.all_sum([total, count])
        return total / max(1, count)

    # -- train -----------------------------------------------------------------------------------
    def _train_step(self, step: int, batch: list[int]) -> tuple[float, float, int]:
        """Forward/backward over the step's micro-batches, clip, update. Returns (loss, grad_norm, tokens),
        over all ranks. Each loss is divided by the whole batch's supervised tokens (every rank knows the
        batch), so the gradients averaged over the ranks are the one-process gradients."""
        import torch

        supervised = self.batches.supervised_tokens(batch)
        parts = self.batches.rank_parts(batch)
        scale, single = self.parallel.loss_scale(), self.parallel.world == 1
        loss_total, tokens = 0.0, 0
        for number, (examples, weight) in enumerate(parts, start=1):
            ids, mask, labels = self._collate(examples)
            with self.parallel.sync_gradients(self.train_forward, last=number == len(parts)):
                loss = self._loss_sum(ids, mask, labels) / supervised
                if self.config.inject_nan_at_step == step and not self._nan_injected:
                    self._nan_injected = True
                    loss = loss * float("nan")
                if single and not torch.isfinite(loss):  # ranks must all reach the gradient exchange
                    return float(loss.detach()), float("nan"), tokens
                (loss * (weight * scale)).backward()
            loss_total += float(loss.detach()) * weight
            tokens += int(mask.sum()) * int(weight)
        loss_total, tokens = self.parallel.all_sum([loss_total, tokens])
        grad_norm = self.parallel.grad_norm(self.trainable, self.config.max_grad_norm)
        return loss_total, grad_norm, int(tokens)

    def _apply_update(self) -> None:
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train(self) -> TrainingResult:
        """Run from the newest checkpoint (or the start) to the last step or an early stop."""
        cfg = self.config
        start_step, progress = self.checkpoints.load_latest()
        if start_step:
            self.on_event("resumed from checkpoint", {"step": start_step})
        report = StepReporter(self.total_steps, self.steps_per_epoch, self.on_step, cfg.metrics_path)
        self.model.train()
        step, epoch_cached, epoch_batches = start_step, -1, []
        with report:
            while step < self.total_steps and not progress.stopped_early:
                epoch, position = divmod(step, self.steps_per_epoch)
                if epoch != epoch_cached:
                    epoch_batches, epoch_cached = self.batches.epoch(epoch), epoch
                loss, grad_norm, tokens = self._train_step(step + 1, epoch_batches[position])
                try:
                    self.anomalies.check(step + 1, loss, grad_norm, progress)
                except TrainingAnomaly as anomaly:
                    self.optimizer.zero_grad(set_to_none=True)  # the bad step's gradients
                    step, progress = self.anomalies.roll_back(anomaly, progress, self.checkpoints)
                    continue
                self._apply_update()
                step += 1
                self.anomalies.update_grad_average(progress, grad_norm)
                progress.train_tokens += tokens
                progress.loss_history.append(loss)
                report.step(step, loss, self.scheduler.get_last_lr()[0], grad_norm, tokens)
                self._end_of_step(step, progress)
        return self.cleanup(step, start_step, progress, report)

    def _end_of_step(self, step: int, progress: Progress) -> None:
        """Validation and early stopping at the validation points; a checkpoint then and every N steps."""
        validate = self.validator.due(step)
        if validate:
            self.validator.record(step, progress, self.evaluate_loss(self.val_set), self._adapter_copy)
        if validate or step % self.config.checkpoint_every == 0:
            self.checkpoints.save(step, progress)

    def _adapter_copy(self) -> dict:
        return self.parallel.adapter_state(self.model)

    # -- cleanup ---------------------------------------------------------------------------------
    def cleanup(self, step: int, start_step: int, progress: Progress, report: StepReporter) -> TrainingResult:
        """Keep the best epoch's adapter, save it atomically with its config, draw the loss curve."""
        wall = report.elapsed()
        if progress.best_adapter is not None:  # keep the epoch with the best val loss
            self.parallel.load_adapter_state(self.model, progress.best_adapter)
        output = Path(self.config.output_dir)
        weights = self.parallel.save_state_dict(self.model)  # FSDP: gathered from the shards
        plot = loss_plot_path(self.config)
        if self.parallel.is_main:
            write_adapter(output, self.model, self.tokenizer, self.config, weights)
            if plot and progress.loss_history:
                write_loss_plot(plot, progress.loss_history, progress.val_steps, progress.val_history)
        self.parallel.barrier()
        history = progress.loss_history
        tail = history[-max(1, self.steps_per_epoch):]
        return TrainingResult(
            adapter_dir=str(output), steps=step, total_steps=self.total_steps,
            train_loss=sum(tail) / len(tail) if tail else float("nan"), val_loss=progress.best_val,
            val_history=progress.val_history, train_tokens=progress.train_tokens,
            tokens_per_second=report.session_tokens / max(wall, 1e-9), wall_seconds=wall,
            resumed_from_step=start_step, stopped_early=progress.stopped_early,
            precision="bf16" if self.bf16 else "fp32", device=self.device,
            truncated_examples=self.truncated, loss_history=history, backend=self.name,
            rollbacks=progress.rollbacks, micro_batch=self.micro_batch,
            gradient_accumulation=self.accumulation, gradient_checkpointing=self.gradient_checkpointing,
            plot_path=str(plot) if plot and history else None, peak_rss_mb=round(report.peak_rss_mb, 1),
            processes=self.parallel.world, distributed=self.parallel.strategy,
            distributed_backend=getattr(self.parallel, "backend", None))


#END
