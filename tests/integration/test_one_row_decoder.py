"""The one-row decoder (tools.models.llama_decoder): a Llama model's layers in few operations for one greedy
sequence, what `serve --int4|--int8` and `ask --int4|--int8` decode through. In fp32 it is transformers' arithmetic with
q/k/v and gate/up stacked and the rotary embedding as a complex product: the same greedy tokens. In int4 and
int8 it keeps the residual stream in fp32 where transformers' quantized path runs bf16, so the two differ by
rounding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_model import build_tiny_model

from tools.models.decoding import greedy_decode
from tools.models.llama_decoder import LlamaDecoder, supported
from tools.models.loading import load_for_inference

QUESTIONS = ("What is a stabilizer code?", "Why?", ("Explain the surface code in two sentences, please, for a "
                                                    "physicist who knows no coding theory, and name one decoder."))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """64 wide (4 heads of 16, 2 key/value heads): int4 groups of 32 divide every layer's input."""
    return build_tiny_model(tmp_path_factory.mktemp("one-row"), hidden=64)


def _prompts(tokenizer) -> list[torch.Tensor]:
    return [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                    add_generation_prompt=True),
                      return_tensors="pt", add_special_tokens=False)["input_ids"] for q in QUESTIONS]


def _layers_path(model, prompt: torch.Tensor, tokenizer, max_new_tokens: int = 24) -> list[int]:
    """Greedy tokens through transformers' layers (the one-row decoder set aside)."""
    one_row, model.one_row_decoder = getattr(model, "one_row_decoder", None), None
    try:
        return greedy_decode(model, prompt, None, max_new_tokens, tokenizer.eos_token_id,
                             tokenizer.pad_token_id)[0].tolist()
    finally:
        model.one_row_decoder = one_row


def test_in_fp32_it_gives_transformers_greedy_tokens_and_hidden_states(model_dir: Path) -> None:
    model, tokenizer = load_for_inference(str(model_dir), precision="fp32")
    decoder = LlamaDecoder.build(model, lambda linear: linear)
    assert decoder is not None
    for prompt in _prompts(tokenizer):
        with torch.inference_mode():
            expected = model.model(input_ids=prompt).last_hidden_state[:, -1]
        assert torch.allclose(decoder.last_hidden(prompt), expected, atol=1e-5, rtol=1e-4)
        tokens = decoder.decode(prompt, 24, {tokenizer.eos_token_id})
        assert tokens == _layers_path(model, prompt, tokenizer)[:len(tokens)] and len(tokens) > 1


@pytest.mark.parametrize("precision", ["int4", "int8"])
def test_quantized_weights_decode_one_row_through_it_close_to_transformers_layers(model_dir: Path,
                                                                                precision: str) -> None:
    """An int4 or int8 model carries the decoder; greedy_decode takes it for one unpadded row (not for
    batches). Its last hidden state is transformers' one with the same quantized weights up to bf16 rounding
    of the residual stream."""
    model, tokenizer = load_for_inference(str(model_dir), precision=precision)
    assert isinstance(model.one_row_decoder, LlamaDecoder)
    for prompt in _prompts(tokenizer):
        with torch.inference_mode():
            expected = model.model(input_ids=prompt).last_hidden_state[:, -1].float()
        found = model.one_row_decoder.last_hidden(prompt)
        assert (found - expected).norm() <= 0.05 * expected.norm()
    calls = []
    decoder = model.one_row_decoder
    real = decoder.decode
    decoder.decode = lambda *a, **k: calls.append(1) or real(*a, **k)
    prompt = _prompts(tokenizer)[0]
    greedy_decode(model, prompt, None, 8, tokenizer.eos_token_id, tokenizer.pad_token_id)
    batch = torch.cat([prompt, prompt])
    greedy_decode(model, batch, torch.ones_like(batch), 8, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert calls == [1]


def test_it_stops_as_the_greedy_loop_does(model_dir: Path) -> None:
    """The end-of-sequence token ends a row (and is kept), `on_token` sees each token as it comes, and
    `should_stop` stops after the current token."""
    model, tokenizer = load_for_inference(str(model_dir), precision="fp32")
    decoder = LlamaDecoder.build(model, lambda linear: linear)
    prompt = _prompts(tokenizer)[2]
    free = decoder.decode(prompt, 12, set())
    assert len(free) == 12
    assert decoder.decode(prompt, 12, {free[3]}) == free[:free.index(free[3]) + 1]
    seen = []
    assert decoder.decode(prompt, 12, set(), on_token=seen.append, should_stop=lambda: len(seen) >= 5) == free[:5]
    assert seen == free[:5]


@pytest.mark.parametrize(("change", "reason"), [
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}, "rotary scaling"),
    ({"attention_bias": True}, "biases"),
    ({"hidden_act": "gelu"}, "activation"),
])
def test_other_architectures_keep_transformers_layers(model_dir: Path, change: dict, reason: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    assert supported(config) is None
    for key, value in change.items():
        setattr(config, key, value)
    assert reason in (supported(config) or "")
