"""Int8 weight-only linear layers for CPU decoding.

Why weight-only: decoding one token multiplies a single vector by every weight matrix, so its speed is
the memory bandwidth divided by the bytes of the weights. Int8 weights with one scale per output row
(activations stay bf16, products accumulate in fp32) read a quarter of fp32's bytes. Measured with
SmolLM2-135M on a 2-core avx512_bf16 EPYC, one thread, torch 2.13, under load from other processes:
general-text perplexity 19.28 against fp32's 19.20 (bf16 alone: 19.27), greedy top-1 agreement with
fp32 95% of positions (bf16: 98%), decoding 1.4-1.6x fp32's tokens per CPU second (1.8x those of
transformers generate on an unmerged PeftModel; bench/bench_serving.py).

Why not torch's dynamic quantization (``torch.ao.quantization.quantize_dynamic``): it quantizes the
activations too, per tensor and with a reduced range, and SmolLM2's activation outliers do not survive
that: perplexity 19.2 -> 58-81 (per-channel or per-tensor weights), top-1 agreement with fp32 42-46%,
although it decodes 3x faster. The kernel here is ``aten._weight_int8pack_mm`` (what gpt-fast and
torchao's int8 weight-only path call on CPU); it is fast for bf16 inputs only (fp32 inputs take a
scalar path 10x slower), hence bf16 activations.
"""

from __future__ import annotations

import torch


class Int8Linear(torch.nn.Module):
    """y = x @ (scale * W_int8)^T + b, with W_int8 rounded per output row to the nearest of 255 levels."""

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = weight_int8.shape[1], weight_int8.shape[0]
        self.register_buffer("weight_int8", weight_int8.contiguous())
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear) -> Int8Linear:
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        return cls(quantized, scale.to(torch.bfloat16), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(self.scale.dtype)
        out = torch.ops.aten._weight_int8pack_mm(rows, self.weight_int8, self.scale)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"
