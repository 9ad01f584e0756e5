"""The fused training forward (tools.training.fused_decoder) computes what transformers' layers and peft's
adapters compute: the same loss and LoRA gradients in fp32 and bf16, with padding, grouped-query heads,
projections without adapters and long sequences; generation and the saved adapter are unchanged; a run
it cannot take says why and trains as before."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tools.training import fused_decoder
from tools.training.config import TrainingConfig
from tools.training.fused_decoder import RMSNorm, RotaryEmbedding, fuse_decoder_layers, fusion_blocker
from tools.training.lora import LoraRecipe
from tools.training.parallel import SupervisedLoss


def _adapted_model(model_dir, dtype: torch.dtype, targets="all-linear"):
    from peft import LoraConfig, get_peft_model

    from tools.training.base_model import load_base_model

    model = load_base_model(str(model_dir), dtype, {})[1]
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, init_lora_weights=False)
    return get_peft_model(model, config)


def _batch(vocab: int, length: int = 20):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (3, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, length - 7:] = 0  # a shorter row, padded on the right as collate pads
    mask[2, :4] = 0  # and one padded on the left: only the mask keeps its tokens from reading the padding
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :5] = -100  # a prompt
    return ids, mask, labels


def _loss_and_grads(model, adapter_dtype, batch):
    model.zero_grad()
    loss = SupervisedLoss(model, adapter_dtype)(*batch)
    loss.backward()
    grads = {name: p.grad.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads


def _compare(model, adapter_dtype, batch, tolerance: float) -> None:
    fused = copy.deepcopy(model)
    assert fuse_decoder_layers(fused) == model.config.num_hidden_layers
    loss, grads = _loss_and_grads(model, adapter_dtype, batch)
    fused_loss, fused_grads = _loss_and_grads(fused, adapter_dtype, batch)
    assert fused_loss == pytest.approx(loss, rel=tolerance)
    assert grads.keys() == fused_grads.keys() and grads
    for name, grad in grads.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), fused_grads[name].flatten(), dim=0)
        assert cosine > 1 - tolerance, name
        assert torch.allclose(fused_grads[name].norm(), grad.norm(), rtol=10 * tolerance), name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fused_layers_give_the_same_loss_and_lora_gradients(tiny_model_dir, precision) -> None:
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    model = _adapted_model(tiny_model_dir, dtype)
    batch = _batch(model.config.vocab_size)
    _compare(model, None if precision == "fp32" else torch.bfloat16, batch, 1e-5 if precision == "fp32" else 2e-2)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_either_attention_mask_and_projections_without_adapters(tiny_model_dir, attention) -> None:
    """q_proj and v_proj adapted only: the stacked products hold projections without adapters; the mask
    arrives additive (eager) or boolean / absent (SDPA)."""
    model = _adapted_model(tiny_model_dir, torch.float32, targets=["q_proj", "v_proj", "down_proj"])
    model.get_base_model().set_attn_implementation(attention)
    _compare(model, None, _batch(model.config.vocab_size), 1e-5)
    unpadded = tuple(t[:1] for t in _batch(model.config.vocab_size))
    _compare(model, None, unpadded, 1e-5)


def test_sequences_longer_than_the_eager_limit_go_through_sdpa(tiny_model_dir, monkeypatch) -> None:
    model = _adapted_model(tiny_model_dir, torch.float32)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(fused_decoder.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    monkeypatch.setattr(fused_decoder, "EAGER_ATTENTION_MAX_TOKENS", 16)
    _compare(model, None, _batch(model.config.vocab_size, length=24), 1e-5)
    assert calls  # the fused layers took SDPA for the 24-token rows


def test_the_base_weights_stay_and_generation_goes_through_the_layers_own_forward(tiny_model_dir) -> None:
    model = _adapted_model(tiny_model_dir, torch.float32)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    prompt = torch.tensor([[5, 9, 13, 2, 7]])
    expected = model.generate(input_ids=prompt, max_new_tokens=6, do_sample=False)
    fuse_decoder_layers(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert torch.equal(model.generate(input_ids=prompt, max_new_tokens=6, do_sample=False), expected)


def test_norm_and_rotary_functions_have_the_right_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(8, dtype=torch.float64, generator=generator)
    assert torch.autograd.gradcheck(lambda t: RMSNorm.apply(t, weight, 1e-6), (x,))
    cos, sin = torch.randn(2, 1, 3, 8, dtype=torch.float64, generator=generator).unbind(0)
    heads = torch.randn(2, 4, 3, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: RotaryEmbedding.apply(t, cos, sin), (heads,))
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    expected, _ = apply_rotary_pos_emb(heads, heads, cos, sin, unsqueeze_dim=0)
    assert torch.allclose(RotaryEmbedding.apply(heads, cos, sin), expected)


def test_what_the_fused_layers_cannot_train_is_named(tiny_model_dir) -> None:
    model = _adapted_model(tiny_model_dir, torch.float32)
    plain = {"device": "cpu", "strategy": "single", "qlora": False, "lora_dropout": 0.0}
    assert fusion_blocker(model, **plain) is None
    assert "cuda" in fusion_blocker(model, **{**plain, "device": "cuda"})
    assert "FSDP" in fusion_blocker(model, **{**plain, "strategy": "fsdp"})
    assert "dropout 0.05" in fusion_blocker(model, **{**plain, "lora_dropout": 0.05})
    assert "QLoRA" in fusion_blocker(model, **{**plain, "qlora": True})
    model.get_base_model().model.layers[0].mlp.down_proj.base_layer.weight.requires_grad_(True)
    assert "trainable base projection" in fusion_blocker(model, **plain)


def _chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"What does code {i} protect?"},
                         {"role": "assistant", "content": f"Code {i} protects {i % 5 + 1} logical qubits."}]}


@pytest.mark.parametrize(("dropout", "precision"), [(0.0, "bf16"), (0.0, "fp32"), (0.1, "bf16")])
def test_the_recipe_fuses_where_it_can_and_says_why_not(tiny_model_dir, tmp_path, dropout, precision) -> None:
    events = []
    recipe = LoraRecipe(TrainingConfig(base_model_path=str(tiny_model_dir), output_dir=str(tmp_path / "a"),
                                       checkpoint_dir=str(tmp_path / "c"), precision=precision, threads=1,
                                       lora_dropout=dropout),
                        on_event=lambda message, data: events.append((message, data)))
    long_answer = {"messages": [*_chat(0)["messages"][:1], {"role": "assistant", "content": "qubits " * 120}]}
    recipe.setup([_chat(i) for i in range(6)] + [long_answer] * 2, [])
    layers = dict(events)["training layers"]
    plan = dict(events)["memory plan"]
    if dropout:
        assert layers["fused"] == 0 and "dropout" in layers["why"]
        assert plan["micro_batch_tokens"] == 512  # CPU_MICRO_BATCH_TOKENS
    else:
        assert layers["fused"] == 2
        # CPU_FUSED_MICRO_BATCH_TOKENS in bf16; fp32 values take twice the bytes
        assert plan["micro_batch_tokens"] == (1024 if precision == "bf16" else 512)
    result = recipe.train()
    assert result.steps == recipe.total_steps and all(math.isfinite(loss) for loss in result.loss_history)
