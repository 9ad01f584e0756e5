"""Fast generation for the evaluator, `ftagent ask` and the server: batched greedy answers equal the
answers generated one at a time, and the merged fast path gives the same greedy tokens as peft's
unmerged LoRA path (in fp32 and in the bf16 the CPU computes natively), and int8 weights stay within
a bound of fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_model import random_adapter

from tools.evaluation.scoring import answer_rows, generate_answers
from tools.models.loading import inference_dtype, load_for_inference, scoring_precision
from tools.serving.server import ChatCompletionRequest, ModelServer, ServedNames

QUESTIONS = ("What is a stabilizer code?", "Why?",
             "Explain the surface code in two sentences, please, for a physicist who knows no coding theory.",
             "What is a logical qubit and how many physical qubits does it need?", "Name one decoder.")


def _records(questions=QUESTIONS) -> list[dict]:
    return [{"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": q},
                          {"role": "assistant", "content": ""}]} for q in questions]


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory) -> str:
    return str(random_adapter(tiny_model_dir, tmp_path_factory.mktemp("fast-adapter") / "adapter", seed=3))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batched_evaluator_answers_equal_one_at_a_time_answers(tiny_model_dir: Path, adapter: str,
                                                               precision: str) -> None:
    model, tokenizer = load_for_inference(str(tiny_model_dir), adapter, precision=precision, merge=True)
    records = _records()
    alone = [generate_answers(model, tokenizer, [r], max_new_tokens=12, raw=True)[0] for r in records]
    batched = generate_answers(model, tokenizer, records, max_new_tokens=12, batch_size=4, raw=True)
    assert batched == alone
    assert len(set(alone)) == len(alone)  # different prompts, different answers: the order is checked too
    assert tokenizer.padding_side == "right"


def test_answer_batches_shrink_to_fit_the_kv_cache_budget(tiny_model_dir: Path) -> None:
    """The evaluator decodes many answers at a time, but never more rows than their KV cache has room for:
    keys and values of every layer, for every token of a row, in the weights' dtype."""
    model, _ = load_for_inference(str(tiny_model_dir), precision="fp32")
    config = model.config
    per_token = 2 * config.num_hidden_layers * (config.num_key_value_heads or config.num_attention_heads) \
        * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads) * 4
    assert answer_rows(model, 100, 48, budget_bytes=10**12) == 48  # room for all: the wanted rows
    assert answer_rows(model, 100, 48, budget_bytes=per_token * 100 * 5) == 5
    assert answer_rows(model, 100, 48, budget_bytes=per_token * 100 * 5 - 1) == 4
    assert answer_rows(model, 100, 48, budget_bytes=1) == 1  # never none
    assert answer_rows(model.to(torch.bfloat16), 100, 48, budget_bytes=per_token * 100 * 5) == 10  # half the bytes


def _greedy_tokens(model, tokenizer, question: str, max_new_tokens: int = 16) -> list[int]:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                           add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                pad_token_id=tokenizer.pad_token_id)
    return output[0, ids.shape[1]:].tolist()


def test_merged_fast_path_gives_the_unmerged_greedy_tokens(tiny_model_dir: Path, adapter: str) -> None:
    unmerged, tokenizer = load_for_inference(str(tiny_model_dir), adapter)
    merged, _ = load_for_inference(str(tiny_model_dir), adapter, merge=True)
    base, _ = load_for_inference(str(tiny_model_dir), None)
    assert not hasattr(merged, "peft_config") and hasattr(unmerged, "peft_config")
    for question in QUESTIONS:
        tokens = _greedy_tokens(merged, tokenizer, question)
        assert tokens == _greedy_tokens(unmerged, tokenizer, question), question
        assert tokens != _greedy_tokens(base, tokenizer, question)  # the adapter is really in the weights


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer([q for q in QUESTIONS], return_tensors="pt", padding=True)
    with torch.inference_mode():
        return model(**ids).logits.float()


def test_merged_bf16_weights_are_as_close_to_fp32_as_the_unmerged_bf16_path(tiny_model_dir: Path,
                                                                             adapter: str) -> None:
    """In bf16 the two paths round differently (one rounding of W + BA, against a bf16 W plus an fp32 LoRA),
    so a random model's near-ties may flip a greedy token; what must hold is that merging costs no more
    than rounding: the merged bf16 logits stay within 2x the unmerged bf16 path's distance from the fp32
    model (measured: 1.5x with this deliberately strong adapter, LoRA scale 16, whose delta is rounded too)
    and under a tenth of the adapter's own effect on the logits."""
    reference_model, tokenizer = load_for_inference(str(tiny_model_dir), adapter)
    reference = _logits(reference_model, tokenizer)
    merged = load_for_inference(str(tiny_model_dir), adapter, precision="bf16", merge=True)[0]
    unmerged = load_for_inference(str(tiny_model_dir), adapter, precision="bf16")[0]
    assert next(merged.parameters()).dtype == torch.bfloat16
    merged_error = (_logits(merged, tokenizer) - reference).abs().mean()
    unmerged_error = (_logits(unmerged, tokenizer) - reference).abs().mean()
    adapter_effect = (reference - _logits(load_for_inference(str(tiny_model_dir))[0], tokenizer)).abs().mean()
    assert merged_error <= 2 * unmerged_error
    assert merged_error < 0.1 * adapter_effect  # the rounding is small next to what the adapter changes


def test_auto_precision_decodes_in_fp32_on_a_cpu_unless_it_has_native_bf16_and_a_batch(monkeypatch) -> None:
    from tools import hardware

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine takes bf16")
    for flags in ({"avx2", "avx512_bf16"}, {"avx2"}, {"avx2", "avx512_bf16", "amx_bf16"}):
        monkeypatch.setattr(hardware, "_cpu_flags", lambda flags=flags: flags)
        assert inference_dtype("auto") == torch.float32  # one sequence at a time: ftagent ask, serve
        batched = torch.bfloat16 if "avx512_bf16" in flags else torch.float32
        assert inference_dtype("auto", rows=8) == batched, flags  # the evaluator's batches
    assert inference_dtype("fp32") == torch.float32 and inference_dtype("bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32, int8, int4, not 'fp16'"):
        inference_dtype("fp16")


def test_auto_scores_fp32_weights_in_bf16_autocast_on_a_cpu_with_native_bf16(tiny_model_dir: Path, adapter: str,
                                                                            monkeypatch) -> None:
    """Teacher-forced scoring (NLL, perplexity) is batched enough for bf16 to pay on any CPU with native bf16;
    an explicit precision, bf16 weights and CPUs without it score as loaded. The scores stay close."""
    from tools import hardware
    from tools.evaluation.scoring import answer_nll

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine loads bf16 weights")
    model, tokenizer = load_for_inference(str(tiny_model_dir), adapter, precision="fp32", merge=True)
    records = [{**r, "messages": [*r["messages"][:-1], {"role": "assistant", "content": "A code on a lattice."}]}
               for r in _records()]
    exact = answer_nll(model, tokenizer, records)
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    with scoring_precision(model, "auto"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        autocast = answer_nll(model, tokenizer, records)
    assert autocast != exact and abs(autocast - exact) / exact < 0.01
    for precision in ("fp32", "bf16", "int8"):
        with scoring_precision(model, precision):
            assert not torch.is_autocast_enabled("cpu"), precision
    with scoring_precision(model.to(torch.bfloat16), "auto"):
        assert not torch.is_autocast_enabled("cpu")  # already bf16
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: {"avx2"})
    with scoring_precision(model.float(), "auto"):
        assert not torch.is_autocast_enabled("cpu")  # bf16 would be emulated: slower


def _answers(server: ModelServer, model: str) -> list[str]:
    requests = [ChatCompletionRequest(model=model, messages=[{"role": "user", "content": q}], max_tokens=10,
                                      temperature=0) for q in QUESTIONS[:3]]
    jobs = [server.prepare(r, None) for r in requests]
    return [server.generate(job).text for job in jobs] + [r.text for r in server.generate_batch(jobs)]


def test_one_served_adapter_runs_merged_and_answers_as_the_unmerged_path(tiny_model_dir: Path, adapter: str,
                                                                         tmp_path: Path) -> None:
    options = {"base_name": "tiny-base", "max_batch_size": 1, "precision": "fp32"}  # exact: see above
    fast = ModelServer(str(tiny_model_dir), {"ft-v1": adapter}, **options)
    plain = ModelServer(str(tiny_model_dir), {"ft-v1": adapter}, merge_single_adapter=False, **options)
    assert fast.merged is not None and plain.merged is None
    assert _answers(fast, "ft-v1") == _answers(plain, "ft-v1")
    assert _answers(fast, "tiny-base") == _answers(plain, "tiny-base") != _answers(fast, "ft-v1")
    second = str(random_adapter(tiny_model_dir, tmp_path / "second", seed=4))
    fast.update(_names({"ft-v1": adapter, "ft-v2": second}))
    assert fast.merged is None  # two adapters share the base: peft's unmerged path for both
    fast.update(_names({"ft-v2": second}))
    assert fast.merged is not None and fast.merged.adapter.path == second


def _names(adapters: dict[str, str]) -> ServedNames:
    return ServedNames(adapters=adapters)


def test_int8_weights_stay_as_close_to_fp32_as_twice_bf16_rounding(tiny_model_dir: Path, adapter: str) -> None:
    """Int8 weight-only layers (one scale per output row, bf16 activations) change the merged model's
    logits by at most 3x what bf16 weights alone change them (measured 1.8x) and by under a tenth of the
    adapter's own effect; every linear layer, the head too, is int8; the base takes the same path."""
    from tools.models.int8 import Int8Linear

    reference_model, tokenizer = load_for_inference(str(tiny_model_dir), adapter, precision="fp32", merge=True)
    reference = _logits(reference_model, tokenizer)
    int8 = load_for_inference(str(tiny_model_dir), adapter, precision="int8", merge=True)[0]
    linear = [m for m in int8.modules() if isinstance(m, (torch.nn.Linear, Int8Linear))]
    assert linear and all(isinstance(m, Int8Linear) for m in linear) and isinstance(int8.lm_head, Int8Linear)
    int8_error = (_logits(int8, tokenizer) - reference).abs().mean()
    bf16 = load_for_inference(str(tiny_model_dir), adapter, precision="bf16", merge=True)[0]
    bf16_error = (_logits(bf16, tokenizer) - reference).abs().mean()
    adapter_effect = (reference - _logits(load_for_inference(str(tiny_model_dir))[0], tokenizer)).abs().mean()
    assert 0 < int8_error <= 3 * bf16_error
    assert int8_error < 0.1 * adapter_effect
    tokens = _greedy_tokens(int8, tokenizer, QUESTIONS[0])
    assert len(tokens) == 16 and all(0 <= t < len(tokenizer) for t in tokens)
    with pytest.raises(ValueError, match="int8 weights need the adapter merged"):
        load_for_inference(str(tiny_model_dir), adapter, precision="int8")


def test_an_int8_server_merges_its_adapter_into_int8_and_keeps_the_shared_model_float(tiny_model_dir: Path,
                                                                                   adapter: str) -> None:
    from tools.models.int8 import Int8Linear

    server = ModelServer(str(tiny_model_dir), {"ft-v1": adapter}, base_name="tiny-base", max_batch_size=1,
                         precision="int8")
    assert isinstance(server.merged.model.lm_head, Int8Linear)
    assert not any(isinstance(m, Int8Linear) for m in server.model.modules())
    assert next(server.model.parameters()).dtype == torch.float32  # base requests: the fp32 model
    tuned, base = _answers(server, "ft-v1"), _answers(server, "tiny-base")
    assert all(tuned) and tuned != base


def test_the_evaluator_scores_int8_weights_close_to_fp32(tiny_model_dir: Path, adapter: str) -> None:
    """compare_with_base in int8: base and tuned both int8 (the head's loss through the model's own
    logits, since an int8 head has no weight to chunk), answer NLL within 5% of fp32's."""
    from tools.evaluation.scoring import compare_with_base

    records = [{"messages": [*r["messages"][:-1], {"role": "assistant", "content": "A stabilizer code."}]}
               for r in _records()[:3]]
    scores = {p: compare_with_base(str(tiny_model_dir), adapter, records, [], max_new_tokens=6, generate_limit=2,
                                   precision=p) for p in ("fp32", "int8")}
    for model in ("tuned", "base"):
        exact, int8 = getattr(scores["fp32"], model), getattr(scores["int8"], model)
        assert int8.answer_nll != exact.answer_nll and int8.answer_nll == pytest.approx(exact.answer_nll, rel=0.05)
        assert int8.generated == 2


def _prompt_ids(tokenizer, questions=QUESTIONS) -> list[torch.Tensor]:
    return [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                    add_generation_prompt=True),
                      return_tensors="pt", add_special_tokens=False)["input_ids"] for q in questions]


def _generate(model, tokenizer, ids, mask, max_new_tokens: int) -> list[list[int]]:
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return output[:, ids.shape[1]:].tolist()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_hand_rolled_greedy_loop_gives_generates_tokens(tiny_model_dir: Path, adapter: str,
                                                             precision: str) -> None:
    """One row and a left-padded batch: the same tokens as transformers generate, padding after each
    row's end-of-sequence token included. (An int8 row alone goes through the one-row decoder, whose fp32
    residual stream rounds otherwise than transformers' bf16 one: tests/integration/test_one_row_decoder.py;
    set aside here, the loop is what is tested.)"""
    from tools.models.decoding import greedy_decode

    model, tokenizer = load_for_inference(str(tiny_model_dir), adapter, precision=precision, merge=True)
    model.one_row_decoder = None
    for ids in _prompt_ids(tokenizer):
        ones = torch.ones_like(ids)
        assert greedy_decode(model, ids, None, 20, tokenizer.eos_token_id, tokenizer.pad_token_id).tolist() \
            == _generate(model, tokenizer, ids, ones, 20)
    tokenizer.padding_side = "left"
    batch = tokenizer([tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                     add_generation_prompt=True) for q in QUESTIONS],
                      return_tensors="pt", padding=True, add_special_tokens=False)
    loop = greedy_decode(model, batch["input_ids"], batch["attention_mask"], 20, tokenizer.eos_token_id,
                         tokenizer.pad_token_id).tolist()
    expected = _generate(model, tokenizer, batch["input_ids"], batch["attention_mask"], 20)
    assert loop == [row[: len(loop[0])] for row in expected]
    assert bool((batch["attention_mask"] == 0).any())  # the batch really is padded


def test_rows_that_end_leave_the_batch_and_the_rest_decode_as_generate_does(tiny_model_dir: Path,
                                                                            adapter: str) -> None:
    """A stop token that one row writes early and another row does not: the row that ends leaves the
    batch (fewer rows in the later forwards), and every row's tokens are still generate's."""
    from tools.models.decoding import greedy_decode

    model, tokenizer = load_for_inference(str(tiny_model_dir), adapter, merge=True)
    tokenizer.padding_side = "left"
    batch = tokenizer([tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                     add_generation_prompt=True) for q in QUESTIONS],
                      return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    free = greedy_decode(model, ids, mask, 20, None, tokenizer.pad_token_id).tolist()  # no stop: 20 each
    stop = next(t for row in free for t in row[1:5] if any(t not in other[:12] for other in free))
    rows: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        loop = greedy_decode(model, ids, mask, 20, stop, tokenizer.pad_token_id).tolist()
    finally:
        hook.remove()
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=20,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=stop)
    expected = output[:, ids.shape[1]:].tolist()
    assert loop == [row[: len(loop[0])] for row in expected]
    assert rows[0] == len(QUESTIONS) and min(rows) < len(QUESTIONS)


def test_a_generation_config_that_changes_the_logits_keeps_generates_answers(tiny_model_dir: Path) -> None:
    """A base model whose generation_config.json sets a repetition penalty: the evaluator's answers are
    generate's (which applies it), not the plain argmax loop's."""
    from tools.evaluation.scoring import generate_answers

    model, tokenizer = load_for_inference(str(tiny_model_dir))
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ""}]}
               for q in QUESTIONS[:3]]
    plain = generate_answers(model, tokenizer, records, max_new_tokens=16, batch_size=3, raw=True)
    model.generation_config.repetition_penalty = 5.0
    penalised = generate_answers(model, tokenizer, records, max_new_tokens=16, batch_size=3, raw=True)
    alone = []
    for record in records:
        ids = tokenizer(tokenizer.apply_chat_template(record["messages"][:-1], tokenize=False,
                                                      add_generation_prompt=True),
                        return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=16, pad_token_id=tokenizer.pad_token_id)
        alone.append(tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=False).strip())
    assert penalised != plain and penalised == [a.split(tokenizer.eos_token)[0].strip() for a in alone]


@pytest.fixture(scope="module")
def int4_model_dir(tmp_path_factory) -> Path:
    """The tiny model 64 wide: int4 groups (32 or more columns) divide every layer's input."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-int4"), hidden=64)


def test_int4_weights_with_an_int8_head_stay_close_to_fp32(int4_model_dir: Path) -> None:
    """Every linear layer but the head int4 in groups of 32 columns, the head int8: the logits move from
    fp32's by at most 17x int8's move (15 steps per group against 255 per row; measured 10x) and the top
    token is fp32's at 95% of the positions or more (measured: all). On SmolLM2-135M general-text
    perplexity is 19.21 against fp32's 19.20 and int8's 19.28 (20.4 with the head int4 too)."""
    from tools.models.int4 import Int4Linear, RescoredHead
    from tools.models.int8 import Int8Linear

    reference_model, tokenizer = load_for_inference(str(int4_model_dir), precision="fp32")
    reference = _logits(reference_model, tokenizer)
    int4 = load_for_inference(str(int4_model_dir), precision="int4")[0]
    int8 = load_for_inference(str(int4_model_dir), precision="int8")[0]
    layers = [m for name, m in int4.named_modules() if name.startswith("model.layers.")
              and isinstance(m, (torch.nn.Linear, Int4Linear, Int8Linear))]
    assert layers and all(isinstance(m, Int4Linear) for m in layers)
    assert isinstance(int4.lm_head, Int8Linear) and isinstance(int4.greedy_head, RescoredHead)
    int4_logits = _logits(int4, tokenizer)
    int4_error = (int4_logits - reference).abs().mean()
    assert 0 < int4_error <= 17 * (_logits(int8, tokenizer) - reference).abs().mean()
    real = tokenizer(list(QUESTIONS), return_tensors="pt", padding=True)["attention_mask"].bool()
    assert (int4_logits.argmax(-1) == reference.argmax(-1))[real].float().mean() >= 0.95
    with pytest.raises(ValueError, match="int4 weights need the adapter merged"):
        load_for_inference(str(int4_model_dir), str(int4_model_dir), precision="int4")


def test_the_rescored_int4_head_picks_the_int8_heads_greedy_token(int4_model_dir: Path) -> None:
    """On hidden states of real prompts, the rescored head's token is the argmax of the int8 head's exact
    (fp32) scores at every position (the int8 head's best token is among the int4 copy's top 16), and
    greedy decoding through it gives the tokens of decoding through the int8 head's logits."""
    from tools.models.decoding import greedy_decode

    model, tokenizer = load_for_inference(str(int4_model_dir), precision="int4")
    ids = tokenizer(list(QUESTIONS), return_tensors="pt", padding=True)["input_ids"]
    with torch.inference_mode():
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state.reshape(-1, 64)
        head = model.lm_head
        exact = hidden.float() @ (head.weight_int8.float() * head.scale.float()[:, None]).T
        assert torch.equal(model.greedy_head(hidden), exact.argmax(-1))
    for prompt in _prompt_ids(tokenizer):
        rescored = greedy_decode(model, prompt, None, 12, None, tokenizer.pad_token_id)
        head, model.greedy_head = model.greedy_head, None  # the int8 head's own logits
        assert torch.equal(rescored, greedy_decode(model, prompt, None, 12, None, tokenizer.pad_token_id))
        model.greedy_head = head


@pytest.mark.parametrize("precision", ["int4", "int8"])
def test_a_quantized_server_decodes_greedy_requests_through_greedy_decode(int4_model_dir: Path, tmp_path: Path,
                                                                          monkeypatch, precision: str) -> None:
    """The merged int4 (rescored head) or int8 copy answers greedy requests with greedy_decode; the shared
    model for base requests stays fp32. Through transformers' layers a request alone and in a batch gets the
    same answer; alone it goes through the one-row decoder (fp32 residual stream,
    tests/integration/test_one_row_decoder.py), whose rounding differs from the layers' bf16."""
    from tools.models import decoding

    adapter = str(random_adapter(int4_model_dir, tmp_path / "adapter", seed=3))
    server = ModelServer(str(int4_model_dir), {"ft-v1": adapter}, base_name="tiny-base", max_batch_size=1,
                         precision=precision)
    assert (getattr(server.merged.model, "greedy_head", None) is not None) == (precision == "int4")
    assert next(server.model.parameters()).dtype == torch.float32
    calls = []
    real = decoding.greedy_decode
    monkeypatch.setattr(decoding, "greedy_decode", lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k))
    answers = _answers(server, "ft-v1")
    assert all(answers) and calls == [1, 1, 1, 3]
    assert _answers(server, "tiny-base") != answers and len(calls) == 4  # base requests: generate
    one_row, server.merged.model.one_row_decoder = server.merged.model.one_row_decoder, None
    layers = _answers(server, "ft-v1")
    assert one_row is not None and layers[:3] == layers[3:] == answers[3:]


def test_an_int4_server_streams_greedy_requests_through_the_same_decoder(int4_model_dir: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """A streamed greedy request to the int4 copy decodes through greedy_decode too (not generate), feeding
    the streamer token by token: the streamed text is the plain answer."""
    import threading

    from transformers import TextIteratorStreamer

    from tools.models import decoding

    adapter = str(random_adapter(int4_model_dir, tmp_path / "adapter", seed=3))
    server = ModelServer(str(int4_model_dir), {"ft-v1": adapter}, base_name="tiny-base", max_batch_size=1,
                         precision="int4")
    request = ChatCompletionRequest(model="ft-v1", messages=[{"role": "user", "content": QUESTIONS[0]}],
                                    max_tokens=10, temperature=0)
    plain = server.generate(server.prepare(request, None)).text
    calls, results = [], []
    real = decoding.greedy_decode
    monkeypatch.setattr(decoding, "greedy_decode", lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k))
    streamer = TextIteratorStreamer(server.tokenizer, skip_prompt=True, skip_special_tokens=True)
    thread = threading.Thread(target=lambda: results.append(server.generate(server.prepare(request, None), streamer,
                                                                            threading.Event())))
    thread.start()
    pieces = list(streamer)
    thread.join()
    assert plain and "".join(pieces).strip() == plain.strip() == results[0].text.strip()
    assert calls == [1] and len(pieces) > 1


@pytest.mark.parametrize(("flags", "precision"), [(["--int4"], "int4"), (["--int8"], "int8"), ([], None)])
def test_serve_flags_choose_the_served_copys_weights(flags: list[str], precision: str | None) -> None:
    from agent.cli import _parser, _serve_options

    options = _serve_options(_parser().parse_args(["serve", *flags]))
    assert options.get("precision") == precision
