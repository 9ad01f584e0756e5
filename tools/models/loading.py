"""A base model (with an adapter, or merged with it) and its tokenizer, loaded for inference: what
evaluation, serving, export and the generators run."""

from __future__ import annotations

from pathlib import Path


def inference_dtype(precision: str = "auto"):
    """The weights' dtype for inference. "auto" is bf16 on a CUDA GPU with bf16 and fp32 on a CPU, even one
    with native bf16: generation multiplies one token's vector by each weight matrix, and torch's CPU bf16
    kernel for that shape is no faster than fp32 at one thread and 25-50x slower at two (measured on a
    2-core avx512_bf16 EPYC with torch 2.13: 1536x576 weight, 1 row: fp32 1.2 ms, bf16 33-62 ms under load;
    at 64 rows bf16 wins 1.6x, which training and prompt processing see, decoding does not). "bf16" asks
    for bf16 weights anyway."""
    import torch

    from tools.hardware import detect_hardware

    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "auto":
        hardware = detect_hardware()
        return torch.bfloat16 if hardware.bf16 and hardware.device == "cuda" else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def load_for_inference(base_model_path: str, adapter_dir: str | None = None, threads: int | None = None,
                       precision: str = "fp32", merge: bool = False):
    """(model, tokenizer) in eval mode; with an adapter, a PeftModel whose adapter can be disabled, or with
    `merge` a plain model whose weights have the adapter merged in (one version served alone: no LoRA
    layers to run per token). Merging happens in fp32 before the cast to `precision`'s dtype, so the
    merged weights are rounded once."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    has_tokenizer = adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").exists()
    tokenizer = load_tokenizer(adapter_dir if has_tokenizer else base_model_path)
    dtype = inference_dtype(precision)
    if adapter_dir and merge:
        model = _with_adapter(load_model(base_model_path, torch.float32), adapter_dir).merge_and_unload()
        return model.to(dtype).eval(), tokenizer
    model = load_model(base_model_path, dtype)
    if adapter_dir:
        model = _with_adapter(model, adapter_dir)
    return model.eval(), tokenizer


def load_tokenizer(path: str):
    """A tokenizer with a pad token (the end-of-sequence token when the model has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def _with_adapter(model, adapter_dir: str):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir)
