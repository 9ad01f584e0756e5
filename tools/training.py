"""The LoRA training recipe: a validated config in, a typed result out.

setup (model, adapter, data) -> train (length-grouped batches, loss on the assistant's tokens only)
-> checkpoint (every N steps and at each epoch end, atomically, last K kept) -> cleanup.
A resumed run continues from the newest checkpoint with the same data order and RNG state."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from tools.hardware import detect_hardware


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why, before any work is lost."""


class TrainingConfig(BaseModel):
    """Everything one training run needs; saved next to the adapter."""

    base_model_path: str
    output_dir: str
    checkpoint_dir: str
    metrics_path: str | None = None
    epochs: float = Field(2.0, gt=0, le=50)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    batch_size: int = Field(8, ge=1)
    max_seq_len: int = Field(384, ge=16)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = Field(20, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    early_stopping_patience: int = Field(2, ge=1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    threads: int | None = None
    seed: int = 0

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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]


def encode_chat(tokenizer, messages: Sequence[dict], max_seq_len: int) -> tuple[EncodedExample, bool]:
    """Token ids of the whole conversation and labels that keep only the assistant's reply
    (prompt tokens are -100). Returns (example, truncated)."""
    prompt_text = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full_text.startswith(prompt_text):
        raise TrainingError("the chat template does not render the prompt as a prefix of the conversation")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    input_ids = prompt_ids + reply_ids
    labels = [-100] * len(prompt_ids) + reply_ids
    truncated = len(input_ids) > max_seq_len
    return EncodedExample(input_ids[:max_seq_len], labels[:max_seq_len]), truncated


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, sort within windows of 16 batches by length (little padding), shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


class LoraRecipe:
    """peft + transformers LoRA on CPU, MPS or CUDA."""

    name = "peft"

    def __init__(self, config: TrainingConfig, on_step: Callable[[StepMetrics], None] | None = None,
                 on_event: Callable[[str, dict], None] | None = None) -> None:
        self.config = config
        self.on_step = on_step or (lambda metrics: None)
        self.on_event = on_event or (lambda message, data: None)

    # -- setup ---------------------------------------------------------------------------------
    def setup(self, train: Sequence[dict], val: Sequence[dict]) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        if len(train) < 2:
            raise TrainingError(f"need at least 2 training examples, got {len(train)}")
        hardware = detect_hardware()
        self.device = hardware.device
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and hardware.bf16)
        torch.set_num_threads(cfg.threads or hardware.cpu_threads)
        self.on_event("training setup", {"device": hardware.device, "bf16": self.bf16, "why": hardware.note})
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.base_model_path)
            model = AutoModelForCausalLM.from_pretrained(cfg.base_model_path, dtype=torch.float32)
        except (OSError, ValueError) as error:
            raise TrainingError(f"cannot load the base model at {cfg.base_model_path}: {error}") from error
        if not getattr(model, "can_generate", lambda: False)():
            raise TrainingError(f"{cfg.base_model_path} is not a causal language model")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._check_targets(model)
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=cfg.target_modules, task_type="CAUSAL_LM")
        self.model = get_peft_model(model, lora).to(self.device)
        self.train_set, truncated_train = self._encode(train)
        self.val_set, truncated_val = self._encode(val)
        self.truncated = truncated_train + truncated_val
        torch.manual_seed(cfg.seed)
        self.batches_per_epoch = math.ceil(len(self.train_set) / cfg.batch_size)
        self.total_steps = cfg.max_steps or max(1, math.ceil(self.batches_per_epoch * cfg.epochs))
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        from transformers import get_cosine_schedule_with_warmup

        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, math.ceil(cfg.warmup_ratio * self.total_steps), self.total_steps)

    def _check_targets(self, model) -> None:
        targets = self.config.target_modules
        if targets == "all-linear":
            return
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            raise TrainingError(f"target modules {missing} do not exist in the model (it has e.g. "
                                f"{sorted(n for n in names if n.endswith('proj'))[:8]})")

    def _encode(self, records: Sequence[dict]) -> tuple[list[EncodedExample], int]:
        encoded, truncated = [], 0
        for record in records:
            example, was_truncated = encode_chat(self.tokenizer, record["messages"], self.config.max_seq_len)
            truncated += was_truncated
            if any(label != -100 for label in example.labels):
                encoded.append(example)
        return encoded, truncated

    # -- batches ---------------------------------------------------------------------------------
    def _collate(self, examples: Sequence[EncodedExample]):
        import torch

        width = max(len(e.input_ids) for e in examples)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(examples), width), pad, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example.input_ids)
            ids[row, :n] = torch.tensor(example.input_ids)
            labels[row, :n] = torch.tensor(example.labels)
            mask[row, :n] = 1
        return ids.to(self.device), mask.to(self.device), labels.to(self.device)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        lengths = [len(e.input_ids) for e in self.train_set]
        return length_grouped_batches(lengths, self.config.batch_size, self.config.seed + epoch)

    def _autocast(self):
        import contextlib

        import torch

        if self.bf16:
            return torch.autocast(device_type=self.device if self.device != "mps" else "cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate_loss(self, examples: Sequence[EncodedExample]) -> float | None:
        """Mean loss per assistant token over a set (None when the set is empty)."""
        import torch

        if not examples:
            return None
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(examples), self.config.batch_size):
                ids, mask, labels = self._collate(examples[start : start + self.config.batch_size])
                with self._autocast():
                    loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
                tokens = int((labels[:, 1:] != -100).sum())
                total, count = total + float(loss) * tokens, count + tokens
        self.model.train()
        return total / max(1, count)

    # -- checkpoint ------------------------------------------------------------------------------
    def _checkpoints(self) -> list[Path]:
        root = Path(self.config.checkpoint_dir)
        return sorted(p for p in root.glob("step-*") if (p / "state.pt").exists()) if root.exists() else []

    def save_checkpoint(self, step: int, progress: dict) -> Path:
        import torch
        from peft import get_peft_model_state_dict

        root = Path(self.config.checkpoint_dir)
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{step:07d}"
        staging = root / f".step-{step:07d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        torch.save({
            "adapter": get_peft_model_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step": step,
            "progress": progress,
        }, staging / "state.pt")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for old in self._checkpoints()[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_latest_checkpoint(self) -> tuple[int, dict]:
        import torch
        from peft import set_peft_model_state_dict

        for checkpoint in reversed(self._checkpoints()):
            try:
                state = torch.load(checkpoint / "state.pt", weights_only=False)
            except (OSError, RuntimeError, EOFError) as error:
                self.on_event("unreadable checkpoint skipped", {"path": str(checkpoint), "reason": str(error)})
                continue
            set_peft_model_state_dict(self.model, state["adapter"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            random.setstate(state["python_rng"])
            return int(state["step"]), state["progress"]
        return 0, {}

    # -- train -----------------------------------------------------------------------------------
    def train(self) -> TrainingResult:
        import torch

        cfg = self.config
        start_step, progress = self.load_latest_checkpoint()
        if start_step:
            self.on_event("resumed from checkpoint", {"step": start_step})
        history: list[float] = progress.get("loss_history", [])
        val_history: list[float] = progress.get("val_history", [])
        best_val: float | None = progress.get("best_val")
        bad_epochs: int = progress.get("bad_epochs", 0)
        trained_tokens: int = progress.get("train_tokens", 0)
        best_adapter = progress.get("best_adapter")
        stopped_early = progress.get("stopped_early", False)
        started, session_tokens = time.monotonic(), 0
        self.model.train()
        metrics_file = Path(cfg.metrics_path).open("a") if cfg.metrics_path else None
        step = start_step
        batches: list[list[int]] = []
        try:
            while step < self.total_steps and not stopped_early:
                epoch, position = divmod(step, self.batches_per_epoch)
                if position == 0 or not batches:
                    batches = self._epoch_batches(epoch)
                ids, mask, labels = self._collate([self.train_set[i] for i in batches[position]])
                with self._autocast():
                    loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
                if not torch.isfinite(loss):
                    raise TrainingError(f"loss became {float(loss)} at step {step + 1}")
                loss.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad], cfg.max_grad_norm))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                step += 1
                tokens = int(mask.sum())
                session_tokens += tokens
                trained_tokens += tokens
                history.append(float(loss.detach()))
                elapsed = time.monotonic() - started
                metrics = StepMetrics(step, self.total_steps, step / self.batches_per_epoch, history[-1],
                                      self.scheduler.get_last_lr()[0], grad_norm,
                                      session_tokens / max(elapsed, 1e-9), elapsed)
                self.on_step(metrics)
                if metrics_file:
                    metrics_file.write(json.dumps(asdict(metrics)) + "\n")
                    metrics_file.flush()
                epoch_end = step % self.batches_per_epoch == 0 or step == self.total_steps
                if epoch_end:
                    val_loss = self.evaluate_loss(self.val_set)
                    if val_loss is not None:
                        val_history.append(val_loss)
                        if best_val is None or val_loss < best_val - 1e-4:
                            best_val, bad_epochs = val_loss, 0
                            best_adapter = self._adapter_copy()
                        else:
                            bad_epochs += 1
                            stopped_early = bad_epochs >= cfg.early_stopping_patience
                        self.on_event("epoch end", {"step": step, "val_loss": round(val_loss, 4),
                                                    "stopped_early": stopped_early})
                if epoch_end or step % cfg.checkpoint_every == 0:
                    self.save_checkpoint(step, {
                        "loss_history": history, "val_history": val_history, "best_val": best_val,
                        "bad_epochs": bad_epochs, "train_tokens": trained_tokens,
                        "best_adapter": best_adapter, "stopped_early": stopped_early})
        finally:
            if metrics_file:
                metrics_file.close()
        return self.cleanup(step, start_step, history, val_history, best_val, best_adapter,
                            trained_tokens, session_tokens, time.monotonic() - started, stopped_early)

    def _adapter_copy(self) -> dict:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    # -- cleanup ---------------------------------------------------------------------------------
    def cleanup(self, step, start_step, history, val_history, best_val, best_adapter,
                trained_tokens, session_tokens, wall, stopped_early) -> TrainingResult:
        from peft import set_peft_model_state_dict

        if best_adapter is not None:
            set_peft_model_state_dict(self.model, best_adapter)  # keep the epoch with the best val loss
        output = Path(self.config.output_dir)
        staging = output.with_name(output.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        self.model.save_pretrained(str(staging))
        self.tokenizer.save_pretrained(str(staging))
        (staging / "training_config.json").write_text(self.config.model_dump_json(indent=2))
        shutil.rmtree(output, ignore_errors=True)
        staging.rename(output)
        tail = history[-max(1, self.batches_per_epoch):]
        return TrainingResult(
            adapter_dir=str(output), steps=step, total_steps=self.total_steps,
            train_loss=sum(tail) / len(tail) if tail else float("nan"), val_loss=best_val,
            val_history=val_history, train_tokens=trained_tokens,
            tokens_per_second=session_tokens / max(wall, 1e-9), wall_seconds=wall,
            resumed_from_step=start_step, stopped_early=stopped_early,
            precision="bf16" if self.bf16 else "fp32", device=self.device,
            truncated_examples=self.truncated, loss_history=history)


def train_lora(config: TrainingConfig, train: Sequence[dict], val: Sequence[dict],
               on_step: Callable[[StepMetrics], None] | None = None,
               on_event: Callable[[str, dict], None] | None = None) -> TrainingResult:
    """Run the recipe end to end (resuming from checkpoints in `config.checkpoint_dir` if any)."""
    recipe = LoraRecipe(config, on_step, on_event)
    recipe.setup(train, val)
    return recipe.train()
