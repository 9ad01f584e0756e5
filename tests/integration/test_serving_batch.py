"""Micro-batching in the model server: concurrent requests share one generate call, rows with different
adapters and lengths, and batched greedy answers equal the answers generated one at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tiny_model import random_adapter

from tools.serving.batch import (
    Generation,
    GenerationResult,
    MicroBatcher,
    cut_answer,
    fits_together,
)
from tools.serving.server import ChatCompletionRequest, ModelServer, build_app, serve_in_background

ADAPTERS = ("ft-tiny-alpha-v1", "ft-tiny-beta-v1")
# (model, question, max_tokens): every adapter and the base, prompts of different lengths, own limits
CASES = (
    ("tiny-base", "What is a stabilizer code?", 16),
    (ADAPTERS[0], "Explain the surface code in two sentences, please, for a physicist.", 5),
    (ADAPTERS[1], "Why?", 12),
    (ADAPTERS[0], "What is a logical qubit and how many physical qubits does it need?", 9),
)


@pytest.fixture(scope="module")
def adapters(tiny_model_dir: Path, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("batch-adapters")
    return {name: str(random_adapter(tiny_model_dir, folder / name, seed)) for seed, name in enumerate(ADAPTERS)}


def _request(model: str, question: str, max_tokens: int, **options) -> ChatCompletionRequest:
    return ChatCompletionRequest(model=model, messages=[{"role": "user", "content": question}],
                                 max_tokens=max_tokens, **{"temperature": 0, **options})


def test_batched_greedy_rows_equal_one_at_a_time_answers(tiny_model_dir: Path, adapters: dict) -> None:
    # fp32: in bf16 (the default where native) a random model's near-ties can flip between padded and
    # unpadded rows; tests/integration/test_fast_generation.py checks the evaluator's bf16 batches
    server = ModelServer(str(tiny_model_dir), adapters, base_name="tiny-base", max_batch_size=1, precision="fp32")
    jobs = [server.prepare(_request(*case), None) for case in CASES]
    alone = [server.generate(job) for job in jobs]
    batched = server.generate_batch(jobs)
    assert [r.text for r in batched] == [r.text for r in alone]
    assert [(r.completion_tokens, r.finish_reason) for r in batched] == \
           [(r.completion_tokens, r.finish_reason) for r in alone]
    assert [r.completion_tokens for r in batched] == [16, 5, 12, 9]  # each row cut at its own max_tokens
    assert len({r.text for r in alone}) == 4  # the rows really used different adapters and prompts


def test_concurrent_requests_are_decoded_in_one_batch(tiny_model_dir: Path, adapters: dict) -> None:
    from openai import OpenAI

    server = ModelServer(str(tiny_model_dir), adapters, base_name="tiny-base", max_batch_size=4, precision="fp32",
                         batch_window_ms=1000)
    expected = [server.generate(server.prepare(_request(*case), None)).text for case in CASES]
    with serve_in_background(build_app(server)) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=60)

        def ask(case: tuple, **options) -> str:
            model, question, max_tokens = case
            return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                  max_tokens=max_tokens, **{"temperature": 0, **options}
                                                  ).choices[0].message.content

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, CASES))
        assert answers == expected
        assert _batch_sizes(url) == {"4": 1}  # four requests, one generate call
        with ThreadPoolExecutor(4) as pool:  # seeded requests keep their own random stream: no batch
            list(pool.map(lambda seed: ask(CASES[0], temperature=1.0, seed=seed), range(3)))
        assert _batch_sizes(url) == {"4": 1}
        with ThreadPoolExecutor(4) as pool:  # unseeded sampling shares a call only with equal settings
            sampled = list(pool.map(lambda t: ask(CASES[2], temperature=t), (0.7, 0.7, 1.3)))
        assert _batch_sizes(url) == {"4": 1, "2": 1, "1": 1}
        assert all(isinstance(text, str) for text in sampled)


def _batch_sizes(url: str) -> dict[str, int]:
    """{rows per generate call: how many calls}, from /health."""
    return httpx.get(url.removesuffix("/v1") + "/health").json()["batching"]["batch_sizes"]


def _job(prompt: int, answer: int, temperature: float = 0.0) -> Generation:
    import torch

    return Generation("m", None, torch.zeros((1, prompt), dtype=torch.long), answer, temperature, 1.0, None)


def test_only_compatible_jobs_share_a_batch_and_the_others_keep_their_turn() -> None:
    calls: list[list[float]] = []

    def record(jobs: list[Generation]) -> list[GenerationResult]:
        calls.append([job.temperature for job in jobs])
        return [GenerationResult(str(job.temperature), job.prompt_tokens, 1, "stop") for job in jobs]

    batcher = MicroBatcher(record, context_length=1024, max_batch_size=4, window_s=0.5)
    try:
        futures = [batcher.submit(_job(5, 8, t)) for t in (1.3, 0.0, 0.0, 1.3, 0.7)]
        assert [f.result(timeout=10).text for f in futures] == ["1.3", "0.0", "0.0", "1.3", "0.7"]
    finally:
        batcher.close()
    assert calls == [[1.3, 1.3], [0.0, 0.0], [0.7]]
    assert batcher.batch_sizes == {2: 2, 1: 1}


def test_a_batch_never_outgrows_the_context() -> None:
    assert fits_together([_job(900, 24), _job(10, 100)], 1024)
    assert not fits_together([_job(950, 24), _job(10, 100)], 1024)  # the long prompt would decode 100 more


@pytest.mark.parametrize(("tokens", "limit", "expected"), [
    ([5, 6, 2, 2, 2], 5, ([5, 6, 2], True)),  # ends at its EOS; padding after it is dropped
    ([5, 6, 7, 2, 2], 2, ([5, 6], False)),  # cut at its own limit before the EOS
    ([5, 6, 7], 8, ([5, 6, 7], False)),
])
def test_each_row_is_cut_at_its_eos_or_limit(tokens: list[int], limit: int, expected: tuple) -> None:
    assert cut_answer(tokens, limit, eos_token_id=2) == expected
