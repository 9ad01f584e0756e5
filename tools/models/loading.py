"""A base model (with an adapter, or merged with it) and its tokenizer, loaded for inference: what
evaluation, serving, export and the generators run."""

from __future__ import annotations

from pathlib import Path

INT4_GROUP_SIZE = 32  # input columns per int4 scale and offset (see tools/models/int4.py)

INFERENCE_PRECISIONS = ("auto", "bf16", "fp32", "int8", "int4")
QUANTIZED = ("int8", "int4")  # weight-only, CPU, need a merged adapter
BATCHED_ROWS = 8  # sequences at a time from which bf16 weights pay on a CPU with native bf16


def inference_dtype(precision: str = "auto", rows: int = 1):
    """The floating-point dtype weights are loaded in for inference, for work of `rows` sequences at a
    time. "auto" is bf16 on a CUDA GPU with bf16; on a CPU, bf16 where it has native bf16 (avx512_bf16 or
    AMX) and the work is batched (`rows` >= BATCHED_ROWS), else fp32: generation multiplies each sequence's
    vector by each weight matrix, and torch's CPU bf16 kernel for one row gains little at one thread and
    loses at two (SmolLM2-135M shapes, 1536x576 weight, torch 2.13: on a 2-core avx512_bf16 EPYC, 1 row fp32
    0.09 ms, bf16 0.10 ms at 1 thread, 1.6 ms at 2 when the other core is busy; on a 2-core AMX Xeon, 1 row
    fp32 0.034 ms, bf16 0.059 ms at 2 threads, 8 rows fp32 0.36 ms, bf16 0.11 ms at 1 thread, 0.087 / 0.061
    ms at 2), while batches gain on both: the demo job's tuned model, 64 greedy tokens, on the EPYC (no AMX)
    8 rows fp32 5.93 s, bf16 4.58 s; 16 rows 8.76 / 5.88 s; 48 rows 16.1-17.7 / 14.9 s. "bf16" asks for
    bf16 weights anyway; "int8" and "int4" load fp32 weights, which `load_for_inference` then quantizes
    (`quantize_weights`)."""
    import torch

    from tools.hardware import detect_hardware

    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        hardware = detect_hardware()
        if hardware.device == "cuda":
            return torch.bfloat16 if hardware.bf16 else torch.float32
        return torch.bfloat16 if hardware.bf16 and rows >= BATCHED_ROWS else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def scoring_precision(model, precision: str = "auto"):
    """The context teacher-forced scoring (answer NLL, perplexity: whole sequences, thousands of rows per
    matrix product) runs in: with "auto", fp32 weights on a CPU with native bf16 (loaded so for one row at a
    time, `inference_dtype`) compute in bf16 autocast (the loss still in fp32); otherwise no change. On a
    2-core avx512_bf16 EPYC, the demo job's tuned model: test answer NLL 11.2 -> 6.3 s (2.62527 -> 2.62582),
    general perplexity 6.6 -> 3.9 s (17.713 -> 17.725)."""
    import contextlib

    import torch

    from tools.hardware import detect_hardware

    weights = next(model.parameters(), None)
    if (precision != "auto" or weights is None or weights.device.type != "cpu" or weights.dtype != torch.float32
            or not detect_hardware().bf16):
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def load_for_inference(base_model_path: str, adapter_dir: str | None = None, threads: int | None = None,
                       precision: str = "fp32", merge: bool = False, rows: int = 1):
    """(model, tokenizer) in eval mode; with an adapter, a PeftModel whose adapter can be disabled, or with
    `merge` a plain model whose weights have the adapter merged in (one version served alone: no LoRA
    layers to run per token). Merging happens in fp32 before the cast to `precision`'s dtype, so the
    merged weights are rounded once. "int8" and "int4" (CPU only) quantize the linear layers of the plain
    or merged model; an unmerged adapter cannot sit on quantized layers, so it is refused. `rows`: how many
    sequences the caller runs at a time ("auto" precision depends on it)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if precision in QUANTIZED and adapter_dir and not merge:
        raise ValueError(f"{precision} weights need the adapter merged (merge=True): peft cannot put LoRA "
                         "layers on quantized ones")
    has_tokenizer = adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").exists()
    tokenizer = load_tokenizer(adapter_dir if has_tokenizer else base_model_path)
    dtype = inference_dtype(precision, rows)
    if adapter_dir and merge:
        model = _with_adapter(load_model(base_model_path, torch.float32), adapter_dir).merge_and_unload()
        model = model.to(dtype)
    else:
        model = load_model(base_model_path, dtype)
        if adapter_dir:
            model = _with_adapter(model, adapter_dir)
    return (quantize_weights(model, precision) if precision in QUANTIZED else model).eval(), tokenizer


def quantize_weights(model, precision: str, group_size: int = INT4_GROUP_SIZE, head: str | None = None):
    """The model with every linear layer (the output head too) replaced by a weight-only quantized one,
    its other weights and its activations in bf16 (CPU only). "int8": `Int8Linear` (one scale per output
    row); "int4": `Int4Linear` in groups of `group_size` input columns (a layer no allowed group divides
    stays int8), the output head int8 (in int4 SmolLM2-135M's general-text perplexity goes from 19.2 to
    20.4, with an int8 head it stays at 19.2) plus `model.greedy_head`, an int4 copy that greedy
    decoding reads and rescores (`RescoredHead`). Both carry `model.one_row_decoder` (a Llama-family model's
    layers in few operations, `tools.models.llama_decoder`; None for other architectures) for one greedy
    sequence.
    `head` ("int8" | "int4") overrides the head's. Decoding one token reads every weight once, so fewer bytes
    per weight is what makes it faster; see `Int8Linear` and `Int4Linear` for the figures and for why not
    torch's dynamic quantization."""
    import torch

    if next(model.parameters()).device.type != "cpu":
        raise ValueError(f"{precision} weights are a CPU path here (torch's weight-only kernels); use bf16 "
                         "on a GPU")
    model = model.float()
    head_layer = model.get_output_embeddings()
    head = head or ("int8" if precision == "int4" else precision)
    one_row = _one_row_decoder(model, precision, group_size)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, _quantized(child, head if child is head_layer else precision, group_size))
    if head == "int8" and precision == "int4" and isinstance(head_layer, torch.nn.Linear):
        model.greedy_head = _rescored_head(head_layer, model.get_output_embeddings(), group_size)
    model = model.to(torch.bfloat16)
    model.one_row_decoder = one_row  # a plain attribute: not a submodule, so no state-dict entries
    return model


def _one_row_decoder(model, precision: str, group_size: int):
    """The few-operations decoder of one sequence (tools.models.llama_decoder) with its own stacked copy of the
    layers in `precision`, or None for an architecture it does not run."""
    from tools.models.llama_decoder import LlamaDecoder

    return LlamaDecoder.build(model, lambda linear: _quantized(linear, precision, group_size))


def _rescored_head(linear, precise, group_size: int):
    """An int4 copy of the head for greedy decoding, rescored on its top candidates by the int8 head."""
    from tools.models.int4 import Int4Linear, RescoredHead, int4_group_size

    group = int4_group_size(linear.in_features, group_size)
    return RescoredHead(Int4Linear.from_linear(linear, group), precise) if group else None


def _quantized(linear, precision: str, group_size: int):
    from tools.models.int4 import Int4Linear, int4_group_size
    from tools.models.int8 import Int8Linear

    group = int4_group_size(linear.in_features, group_size) if precision == "int4" else None
    return Int4Linear.from_linear(linear, group) if group else Int8Linear.from_linear(linear)


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
