"""Int4 weight-only linear layers for CPU decoding (opt-in: ``precision="int4"``).

Decoding one token reads every weight once, so its speed is the memory bandwidth divided by the bytes
of the weights (see tools/models/int8.py). Int4 weights in groups of `group_size` input columns, each
group with its own bf16 scale and offset, read half of int8's bytes. The kernel is torch's
``aten._weight_int4pack_mm_for_cpu`` on weights packed by ``_convert_weight_to_int4pack_for_cpu`` (what
gpt-fast and torchao's int4 weight-only path call on CPU); it takes bf16 activations and group sizes
32, 64, 128 or 256 that divide the input width. A layer whose input width no allowed group divides stays
int8 (`Int8Linear`).

Each group's range is clipped where that lowers the squared rounding error (a few shrink factors tried
per group), which halves the perplexity cost of plain min/max int4 on SmolLM2-135M.
"""

from __future__ import annotations

import torch

GROUP_SIZES = (32, 64, 128, 256)  # what the CPU kernel accepts
LEVELS = 15  # 4 bits: codes 0..15; the kernel reads a weight as (code - 8) * scale + offset
SHRINKS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)  # fractions of a group's min/max range tried as its clip


class Int4Linear(torch.nn.Module):
    """y = x @ W^T + b with W in int4 codes per group of input columns, bf16 activations."""

    def __init__(self, packed: torch.Tensor, scales_and_offsets: torch.Tensor, group_size: int,
                 in_features: int, out_features: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("weight_int4", packed)
        self.register_buffer("scales_and_offsets", scales_and_offsets)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, group_size: int = 32) -> Int4Linear:
        if group_size not in GROUP_SIZES:
            raise ValueError(f"int4 group size must be one of {GROUP_SIZES}, not {group_size}")
        if linear.in_features % group_size:
            raise ValueError(f"int4 groups of {group_size} do not divide {linear.in_features} input features")
        codes, scales_and_offsets = quantize_groups(linear.weight.detach().float(), group_size)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        return cls(packed, scales_and_offsets, group_size, linear.in_features, linear.out_features, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()  # the kernel needs it
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.weight_int4, self.group_size,
                                                         self.scales_and_offsets)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int4 weights in groups of {self.group_size}")


def quantize_groups(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int32 [out, in] in 0..15, scales and offsets bf16 [in / group, out, 2]) for the kernel;
    each group's clip is the shrink of its min/max range with the least squared rounding error."""
    rows = weight.shape[0]
    groups = weight.reshape(-1, group_size)
    best_error = torch.full((groups.shape[0], 1), float("inf"))
    best_low, best_scale = groups.amin(1, keepdim=True), torch.ones(groups.shape[0], 1)
    for shrink in SHRINKS:
        low, high = groups.amin(1, keepdim=True) * shrink, groups.amax(1, keepdim=True) * shrink
        scale = ((high - low) / LEVELS).clamp(min=1e-8).to(torch.bfloat16).float()
        low = low.to(torch.bfloat16).float()  # the kernel sees bf16 parameters: choose with those
        restored = ((groups - low) / scale).round().clamp(0, LEVELS) * scale + low
        error = (restored - groups).pow(2).sum(1, keepdim=True)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_low, best_scale = torch.where(better, low, best_low), torch.where(better, scale, best_scale)
    codes = ((groups - best_low) / best_scale).round().clamp(0, LEVELS).to(torch.int32).reshape_as(weight)
    offsets = best_low + 8 * best_scale  # the kernel subtracts 8 from each code
    parameters = torch.cat([best_scale.reshape(rows, -1, 1), offsets.reshape(rows, -1, 1)], dim=2)
    return codes, parameters.transpose(0, 1).contiguous().to(torch.bfloat16)


def int4_group_size(in_features: int, preferred: int) -> int | None:
    """The preferred group size if it divides `in_features`, else the smallest allowed one that does."""
    if in_features % preferred == 0:
        return preferred
    return next((size for size in GROUP_SIZES if in_features % size == 0), None)


class RescoredHead(torch.nn.Module):
    """Greedy next tokens for a model whose output head is `precise` (int8): the scores of every token come
    from an int4 copy of the head (half of int8's bytes: the 49k x 576 head of SmolLM2 is a fifth of the
    bytes read per token), and the `candidates` best of them are scored again with the precise head's
    rows, in fp32. The chosen token is the precise head's argmax whenever that token is among the int4
    head's top candidates. Only greedy decoding uses it (`tools.models.decoding`); losses, perplexity and
    sampling read the precise head's logits."""

    def __init__(self, coarse: Int4Linear, precise: torch.nn.Module, candidates: int = 16) -> None:
        super().__init__()
        self.coarse, self.precise, self.candidates = coarse, precise, candidates

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Token ids [rows] for last-position hidden states [rows, hidden]."""
        top = self.coarse(hidden).topk(min(self.candidates, self.coarse.out_features), dim=-1).indices
        rows = self.precise.weight_int8[top].float() * self.precise.scale[top].float()[..., None]
        scores = torch.einsum("rh,rkh->rk", hidden.float(), rows)
        if self.precise.bias is not None:
            scores = scores + self.precise.bias[top].float()
        return top.gather(-1, scores.argmax(-1, keepdim=True)).squeeze(-1)
