"""Cross-entropy through the vocabulary projection, a chunk of positions at a time.

A causal LM's loss materialises logits of shape (positions x vocabulary): for SmolLM2 (49k tokens) at
8 x 512 positions that is 800 MB in fp32, and autograd keeps it, its softmax and its gradient alive
until the backward pass. Here the projection, the softmax and their gradient are computed for
`chunk_rows` positions at a time inside one autograd function: the forward pass already computes the
gradient with respect to the hidden states (and to the head's weight when it is trained), which is
all the backward pass needs, so at most one chunk's logits exist at any moment and nothing is
recomputed. The loss is accumulated in fp32 whatever the dtype of the hidden states and the weight
(bf16 on CPUs with native bf16). The same idea as Liger-Kernel's fused linear cross-entropy, in
plain PyTorch. Imports torch at import time: the training recipe imports this module inside its loss."""

from __future__ import annotations

import torch

DEFAULT_CHUNK_ROWS = 256


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """Summed cross-entropy of `targets` (N,) under logits `hidden (N, H) @ weight (V, H).T`, in fp32
    (or fp64 for fp64 inputs).

    Differentiable with respect to `hidden` and (when it requires grad) `weight`; without grad mode it
    only computes the value. Every target must be a real token id (select supervised positions first)."""
    if hidden.dim() != 2 or targets.dim() != 1 or hidden.shape[0] != targets.shape[0]:
        raise ValueError(f"expected hidden (N, H) and targets (N,), got {tuple(hidden.shape)} and "
                         f"{tuple(targets.shape)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        return _loss_only(hidden, weight, targets, chunk_rows)
    return LinearCrossEntropy.apply(hidden, weight, targets, chunk_rows)


def supervised_loss_sum(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        labels: torch.Tensor) -> torch.Tensor | None:
    """Summed next-token cross-entropy (fp32) of a causal LM over the positions whose label is not -100,
    the head applied only to those positions, a chunk at a time. `model` is a transformers causal LM or a
    peft model around one (its LoRA layers run). None when the model's head must not be bypassed (a bias,
    a LoRA on the head, int8 weights, logit soft-capping): the caller then takes the model's own loss."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = causal_lm.get_decoder(), causal_lm.get_output_embeddings()
    plain_head = (isinstance(getattr(head, "weight", None), torch.Tensor) and getattr(head, "bias", None) is None
                  and not hasattr(head, "base_layer"))  # no weight: a quantized head (tools.models.int8)
    if decoder is None or not plain_head or getattr(causal_lm.config, "final_logit_softcapping", None):
        return None
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    supervised = targets != -100
    return linear_cross_entropy(hidden[:, :-1][supervised], head.weight, targets[supervised])


def _loss_only(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
    for start in range(0, hidden.shape[0], chunk_rows):
        logits = _at_least_fp32(hidden[start : start + chunk_rows] @ weight.T)
        total += torch.nn.functional.cross_entropy(logits, targets[start : start + chunk_rows], reduction="sum")
    return total


def _at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _chunk_loss_and_grad(hidden: torch.Tensor, weight: torch.Tensor,
                         targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, d loss / d logits) for one chunk; the softmax is taken in fp32."""
    logits = _at_least_fp32(hidden @ weight.T)
    log_norm = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(1, targets[:, None]).squeeze(1)
    loss = (log_norm - picked).sum()
    grad_logits = logits.sub_(log_norm[:, None]).exp_()  # the softmax, in place of the logits
    grad_logits[torch.arange(targets.shape[0], device=targets.device), targets] -= 1.0
    return loss, grad_logits


class LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and the input gradients chunk by chunk; backward only scales them."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_rows: int) -> torch.Tensor:
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = (torch.zeros(weight.shape, dtype=torch.promote_types(weight.dtype, torch.float32),
                                   device=weight.device) if want_weight else None)
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            loss, grad_logits = _chunk_loss_and_grad(hidden[rows], weight, targets[rows])
            total += loss
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits.to(weight.dtype) @ weight
            if grad_weight is not None:
                grad_weight += grad_logits.T @ hidden[rows].to(grad_weight.dtype)
        ctx.grad_hidden = grad_hidden
        ctx.grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        def scaled(grad: torch.Tensor | None) -> torch.Tensor | None:
            return None if grad is None else grad * grad_output.to(grad.dtype)

        return scaled(ctx.grad_hidden), scaled(ctx.grad_weight), None, None
