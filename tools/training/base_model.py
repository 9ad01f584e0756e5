"""The frozen base model of a LoRA run and the adapter on it (peft + transformers): loading it (bf16
or fp32 weights, 4-bit NF4 for QLoRA), checking the modules the adapter targets, attaching the
adapter. transformers, peft and bitsandbytes are imported only when called."""

from __future__ import annotations

from typing import Any

from tools.hardware import Hardware
from tools.training.config import TrainingConfig, TrainingError


def weight_dtype(bf16: bool):
    """The frozen base weights' dtype: bf16 where the hardware computes in it natively (they are
    never updated, so nothing accumulates their rounding), else fp32. The LoRA weights, their
    gradients and the optimizer state stay fp32 (peft keeps adapter weights in fp32 over a bf16
    base), and the loss is taken in fp32."""
    import torch

    return torch.bfloat16 if bf16 else torch.float32


def quantization_kwargs(config: TrainingConfig, hardware: Hardware) -> dict:
    """QLoRA: 4-bit NF4 base weights through bitsandbytes, imported only when asked for on CUDA."""
    if not config.qlora:
        return {}
    if hardware.device != "cuda":
        raise TrainingError(
            f"QLoRA needs a CUDA GPU with bitsandbytes; this machine has {hardware.device}"
        )
    try:
        import bitsandbytes  # noqa: F401 - presence check; transformers drives it
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError as error:
        raise TrainingError(f"QLoRA needs bitsandbytes: {error}") from error
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if hardware.bf16 else torch.float16,
        )
    }


def load_base_model(path: str, dtype: Any, extra: dict) -> tuple[Any, Any]:
    """(tokenizer, model) of the causal LM at `path`; anything else is a TrainingError that says so.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra)
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise TrainingError(
                f"{path} is not a causal language model "
                f"(AutoModelForCausalLM cannot load it): {str(error)[:200]}"
            ) from error
        raise TrainingError(f"cannot load the base model at {path}: {error}") from error
    except OSError as error:
        raise TrainingError(f"cannot load the base model at {path}: {error}") from error
    if not getattr(model, "can_generate", lambda: False)():
        raise TrainingError(f"{path} is not a causal language model")
    return tokenizer, model


def check_targets(targets: list[str] | str, model: Any) -> None:
    """Every module the adapter targets exists in the model (by its last name)."""
    if targets == "all-linear":
        return
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise TrainingError(
            f"target modules {missing} do not exist in the model (it has e.g. "
            f"{sorted(n for n in names if n.endswith('proj'))[:8]})"
        )


def attach_lora(model: Any, config: TrainingConfig, device: str) -> Any:
    """The peft model: LoRA on the target modules, on `device` (a 4-bit model stays where it was
    loaded)."""
    from peft import LoraConfig, get_peft_model

    if config.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    return peft_model if config.qlora else peft_model.to(device)
