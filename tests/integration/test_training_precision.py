"""Training at native bf16 with little memory: the chunked vocabulary loss equals the full one (value and
gradients), and a run with bf16 base weights follows the fp32 run's loss curve."""

from __future__ import annotations

import pytest
import torch

from tools.hardware import ModelShape, plan_memory
from tools.training.backends import train_lora
from tools.training.config import TrainingConfig
from tools.training.encoding import IGNORED, PAD_MULTIPLE, EncodedExample, collate, padded_width
from tools.training.linear_cross_entropy import linear_cross_entropy
from tools.training.lora import LoraRecipe


def _full_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.T).float()
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])
def test_chunked_cross_entropy_equals_the_full_one_in_value_and_gradients(chunk_rows: int) -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=generator, dtype=torch.float64)
    weight = torch.randn(50, 16, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 50, (37,), generator=generator)
    leaves = [hidden.clone().requires_grad_(), weight.clone().requires_grad_()]
    chunked = linear_cross_entropy(leaves[0], leaves[1], targets, chunk_rows=chunk_rows)
    (chunked * 0.5).backward()  # a scaled loss (the recipe divides by the step's supervised tokens)
    reference = [hidden.clone().requires_grad_(), weight.clone().requires_grad_()]
    expected = _full_loss(reference[0], reference[1], targets)
    (expected * 0.5).backward()
    assert chunked.dtype == torch.float64  # never below fp32; fp64 inputs keep fp64
    assert torch.allclose(chunked.double(), expected.double(), rtol=1e-6)
    assert torch.allclose(leaves[0].grad, reference[0].grad, rtol=1e-5, atol=1e-7)
    assert torch.allclose(leaves[1].grad, reference[1].grad, rtol=1e-5, atol=1e-7)


def test_chunked_cross_entropy_with_a_frozen_bf16_head_and_without_grad_mode() -> None:
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(20, 32, generator=generator).bfloat16().requires_grad_()
    weight = torch.randn(300, 32, generator=generator).bfloat16()  # frozen, as the base model's head
    targets = torch.randint(0, 300, (20,), generator=generator)
    loss = linear_cross_entropy(hidden, weight, targets, chunk_rows=6)
    loss.backward()
    reference = hidden.detach().clone().requires_grad_()
    expected = _full_loss(reference, weight, targets)
    expected.backward()
    assert weight.grad is None and hidden.grad.dtype == torch.bfloat16
    assert torch.allclose(loss, expected, rtol=1e-3)
    assert torch.allclose(hidden.grad.float(), reference.grad.float(), rtol=2e-2, atol=2e-3)
    with torch.no_grad():
        assert torch.allclose(linear_cross_entropy(hidden, weight, targets, chunk_rows=6), expected, rtol=1e-3)


def test_chunked_cross_entropy_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected hidden \(N, H\) and targets \(N,\)"):
        linear_cross_entropy(torch.zeros(4, 8), torch.zeros(10, 8), torch.zeros(3, dtype=torch.long))


def _chat(i: int) -> dict:
    return {"messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": f"What does code {i} protect?"},
                         {"role": "assistant", "content": f"Code {i} protects {i % 5 + 1} logical qubits."}]}


def _loss_curve(model, tmp_path, precision: str):
    config = TrainingConfig(base_model_path=str(model), output_dir=str(tmp_path / precision / "adapter"),
                            checkpoint_dir=str(tmp_path / precision / "checkpoints"), precision=precision,
                            batch_size=4, max_steps=12, checkpoint_every=100, threads=1, learning_rate=5e-3,
                            lora_dropout=0.0)
    return train_lora(config, [_chat(i) for i in range(16)], [_chat(i) for i in range(16, 20)])


# Tolerance: 0.1% of the loss at every step and for the validation loss. bf16 keeps 8 mantissa bits;
# the LoRA weights, their gradients and AdamW's state are fp32 in both runs, so only the forward and
# backward products are rounded (the frozen base's and, under autocast, the adapter's). Measured on this
# model: at most 0.012% apart over 12 steps with the adapter in fp32, 0.015% with it in bf16.
BF16_LOSS_TOLERANCE = 1e-3


def test_bf16_base_weights_follow_the_fp32_loss_curve(tiny_model_dir, tmp_path) -> None:
    fp32 = _loss_curve(tiny_model_dir, tmp_path, "fp32")
    bf16 = _loss_curve(tiny_model_dir, tmp_path, "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert fp32.loss_history[-1] < fp32.loss_history[0] - 0.1  # it learns, so the comparison means something
    for step, (a, b) in enumerate(zip(fp32.loss_history, bf16.loss_history, strict=True), start=1):
        assert abs(a - b) <= BF16_LOSS_TOLERANCE * a, f"step {step}: fp32 {a:.4f} vs bf16 {b:.4f}"
    assert abs(fp32.val_loss - bf16.val_loss) <= BF16_LOSS_TOLERANCE * fp32.val_loss


def test_with_bf16_base_weights_the_adapter_computes_in_bf16_and_keeps_fp32_weights(tiny_model_dir) -> None:
    from tools.training.base_model import attach_lora, load_base_model
    from tools.training.parallel import SupervisedLoss

    config = TrainingConfig(base_model_path=str(tiny_model_dir), output_dir="unused", checkpoint_dir="unused",
                            lora_dropout=0.0)
    model = attach_lora(load_base_model(str(tiny_model_dir), torch.bfloat16, {})[1], config, "cpu")
    seen: set[torch.dtype] = set()
    layers = [m for name, m in model.named_modules() if name.endswith("lora_A.default")]
    for layer in layers:
        layer.register_forward_hook(lambda _m, inputs, output: seen.update({inputs[0].dtype, output.dtype}))
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :4] = -100
    for adapter_dtype, expected in ((torch.bfloat16, {torch.bfloat16}), (None, {torch.float32})):
        seen.clear()
        model.zero_grad()
        loss = SupervisedLoss(model, adapter_dtype)(ids, torch.ones_like(ids), labels)
        loss.backward()
        assert layers and seen == expected and loss.dtype == torch.float32
        trained = [p for p in model.parameters() if p.requires_grad]
        assert trained and all(p.dtype == p.grad.dtype == torch.float32 for p in trained)


SMOL = ModelShape(hidden=576, intermediate=1536, layers=30, heads=9, vocab=49152, parameters=135_000_000)


def test_cpu_memory_plan_packs_micro_batches_by_tokens_and_stays_small() -> None:
    plan = plan_memory(SMOL, 512, 8, available=64 * 2**30, value_bytes=2, max_micro_tokens=1024,
                       head_chunk_rows=256)
    assert (plan.micro_batch_tokens, plan.micro_batch, plan.gradient_accumulation) == (1024, 2, 4)
    assert not plan.gradient_checkpointing and plan.estimated_bytes < 2 * 2**30
    longer = plan_memory(SMOL, 1500, 8, available=64 * 2**30, value_bytes=2, max_micro_tokens=1024)
    assert (longer.micro_batch_tokens, longer.micro_batch) == (1500, 1)  # one example even when longer
    tight = plan_memory(SMOL, 512, 8, available=int(1.6 * 2**30), value_bytes=2, max_micro_tokens=1024)
    assert tight.micro_batch_tokens < 1024 or tight.gradient_checkpointing
    assert tight.fits


def test_micro_batches_follow_the_real_lengths(tiny_model_dir, tmp_path) -> None:
    recipe = LoraRecipe(TrainingConfig(base_model_path=str(tiny_model_dir), output_dir=str(tmp_path / "a"),
                                       checkpoint_dir=str(tmp_path / "c"), precision="fp32", batch_size=8,
                                       micro_batch_tokens=160, threads=1))
    recipe.setup([_chat(i) for i in range(6)] + [{"messages": [*_chat(0)["messages"][:2], {
        "role": "assistant", "content": "qubits " * 40}]} for _ in range(2)], [])
    micro_batches = recipe.batches.micro_batches(list(range(8)))
    assert sum(len(m) for m in micro_batches) == 8
    assert all(len(m) * padded_width(max(len(e.input_ids) for e in m)) <= 160 or len(m) == 1 for m in micro_batches)
    assert len(micro_batches[0]) > len(micro_batches[-1])  # short examples share, long ones go alone


def test_micro_batches_are_padded_to_a_few_widths_and_the_padding_is_never_trained() -> None:
    """Padding to a multiple of PAD_MULTIPLE keeps the number of tensor shapes (kernels built and cached per
    shape) small; padded positions are masked out and never labelled."""
    examples = [EncodedExample(list(range(1, n + 1)), [IGNORED] * 2 + list(range(3, n + 1))) for n in (5, 33, 40)]
    ids, mask, labels = collate(examples, pad_token_id=0, device="cpu")
    assert ids.shape == (3, 64) and PAD_MULTIPLE == 32 and padded_width(32) == 32 and padded_width(33) == 64
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        assert ids[row, :n].tolist() == example.input_ids and labels[row, :n].tolist() == example.labels
        assert mask[row].tolist() == [1] * n + [0] * (64 - n)
        assert set(labels[row, n:].tolist()) <= {IGNORED} and set(ids[row, n:].tolist()) <= {0}


def test_supervised_loss_through_the_chunked_head_equals_the_models_own_loss(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM

    from tools.training.linear_cross_entropy import supervised_loss_sum

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (3, 20), generator=generator)
    mask = torch.ones_like(ids)
    mask[2, 15:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :6] = -100  # a prompt: no loss there
    with torch.no_grad():
        ours = supervised_loss_sum(model, ids, mask, labels)
        own = model(input_ids=ids, attention_mask=mask, labels=labels).loss * int((labels[:, 1:] != -100).sum())
    assert torch.allclose(ours, own.float(), rtol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_short_examples_train_with_eager_attention_on_a_cpu_and_the_same_loss(tiny_model_dir, tmp_path,
                                                                             precision) -> None:
    """On a CPU with examples of at most EAGER_ATTENTION_MAX_TOKENS the recipe switches to eager attention
    (faster there than SDPA's flash kernel); the loss and its gradient are SDPA's within rounding."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA run keeps SDPA")
    recipe = LoraRecipe(TrainingConfig(base_model_path=str(tiny_model_dir), output_dir=str(tmp_path / "a"),
                                       checkpoint_dir=str(tmp_path / "c"), precision=precision, threads=1,
                                       lora_dropout=0.0))  # no random masks: the two passes compare
    recipe.setup([_chat(i) for i in range(8)], [])
    base = recipe.model.get_base_model()
    assert base.config._attn_implementation == "eager"
    batch = recipe._collate(recipe.train_set[:4])
    losses, grads = {}, {}
    for implementation in ("eager", "sdpa"):
        base.set_attn_implementation(implementation)
        recipe.model.zero_grad()
        loss = recipe._loss_sum(*batch)
        loss.backward()
        losses[implementation] = float(loss)
        grads[implementation] = torch.cat([p.grad.flatten().float() for p in recipe.model.parameters()
                                           if p.requires_grad and p.grad is not None])
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    assert losses["eager"] == pytest.approx(losses["sdpa"], rel=tolerance)
    cosine = torch.nn.functional.cosine_similarity(grads["eager"], grads["sdpa"], dim=0)
    assert cosine > 1 - tolerance


def test_long_examples_keep_sdpa(tiny_model_dir, tmp_path) -> None:
    long_answer = {"messages": [*_chat(0)["messages"][:2], {"role": "assistant", "content": "qubits " * 600}]}
    recipe = LoraRecipe(TrainingConfig(base_model_path=str(tiny_model_dir), output_dir=str(tmp_path / "a"),
                                       checkpoint_dir=str(tmp_path / "c"), precision="fp32", threads=1,
                                       max_seq_len=1024))
    recipe.setup([_chat(1), long_answer], [])
    assert recipe.model.get_base_model().config._attn_implementation != "eager"
