"""Which trainer runs a LoRA job: the peft recipe everywhere, Unsloth only on a CUDA GPU where it imports.

`choose_backend` is the one decision point; its reason goes into the job's events so a user can see
why Unsloth was or was not used. Unsloth patches transformers when imported, so it is imported only
here, only on CUDA, and only when chosen. The Unsloth recipe cannot be exercised on a CPU-only machine:
it is written against Unsloth's documented `FastLanguageModel` API and untested here."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from tools.training.config import (
    StepMetrics,
    TrainingConfig,
    TrainingError,
    TrainingResult,
)
from tools.training.lora import LoraRecipe

BackendName = Literal["auto", "peft", "unsloth"]


@dataclass(frozen=True)
class BackendChoice:
    name: Literal["peft", "unsloth"]
    reason: str


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def unsloth_status(cuda: bool, importer: Callable[[str], object] = importlib.import_module) -> tuple[bool, str]:
    """Whether Unsloth can run here, and why not. Unsloth raises NotImplementedError at import time
    without a GPU, so without CUDA it is not even imported."""
    if not cuda:
        return False, "no CUDA GPU: Unsloth needs one (it refuses to import without a GPU)"
    try:
        importer("unsloth")
    except ImportError as error:
        return False, f"unsloth is not installed ({error})"
    except NotImplementedError as error:
        return False, f"unsloth does not support this GPU/platform: {error}"
    return True, "CUDA GPU and unsloth imports"


def choose_backend(requested: BackendName = "auto", cuda: bool | None = None,
                   importer: Callable[[str], object] = importlib.import_module,
                   processes: int = 1) -> BackendChoice:
    """The backend to train with and why. `auto` prefers Unsloth when it can run, else peft; an explicit
    backend that cannot run here is a TrainingError (never a silent fallback). Several processes train
    with peft: Unsloth's open-source release trains on one GPU."""
    if requested == "peft":
        return BackendChoice("peft", "peft requested explicitly")
    if processes > 1:
        if requested == "unsloth":
            raise TrainingError(f"the unsloth backend trains in one process, not {processes}: set "
                                "training.nproc=1 or training.backend=peft (or auto)")
        if requested == "auto":
            return BackendChoice("peft", f"auto: peft, because {processes} processes train together "
                                 "(torchrun; Unsloth's open-source release trains on one GPU)")
    cuda = _cuda_available() if cuda is None else cuda
    ok, why = unsloth_status(cuda, importer)
    if requested == "unsloth":
        if not ok:
            raise TrainingError(f"the unsloth backend cannot run here: {why}")
        return BackendChoice("unsloth", f"unsloth requested explicitly; {why}")
    if requested != "auto":
        raise TrainingError(f"unknown training backend {requested!r}: use auto, peft or unsloth")
    if ok:
        return BackendChoice("unsloth", f"auto: {why}")
    return BackendChoice("peft", f"auto: peft, not Unsloth, because {why}")


class UnslothRecipe(LoraRecipe):
    """The same recipe with Unsloth's patched model loading and LoRA injection (CUDA only; untested
    on this CPU-only machine)."""

    name = "unsloth"

    def _load_base_model(self, hardware):
        unsloth = importlib.import_module("unsloth")
        cfg = self.config
        try:
            model, tokenizer = unsloth.FastLanguageModel.from_pretrained(
                model_name=cfg.base_model_path, max_seq_length=cfg.max_seq_len, dtype=None,
                load_in_4bit=cfg.qlora)
        except (OSError, ValueError) as error:
            raise TrainingError(f"unsloth cannot load the base model at {cfg.base_model_path}: {error}") from error
        return tokenizer, model

    def _adapter_dtype(self):
        return None  # Unsloth's LoRA kernels pick their own dtypes

    def _fusion_blocker(self):
        return "Unsloth's own kernels"

    def _attach_adapter(self, model):
        unsloth = importlib.import_module("unsloth")
        cfg = self.config
        targets = cfg.target_modules
        if targets == "all-linear":
            targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        return unsloth.FastLanguageModel.get_peft_model(
            model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=targets, use_gradient_checkpointing="unsloth", random_state=cfg.seed)


def recipe_for(name: str) -> type[LoraRecipe]:
    """The recipe class for a chosen backend name."""
    recipes: dict[str, type[LoraRecipe]] = {"peft": LoraRecipe, "unsloth": UnslothRecipe}
    if name not in recipes:
        raise TrainingError(f"unknown training backend {name!r}")
    return recipes[name]


def train_lora(config: TrainingConfig, train: Sequence[dict], val: Sequence[dict],
               on_step: Callable[[StepMetrics], None] | None = None,
               on_event: Callable[[str, dict], None] | None = None) -> TrainingResult:
    """Run the recipe end to end (resuming from checkpoints in `config.checkpoint_dir` if any) on the
    backend `config.backend` asks for, in `config.nproc` torchrun processes when that is more than one;
    the choices and their reasons go to `on_event`."""
    from tools.training.launch import plan_processes, train_distributed

    plan = plan_processes(config)
    choice = choose_backend(config.backend, processes=plan.processes)
    if on_event:
        on_event("training backend", {"backend": choice.name, "requested": config.backend, "why": choice.reason})
    if plan.processes > 1:
        return train_distributed(config, train, val, plan, on_step, on_event)
    recipe = recipe_for(choice.name)(config, on_step, on_event)
    recipe.setup(train, val)
    return recipe.train()
