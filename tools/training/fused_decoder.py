"""A faster training forward for Llama-family decoder layers under plain LoRA, on a CPU.

Why: on a 2-core CPU a LoRA step through transformers' layers and peft's adapters spends as long on its
thin matrix products and elementwise passes as on the model's real ones. Each of the seven adapted
projections of a layer runs `x @ A` (a rank-16 output), `@ B`, a scaling pass and an add, forward and
backward, all over full-width activations; eager attention multiplies, adds and soft-maxes the scores in
fp32 and copies them back to bf16; the norm and the rotary embedding keep fp32 copies and rotated copies
for their backward. This forward runs the same arithmetic in fewer, larger operations:

- q/k/v and gate/up are one product each: their frozen weights stacked once (the projections' own weights
  become views of the stack, so no memory is added); their LoRA A matrices stacked into one product and the
  B matrices, scaling folded in, put block-diagonally into one `addmm` onto the base output (the adapter's
  update never exists as a separate full-width tensor).
- Attention for grouped-query heads without repeating the keys: the query heads that share a key head are
  one matrix product against it; the mask is added in place and the soft-max runs in the scores' dtype
  (torch's CPU kernel accumulates in fp32), so only one copy of the probabilities is kept for backward.
  Sequences longer than `EAGER_ATTENTION_MAX_TOKENS` use SDPA (no L x L probabilities in memory).
- The norm, the rotary embedding and SiLU(gate) * up are autograd functions that keep for backward only
  their input (the norm, SwiGLU: the gate/up product, not silu(gate) as well) or only cos/sin (the rotation),
  in fewer passes over the activations.

The gradients reach the same LoRA parameters peft created, so checkpoints, the saved adapter and
validation are unchanged. SmolLM2-135M, bf16, on a 2-core AMX Xeon, bench_trainer's corpus (batch 8 of
50-400 tokens): 12 steps, 388 effective tokens/s through transformers and peft and 466 fused, both at
512-token micro-batches; 554-562 fused at 1024 (`CPU_FUSED_MICRO_BATCH_TOKENS`: the fused layers keep
fewer activations, so the larger products fit). bench_trainer, 20 steps: 418 -> 544/545 tokens/s, peak
RSS 2.4 -> 2.8 GB, validation loss 1.9414 -> 1.9418.

It applies (`fusion_blocker` gives None) to LlamaDecoderLayer (Llama, SmolLM2, TinyLlama) with SiLU, no
biases, on a CPU, one process or DDP (not FSDP, whose flat parameters the weight views would break),
without QLoRA and without LoRA dropout (peft draws one dropout mask per projection; the stacked product
has one input). Anything else trains through transformers and peft as before. A forward with a KV cache
(generation) goes through the layer's own forward.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tools.training.memory import EAGER_ATTENTION_MAX_TOKENS  # longer sequences go through SDPA

FUSED_LAYER_TYPES = ("LlamaDecoderLayer",)


def fusion_blocker(model: Any, *, device: str, strategy: str, qlora: bool, lora_dropout: float) -> str | None:
    """Why the fused forward cannot train this model (None: it can)."""
    if device != "cpu":
        return f"device {device} (the fused layers are measured on CPUs only)"
    if strategy == "fsdp":
        return "FSDP shards the parameters the fused layers stack"
    if qlora:
        return "QLoRA's 4-bit base layers"
    if lora_dropout > 0:
        return f"LoRA dropout {lora_dropout:g} (peft draws one mask per projection)"
    layers = _decoder_layers(model)
    if not layers:
        return f"no {' or '.join(FUSED_LAYER_TYPES)} in {type(model).__name__}"
    for layer in layers:
        problem = _layer_blocker(layer)
        if problem:
            return problem
    return None


def fuse_decoder_layers(model: Any) -> int:
    """Give every supported decoder layer the fused forward; the number of layers changed. Call
    `fusion_blocker` first."""
    layers = _decoder_layers(model)
    for layer in layers:
        attention, mlp = layer.self_attn, layer.mlp
        layer.fused = types.SimpleNamespace(
            qkv=StackedProjection([attention.q_proj, attention.k_proj, attention.v_proj]),
            output=StackedProjection([attention.o_proj]),
            gate_up=StackedProjection([mlp.gate_proj, mlp.up_proj]),
            down=StackedProjection([mlp.down_proj]),
            layer_forward=layer.forward,
        )
        layer.forward = types.MethodType(fused_layer_forward, layer)
    return len(layers)


def _decoder_layers(model: Any) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__ in FUSED_LAYER_TYPES]


def _layer_blocker(layer: torch.nn.Module) -> str | None:
    attention, mlp = layer.self_attn, layer.mlp
    config = attention.config
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act}"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "tensor-parallel pretraining slices (pretraining_tp)"
    if getattr(config, "attention_dropout", 0.0):
        return f"attention dropout {config.attention_dropout:g}"
    for norm in (layer.input_layernorm, layer.post_attention_layernorm):
        if not hasattr(norm, "variance_epsilon") or norm.weight.requires_grad:
            return f"a {type(norm).__name__} norm (trainable or not RMSNorm)"
    projections = (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj,
                   mlp.gate_proj, mlp.up_proj, mlp.down_proj)
    for projection in projections:
        problem = _projection_blocker(projection)
        if problem:
            return problem
    return None


def _projection_blocker(projection: torch.nn.Module) -> str | None:
    base = getattr(projection, "base_layer", projection)
    if type(base) is not torch.nn.Linear:
        return f"a {type(base).__name__} projection"
    if base.bias is not None:
        return "projections with biases"
    if base.weight.requires_grad:
        return "a trainable base projection"
    if base is projection:
        return None  # not adapted: its base product only
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(projection) is not LoraLinear or projection.merged or projection.disable_adapters:
        return f"a {type(projection).__name__} adapter (merged or disabled)"
    active = [name for name in projection.active_adapters if name in projection.lora_A]
    if len(active) != 1 or active[0] in projection.lora_variant:
        return "several adapters or a LoRA variant (DoRA) on one projection"
    if not isinstance(projection.lora_dropout[active[0]], torch.nn.Identity):
        return "LoRA dropout"
    return None


class StackedProjection:
    """Projections that read the same input as one product: the frozen weights stacked (each projection's
    own weight becomes a view of the stack) plus the adapters' update in one `addmm`."""

    def __init__(self, projections: Sequence[torch.nn.Module]) -> None:
        bases = [getattr(p, "base_layer", p) for p in projections]
        self.sizes = [b.weight.shape[0] for b in bases]
        self.weight = torch.cat([b.weight.detach() for b in bases])
        start = 0
        for base, size in zip(bases, self.sizes):
            base.weight.data = self.weight[start:start + size]
            start += size
        self.adapted = [p if hasattr(p, "base_layer") else None for p in projections]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight)
        a, b = self._stacked_adapter()
        if a is None:
            return out
        rows = out.reshape(-1, out.shape[-1])
        rows = torch.addmm(rows, F.linear(x.reshape(-1, x.shape[-1]), a), b.t())
        return rows.view(out.shape)

    def _stacked_adapter(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The stacked A (rank rows per adapted projection) and the block-diagonal, scaled B (zero rows for a
        projection without an adapter)."""
        adapted = [p for p in self.adapted if p is not None]
        if not adapted:
            return None, None
        dtype = adapted[0].lora_B[adapted[0].active_adapters[0]].weight.dtype
        a_blocks, b_blocks = [], []
        for projection, size in zip(self.adapted, self.sizes):
            if projection is None:
                b_blocks.append(torch.zeros(size, 0, dtype=dtype))
                continue
            name = projection.active_adapters[0]
            a_blocks.append(projection.lora_A[name].weight)
            b_blocks.append(projection.lora_B[name].weight * projection.scaling[name])
        return torch.cat(a_blocks), torch.block_diag(*b_blocks)


def fused_layer_forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        position_ids: torch.Tensor | None = None, cache: Any = None, use_cache: bool | None = False,
                        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                        **kwargs: Any) -> torch.Tensor:
    """LlamaDecoderLayer.forward through the stacked projections (bound to a fused layer)."""
    fused = self.fused
    if cache is not None or kwargs.get("past_key_values") is not None or position_embeddings is None:
        return fused.layer_forward(hidden_states, attention_mask=attention_mask, position_ids=position_ids,
                                   cache=cache, use_cache=use_cache, position_embeddings=position_embeddings,
                                   **kwargs)
    attention = self.self_attn
    normed = rms_norm(self.input_layernorm, hidden_states)
    q, k, v = fused.qkv(normed).split(fused.qkv.sizes, dim=-1)
    heads = (*normed.shape[:-1], -1, attention.head_dim)
    # v copied: a view would keep the whole q/k/v product alive for the attention's backward
    q, k, v = (t.reshape(heads).transpose(1, 2) for t in (q, k, v.contiguous()))
    cos, sin = (t.unsqueeze(1) for t in position_embeddings)
    q, k = RotaryEmbedding.apply(q, cos, sin), RotaryEmbedding.apply(k, cos, sin)
    attended = grouped_attention(q * attention.scaling, k, v, attention_mask)
    hidden_states = hidden_states + fused.output(attended.reshape(*normed.shape[:-1], -1))
    normed = rms_norm(self.post_attention_layernorm, hidden_states)
    return hidden_states + fused.down(SwiGLU.apply(fused.gate_up(normed)))


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      mask: torch.Tensor | None) -> torch.Tensor:
    """Causal attention of (batch, heads, L, d) queries, already scaled, on (batch, key heads, L, d) keys
    and values; (batch, L, heads, d) out. `mask`: transformers' (batch, 1, L, L) additive or boolean mask,
    or None (causal only)."""
    batch, heads, length, dim = q.shape
    key_heads = k.shape[1]
    if length > EAGER_ATTENTION_MAX_TOKENS:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, scale=1.0,
                                             enable_gqa=heads != key_heads)
        return out.transpose(1, 2)
    group = heads // key_heads  # the query heads that read one key head, as rows of one product
    scores = torch.matmul(q.reshape(batch, key_heads, group * length, dim), k.transpose(-1, -2))
    scores = scores.view(batch, key_heads, group, length, length)
    scores.add_(additive_mask(mask, length, scores.dtype).unsqueeze(2))
    probabilities = torch.softmax(scores, dim=-1).view(batch, key_heads, group * length, length)
    out = torch.matmul(probabilities, v).view(batch, heads, length, dim)
    return out.transpose(1, 2)


def additive_mask(mask: torch.Tensor | None, length: int, dtype: torch.dtype) -> torch.Tensor:
    """transformers' attention mask as values to add to the scores ((batch, 1, L, L) or (1, 1, L, L))."""
    lowest = torch.finfo(dtype).min
    if mask is None:
        return torch.full((length, length), lowest, dtype=dtype).triu(1)[None, None]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, lowest)
    return mask.to(dtype)


def rms_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm's arithmetic (fp32 inside, the input's dtype out) through RMSNorm."""
    return RMSNorm.apply(x, norm.weight, norm.variance_epsilon)


class RMSNorm(torch.autograd.Function):
    """weight * (x / rms(x)) with the statistics in fp32; backward keeps x and 1/rms, not fp32 copies of x.
    The weight is frozen (LoRA trains the projections only)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        inverse_rms = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, inverse_rms, weight)
        return weight * (x32 * inverse_rms).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, inverse_rms, weight = ctx.saved_tensors
        normed = x * inverse_rms  # fp32 (or the input's wider dtype)
        grad_normed = grad * weight
        projection = (grad_normed * normed).mean(-1, keepdim=True)
        grad_x = torch.addcmul(grad_normed.to(normed.dtype), normed, projection, value=-1).mul_(inverse_rms)
        return grad_x.to(x.dtype), None, None


class RotaryEmbedding(torch.autograd.Function):
    """x * cos + rotate_half(x) * sin, as x * cos plus a multiply-add on each half (rotate_half(x) is
    (-x2, x1)); backward is the inverse rotation, from cos and sin alone."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(cos, sin)
        half = x.shape[-1] // 2
        out = x * cos
        out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1)
        out[..., half:].addcmul_(x[..., :half], sin[..., half:])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        half = grad.shape[-1] // 2
        grad_x = grad * cos
        grad_x[..., :half].addcmul_(grad[..., half:], sin[..., half:])
        grad_x[..., half:].addcmul_(grad[..., :half], sin[..., :half], value=-1)
        return grad_x, None, None


class SwiGLU(torch.autograd.Function):
    """silu(gate) * up from the gate/up product (gate its first half); backward recomputes silu from the
    gate rather than keeping it, and writes both halves' gradients into one tensor (no concatenation)."""

    @staticmethod
    def forward(ctx, gate_up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate_up)
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (gate_up,) = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        grad_gate_up = torch.empty_like(gate_up)
        grad_gate, grad_up = grad_gate_up.chunk(2, dim=-1)
        torch.mul(grad, F.silu(gate), out=grad_up)
        torch.ops.aten.silu_backward.grad_input(grad * up, gate, grad_input=grad_gate)
        return grad_gate_up
