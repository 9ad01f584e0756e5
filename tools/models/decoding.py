"""Greedy decoding without `generate`'s per-step machinery, for the evaluator and the server.

`transformers`' `generate` re-validates its configuration, builds logits processors and stopping
criteria, updates its model kwargs and (with an attention mask) rebuilds a 4-D mask on every step; for a
135M model on a CPU core that is a measurable share of a token's time. Greedy decoding needs none of it:
one forward over the prompt into a `DynamicCache`, then one forward per token on the argmax of the last
position's logits. Rows of a left-padded batch get their own positions from the attention mask and stop
at the end-of-sequence token (later positions are padding), as `generate` does, and give the same
tokens (tests/integration/test_fast_generation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# generation-config settings with which `generate`'s greedy tokens are not the plain argmax (a base model's
# generation_config.json may set them: a repetition penalty, say), each with the values that change nothing
LOGIT_CHANGING_SETTINGS = {"repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0),
                           "no_repeat_ngram_size": (None, 0), "min_new_tokens": (None, 0), "min_length": (None, 0),
                           "bad_words_ids": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
                           "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "sequence_bias": (None,),
                           "exponential_decay_length_penalty": (None,)}

StopCheck = Callable[[], bool]  # True: stop after the current token (a cancelled stream)
TokenSink = Callable[[int], None]  # each new token of a one-row decode, as it is chosen


def greedy_decode(model: Any, input_ids: Any, attention_mask: Any = None, max_new_tokens: int = 64,
                  eos_token_id: int | list[int] | None = None, pad_token_id: int = 0,
                  on_token: TokenSink | None = None, should_stop: StopCheck | None = None) -> Any:
    """The new tokens, [rows, up to max_new_tokens]: greedy, each row padded with `pad_token_id` after its
    end-of-sequence token; shorter when every row has ended. `attention_mask` (1 = real token) is needed
    only for a left-padded batch. `on_token` sees a one-row decode's tokens as they come. A row that ends
    leaves the batch (its keys and values too), so the rows still decoding run without it: where answers
    end at different lengths, the later steps multiply fewer rows."""
    import torch
    from transformers import DynamicCache

    stops = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or []))
    rows = input_ids.shape[0]
    padded = attention_mask is not None and not bool(attention_mask.all())
    one_row = getattr(model, "one_row_decoder", None)
    if one_row is not None and rows == 1 and not padded:
        tokens = one_row.decode(input_ids, max_new_tokens, set(stops.tolist()), on_token, should_stop)
        return input_ids.new_tensor([tokens])
    positions = _positions(attention_mask) if padded else None
    cache, chosen = DynamicCache(), input_ids.new_full((rows, max_new_tokens), pad_token_id)
    live = torch.arange(rows)  # the batch row of each row still decoding
    step, cache_name, length = _next_tokens(model), _cache_argument(model), 0
    with torch.inference_mode():
        token = step(input_ids=input_ids, attention_mask=attention_mask if padded else None,
                     position_ids=positions, **{cache_name: cache})
        while length < max_new_tokens:
            chosen[live, length] = token
            length += 1
            if on_token is not None and rows == 1:
                on_token(int(token[0]))
            ended = torch.isin(token, stops)
            if bool(ended.all()) or length == max_new_tokens or (should_stop and should_stop()):
                break
            if bool(ended.any()):
                keep = (~ended).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                live, token = live[keep], token[keep]
                if padded:
                    attention_mask, positions = attention_mask[keep], positions[keep]
            if padded:
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(live), 1)], dim=1)
                positions = positions[:, -1:] + 1
            token = step(input_ids=token[:, None], attention_mask=attention_mask if padded else None,
                         position_ids=positions, **{cache_name: cache})
    return chosen[:, :length]


def has_greedy_path(model: Any) -> bool:
    """Whether greedy rows of this model go through `greedy_decode` rather than `generate`: it has a rescored
    int4 head (`greedy_head`) or a one-row decoder (int8 and int4 weights of a Llama-family model), and its
    generation config leaves the argmax alone (`plain_argmax`; otherwise `generate` applies that config)."""
    fast = getattr(model, "greedy_head", None) is not None or getattr(model, "one_row_decoder", None) is not None
    return fast and plain_argmax(model)


def plain_argmax(model: Any) -> bool:
    """Whether `generate`'s greedy tokens for this model are the argmax `greedy_decode` takes: its generation
    config sets none of LOGIT_CHANGING_SETTINGS (otherwise only `generate` applies them)."""
    config = getattr(model, "generation_config", None)
    return all(getattr(config, name, None) in neutral for name, neutral in LOGIT_CHANGING_SETTINGS.items())


def _cache_argument(model: Any) -> str:
    """The forward's name for the KV cache: `cache` since transformers 5.2x (`past_key_values` is deprecated
    there, to be removed in 5.40), `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _next_tokens(model: Any) -> Callable[..., Any]:
    """One forward step -> each row's greedy next token: the argmax of the last position's logits, or the
    model's `greedy_head` (an int4 head rescored by the precise one, `tools.models.int4.RescoredHead`) on
    the decoder's last hidden state."""
    head = getattr(model, "greedy_head", None)
    if head is None:
        return lambda **inputs: model(**inputs, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(-1)
    decoder = model.get_decoder()
    return lambda **inputs: head(decoder(**inputs, use_cache=True).last_hidden_state[:, -1])


def _positions(attention_mask: Any) -> Any:
    """Each token's position counted from its row's first real token (padding gets 1, as in generate)."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)
