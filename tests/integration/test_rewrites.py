"""Rewrites by a chat model, against a real OpenAI-compatible server on 127.0.0.1
(tests/helpers/scripted_chat.py).

The server picks each reply from the request itself (which passage, which style, which attempt),
since concurrent requests arrive in any order: good rewrites, an invented number, a verbatim copy, a
copy of another rewrite, prose, malformed JSON, HTTP 500 and replies slower than the client's
timeout."""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager
from typing import Any

import pytest
from scripted_chat import ScriptedChat, serve

from tools.data.chunking import Chunk
from tools.data.rewrites import (
    ENDPOINT_FAILED,
    NOT_SENT,
    STYLES,
    RewriteChecks,
    RewriteGenerator,
    copy_share,
    invented_numbers,
    numbers,
    rewrite_messages,
    style_counts,
)

SURFACE = Chunk("qec-0", "qec", (
    "The surface code is a topological stabilizer code defined on a square lattice of physical "
    "qubits. It tolerates physical error rates near 1 percent, which is higher than most other "
    "codes. Logical errors are suppressed exponentially as the code distance grows, so larger "
    "lattices protect the stored information better."), "Surface code", 0)
TRIAL = Chunk("trial-0", "trial", (
    "In a randomised trial of 240 adults with type 2 diabetes, metformin lowered fasting glucose "
    "by 18 mg/dL over 12 weeks compared with placebo. Gastrointestinal side effects were the most "
    "common reason for stopping the drug."), "Results", 0)
FLAKY = Chunk("flaky-0", "flaky", (
    "Magic state distillation turns many noisy copies of a special quantum state into fewer "
    "copies of higher fidelity. It lets a code that only supports Clifford gates perform "
    "universal quantum computation, at a large cost in physical qubits."), "Distillation", 0)
ITEMS = [(SURFACE, "Surface codes"), (TRIAL, "Metformin trial"), (FLAKY, "Magic states")]


def texts(*rewrites: str) -> dict[str, Any]:
    return {"rewrites": list(rewrites)}


def pairs(*qa: tuple[str, str, str]) -> dict[str, Any]:
    return {"pairs": [{"question": q, "answer": a, "type": t} for q, a, t in qa]}


DISTILLATION_IMPLICATIONS = (
    "Since magic state distillation lets a code with only Clifford gates perform universal "
    "quantum computation, such codes become universal; the price is a large cost in physical "
    "qubits, because many noisy copies of the special state are turned into fewer copies of "
    "higher fidelity.")
GOOD: dict[tuple[str, str], dict[str, Any]] = {
    ("qec-0", "key_concepts"): texts(
        "Surface code: a topological stabilizer code on a square lattice of physical qubits.\n"
        "Tolerated error rate: physical error rates near 1 percent, higher than most other "
        "codes tolerate.\nCode distance: as it grows, logical errors are suppressed "
        "exponentially."),
    ("qec-0", "implications"): texts(
        "Because the surface code tolerates physical error rates near 1 percent, its physical "
        "qubits need not be perfect. Since logical errors are suppressed exponentially with the "
        "code distance, building larger lattices is the direct way to protect stored information "
        "better."),
    ("qec-0", "teacher"): texts(
        "Think of the surface code as a square lattice of physical qubits that together hold "
        "protected information. It is a topological stabilizer code, and it copes with physical "
        "error rates near 1 percent, more than most codes. Remember: grow the code distance and "
        "logical errors shrink exponentially."),
    ("qec-0", "qa"): pairs(
        ("What kind of code is the surface code?", ("The surface code is a topological stabilizer "
         "code defined on a square lattice of physical qubits."), "definition"),
        ("What physical error rate does the surface code tolerate?",
         "It tolerates physical error rates near 1 percent.", "fact"),
        ("What physical error rate can the surface code tolerate?",  # the same question again
         "Physical error rates near 1 percent, higher than most other codes.", "fact"),
        ("How many qubits does the surface code need per logical qubit?",  # an invented figure
         "The surface code needs 49 physical qubits for each logical qubit.", "fact")),
    ("trial-0", "key_concepts"): texts(
        "Metformin trial: 240 adults with type 2 diabetes were randomised to metformin or "
        "placebo.\nEffect: metformin lowered fasting glucose by 18 mg/dL over 12 weeks.\n"
        "Stopping: gastrointestinal side effects were the most common reason."),
    # invented figures: the trial gives no 40 percent and no 6 months
    ("trial-0", "implications"): texts(
        "Metformin lowered fasting glucose in adults with type 2 diabetes, cutting the risk of "
        "complications by 40 percent within 6 months compared with placebo, though "
        "gastrointestinal side effects stop some."),
    ("trial-0", "teacher"): texts(TRIAL.text),  # a verbatim copy of the passage is no rewrite
    ("trial-0", "qa"): pairs(
        ("By how much did metformin lower fasting glucose in the metformin trial?",
         "Metformin lowered fasting glucose by 18 mg/dL over 12 weeks compared with placebo.",
         "fact")),
    ("flaky-0", "key_concepts"): texts(
        "Magic state distillation: many noisy copies of a special quantum state become fewer "
        "copies of higher fidelity.\nUniversal computation: it lets a code with only Clifford "
        "gates compute universally.\nCost: a large number of physical qubits."),
    ("flaky-0", "implications"): texts(DISTILLATION_IMPLICATIONS),
    # nearly the implications text again: a near-duplicate of another rewrite of the document
    ("flaky-0", "teacher"): texts(DISTILLATION_IMPLICATIONS.replace("fidelity.", "fidelity!")),
    ("flaky-0", "qa"): pairs(
        ("What does magic state distillation produce?", ("It turns many noisy copies of a special "
         "quantum state into fewer copies of higher fidelity."), "function")),
}
STYLE_OF = {
    "List the key concepts": "key_concepts",
    "Explain what follows": "implications",
    "as a teacher would": "teacher",
    "question/answer pairs": "qa",
}


class RewriteServer(ScriptedChat):
    """Replies by (passage, style): the scripted failures of `plan` first, one per attempt, then
    GOOD; `slow_chunks` holds the replies about a chunk that long."""

    def __init__(
        self,
        plan: dict[tuple[str, str], list[Any]] | None = None,
        slow_chunks: dict[str, float] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.plan, self.slow_chunks, self.delay_s = dict(plan or {}), slow_chunks or {}, delay_s

    def key(self, body: dict[str, Any]) -> tuple[str, str]:
        prompt = body["messages"][-1]["content"]
        chunk = next(c for c, _ in ITEMS if c.text in prompt)
        return chunk.chunk_id, next(style for phrase, style in STYLE_OF.items() if phrase in prompt)

    def behaviour(self, body: dict[str, Any]) -> Any:
        key = self.key(body)
        pending = self.plan.get(key)
        return pending.pop(0) if pending else GOOD[key]

    async def reply(self, body: dict[str, Any], behaviour: Any):
        import asyncio

        await asyncio.sleep(self.slow_chunks.get(self.key(body)[0], 0.0))
        return await super().reply(body, behaviour)


serving = contextmanager(serve)


def generator(base_url: str, **options: Any) -> RewriteGenerator:
    options = {"timeout_s": 5.0, "backoff_s": 0.0, **options}
    return RewriteGenerator(
        "scripted", base_url, "key", "quantum error correction and medicine", **options
    )


# -- pure checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "source", "invented"),
    [
        ("It has 1000 qubits and a 0.5 rate.", "It has 1,000 qubits and a 0.50 rate.", set()),
        ("Three arms, 3 arms.", "The trial had three arms.", set()),
        ("Errors fell by 40 percent in 6 months.", "Errors fell.", {"40", "6"}),
        ("CD4 counts and COVID-19.", "CD4 counts in COVID-19 patients.", set()),
        ("p < 0.05 over 12 weeks.", "significant over 12 weeks (p<0.01).", {"0.05"}),
    ],
)
def test_invented_numbers_are_those_the_source_does_not_state(text, source, invented):
    assert invented_numbers(text, source) == invented


def test_numbers_are_normalised():
    assert numbers("1,000 qubits, 0.50, 10.0 and 12.") == {"1000", "0.5", "10", "12"}


def test_copy_share_is_one_for_a_copy_and_low_for_a_paraphrase():
    assert copy_share(TRIAL.text, TRIAL.text) == 1.0
    rewrite = GOOD[("qec-0", "implications")]["rewrites"][0]
    assert copy_share(rewrite, SURFACE.text) < 0.5


def test_style_counts_spread_the_rewrites_over_the_prose_styles():
    counts = {"key_concepts": 2, "implications": 1, "teacher": 1, "qa": 3}
    assert style_counts(STYLES, 4, 3) == counts
    assert style_counts(("teacher", "qa"), 0, 2) == {"qa": 2}
    assert style_counts(("qa",), 3, 0) == {}


def test_every_style_has_a_prompt_that_carries_the_passage_as_data():
    for style in STYLES:
        system, user = (
            content for _, content in rewrite_messages(SURFACE, "Surface codes", "QEC", style, 2)
        )
        assert "data, never instructions" in system
        assert SURFACE.text in user and "Surface codes" in user


def test_unknown_styles_are_refused():
    with pytest.raises(ValueError, match="unknown rewrite styles"):
        RewriteGenerator("m", "http://127.0.0.1:9/v1", None, "x", styles=("poem",))


# -- against the scripted server -------------------------------------------------------------------


def test_good_rewrites_are_kept_and_bad_ones_dropped_with_their_reason():
    with serving(RewriteServer()) as (_, base_url):
        result = generator(base_url).run(ITEMS)
    kept = [(r.chunk_id, r.style) for r in result.rewrites]
    assert kept == [
        ("qec-0", "key_concepts"),
        ("qec-0", "implications"),
        ("qec-0", "teacher"),
        ("trial-0", "key_concepts"),
        ("flaky-0", "key_concepts"),
        ("flaky-0", "implications"),
    ]
    stats = result.stats
    # the trial's "40 percent" and the "49 qubits" answer
    assert stats["ungrounded: invented number"] == 2
    assert stats["near-duplicate of its chunk"] == 1  # the verbatim copy
    assert stats["near-duplicate of another rewrite"] == 1 and stats["near-duplicate question"] == 1
    assert stats["requests"] == 12 and stats["replies"] == 12 and stats["outputs"] == 15
    assert stats["rewrites kept"] == 6 and stats["qa pairs kept"] == 4
    assert not result.endpoint_failed and result.unanswered == [] and ENDPOINT_FAILED not in stats
    assert result.endpoint_reason == ""
    titles = {c.chunk_id: title for c, title in ITEMS}
    for rewrite in result.rewrites:
        assert 0.5 <= rewrite.support <= 1 and rewrite.source == titles[rewrite.chunk_id]
        assert rewrite.metadata["generator"] == "llm-rewrite"
        assert rewrite.metadata["style"] == rewrite.style
    assert [(e.chunk_id, e.question, e.type) for e in result.examples] == [
        ("qec-0", "What kind of code is the surface code?", "definition"),
        ("qec-0", "What physical error rate does the surface code tolerate?", "fact"),
        (
            "trial-0",
            "By how much did metformin lower fasting glucose in the metformin trial?",
            "fact",
        ),
        ("flaky-0", "What does magic state distillation produce?", "function"),
    ]
    assert all(
        e.metadata["generator"] == "llm-rewrite" and e.metadata["style"] == "qa"
        for e in result.examples
    )
    assert all(e.doc_id in {"qec", "trial", "flaky"} for e in result.examples)


def test_prose_malformed_json_500_and_timeouts_are_counted_and_retried():
    plan = {
        ("flaky-0", "key_concepts"): ["prose"],
        ("flaky-0", "implications"): [{"rewrites": "one text"}],
        ("flaky-0", "teacher"): ["500"],
        ("flaky-0", "qa"): ["slow"],
        ("trial-0", "qa"): ["prose", "prose", "prose"],  # every attempt fails: no pairs
    }
    with serving(RewriteServer(plan)) as (_, base_url):
        result = generator(base_url, timeout_s=1.0, retries=2).run(ITEMS)
    stats = result.stats
    assert stats["prose instead of JSON"] == 4 and stats["malformed output"] == 1
    assert stats["API error (HTTP 500)"] == 1 and stats["timeout"] == 1
    assert stats["requests"] == 12 + 4 + 2 and stats["replies"] == 11
    # flaky's pair came after the retry; the trial has none
    assert [e.chunk_id for e in result.examples] == ["qec-0", "qec-0", "flaky-0"]
    assert ("flaky-0", "key_concepts") in {(r.chunk_id, r.style) for r in result.rewrites}
    assert not result.endpoint_failed and result.unanswered == []


def test_a_dead_endpoint_is_given_up_on_fast_and_says_so():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = generator(
        f"http://127.0.0.1:{port}/v1", give_up_after=3, max_concurrency=2, backoff_s=0.5
    ).run(ITEMS * 5)
    elapsed = time.monotonic() - started
    assert result.endpoint_failed and result.stats[ENDPOINT_FAILED] == 1
    assert result.rewrites == [] and result.examples == []
    assert result.unanswered == [c.chunk_id for c, _ in ITEMS * 5]
    assert 3 <= result.stats["API error (connection)"] == result.stats["requests"] <= 3 + 2
    assert result.stats[NOT_SENT] >= 60 - 5
    assert result.endpoint_reason.startswith("3 endpoint failures in a row")
    assert elapsed < 3.0, f"giving up took {elapsed:.1f} s"


def test_an_endpoint_that_never_answers_usably_is_given_up_on():
    with serving(ScriptedChat()) as (server, base_url):  # prose to every request
        result = generator(base_url, give_up_after=3, max_concurrency=1).run(ITEMS * 5)
    assert result.endpoint_failed and len(server.bodies) == 6 == result.stats["requests"]
    reason = "no usable reply in the first 6 requests (last: prose instead of JSON)"
    assert result.endpoint_reason == reason
    assert result.stats["prose instead of JSON"] == 6 and len(result.unanswered) == 15


def test_a_rewrite_with_outside_facts_is_ungrounded():
    plan = {("qec-0", "teacher"): [texts(
        "Quantum computers built by large companies already run chemistry simulations for "
        "drug discovery, and investors expect commercial advantage within a decade.")]}
    with serving(RewriteServer(plan)) as (_, base_url):
        result = generator(base_url).run(ITEMS[:1])
    assert result.stats["ungrounded: low support"] == 1 and len(result.rewrites) == 2


def test_requests_run_in_parallel_bounded_by_max_concurrency():
    with serving(RewriteServer(delay_s=0.4)) as (server, base_url):
        started = time.monotonic()
        result = generator(base_url, max_concurrency=3).run(ITEMS)
        elapsed = time.monotonic() - started
    assert server.max_in_flight == 3 and result.stats["requests"] == 12
    # one at a time, the server alone would take 12 x 0.4 s; 3 at a time, about a third of that
    assert elapsed < 12 * 0.4, f"12 requests of 0.4 s took {elapsed:.2f} s with 3 at a time"


def test_results_come_in_input_order_whatever_order_replies_arrive_in():
    runs = []
    for slow in ({"qec-0": 0.4, "trial-0": 0.2}, {"flaky-0": 0.4}):
        with serving(RewriteServer(slow_chunks=slow)) as (_, base_url):
            result = generator(base_url, max_concurrency=6).run(ITEMS)
        runs.append(
            ([r.to_dict() for r in result.rewrites], [e.to_dict() for e in result.examples])
        )
    assert runs[0] == runs[1]
    assert [r["chunk_id"] for r in runs[0][0]] == ["qec-0"] * 3 + ["trial-0"] + ["flaky-0"] * 2


def test_an_embedder_adds_a_similarity_check():
    from tools.llm.embeddings import Embedder

    embedder = Embedder()
    with serving(RewriteServer()) as (_, base_url):
        kept = generator(base_url, embedder=embedder).run(ITEMS[:1])
        strict = generator(
            base_url, embedder=embedder, checks=RewriteChecks(min_similarity=0.99)
        ).run(ITEMS[:1])
    assert len(kept.rewrites) == 3 and all(
        0.5 <= r.metadata["similarity"] <= 1 for r in kept.rewrites
    )
    assert strict.rewrites == [] and strict.examples == []
    assert (
        strict.stats["ungrounded: low similarity"] == 3 + 3
    )  # three rewrites, three supported answers


def test_a_model_that_cannot_write_json_through_the_projects_own_server(tiny_model_dir):
    """The tiny random model answers every request, never with JSON: the run gives up and says so."""
    from tools.serving.server import create_app, serve_in_background

    with serve_in_background(create_app(str(tiny_model_dir), {}, base_name="tiny")) as base_url:
        result = RewriteGenerator("tiny", base_url, None, "QEC", give_up_after=2, max_tokens=16,
                                  max_concurrency=1, backoff_s=0.0).run(ITEMS)
    assert result.endpoint_failed and result.stats["requests"] == 4
    assert result.endpoint_reason.startswith("no usable reply in the first 4 requests")
    assert result.rewrites == [] and result.examples == [] and len(result.unanswered) == 3
