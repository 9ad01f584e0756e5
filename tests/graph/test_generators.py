"""Generators (extractive, llm over a real local HTTP server, local), coverage sampling and the example
gate; pubmedqa abstracts as real documents."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from langgraph.checkpoint.memory import InMemorySaver
from tiny_job import small_corpus, tiny_job_options

from agent.settings import Settings
from graphs.checkpointer import StrictSerializer
from graphs.context import JobContext
from graphs.graph import build_graph
from tools.data.chunking import chunk_by_tokens
from tools.data.coverage import coverage_order
from tools.data.generators import ExtractiveGenerator, LLMGenerator, LocalGenerator, parse_pairs
from tools.data.quality import GateConfig, balance, gate_examples, judge_example, verbatim_span
from tools.llm.embeddings import Embedder
from tools.serving.server import create_app, serve_in_background
from tools.sources.documents import Document
from tools.text import without_statistics

PUBMEDQA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "pubmedqa" / "pqal_dev.json"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def abstracts(tmp_path_factory) -> list[Document]:
    """60 real abstracts written to .txt files and read back as local documents."""
    folder = tmp_path_factory.mktemp("pubmedqa")
    records = json.loads(PUBMEDQA.read_text())
    documents = []
    for pmid in sorted(records)[:60]:
        path = folder / f"{pmid}.txt"
        path.write_text("\n\n".join(records[pmid]["CONTEXTS"]), encoding="utf-8")
        documents.append(Document("local", str(path), records[pmid]["QUESTION"], path.read_text(), str(path)))
    return documents


def test_extractive_answers_on_real_abstracts_are_all_in_their_chunk(abstracts, embedder):
    chunks = [c for d in abstracts for c in chunk_by_tokens(d, 200, 32, 25)]
    generator = ExtractiveGenerator()
    examples = [e for c in chunks for e in generator.generate(c, "pubmedqa", 3)]
    texts = {c.chunk_id: c.text for c in chunks}
    # verbatim passage text, behind "Yes."/"No." for a yes/no question
    found = sum(e.answer.removeprefix("Yes. ").removeprefix("No. ") in texts[e.chunk_id] for e in examples)
    vectors = {c.chunk_id: v for c, v in zip(chunks, embedder.embed(list(texts.values())), strict=True)}
    answers = embedder.embed([e.answer for e in examples])
    semantic = [float(a @ vectors[e.chunk_id]) for a, e in zip(answers, examples, strict=True)]
    kept, dropped = gate_examples(examples, texts, semantic)
    print(f"\npubmedqa: {len(chunks)} chunks, {len(examples)} extractive examples, {found} answers found in "
          f"their chunk; gate kept {len(kept)}, dropped {dict(dropped)}; types {Counter(e.type for e in kept)}")
    assert len(examples) >= 40 and found == len(examples)  # 100%
    assert all(e.answer.removeprefix("Yes. ").removeprefix("No. ") in texts[e.chunk_id] for e in kept)
    assert len(kept) >= 20 and all(0.6 <= e.quality_score <= 1 for e in kept)
    assert all({"difficulty", "quality", "gate"} <= set(e.metadata) for e in kept)


def test_coverage_order_spreads_over_documents_and_topics():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    vectors, doc_ids, relevance = [], [], []
    for topic in range(3):
        for n in range(10 if topic == 0 else 3):  # topic 0 dominates and scores highest
            v = centres[topic] + 0.05 * rng.normal(size=16)
            vectors.append(v / np.linalg.norm(v))
            doc_ids.append(f"doc{topic}-{n % 2}")
            relevance.append(0.9 if topic == 0 else 0.3)
    order = coverage_order(doc_ids, np.asarray(vectors, dtype=np.float32), relevance, n_clusters=3)
    assert sorted(order) == list(range(len(doc_ids)))
    first = [doc_ids[i] for i in order[:6]]
    assert {d.split("-")[0] for d in first} == {"doc0", "doc1", "doc2"}  # every topic early
    assert len(set(first)) == 6  # no document twice in the first six


@pytest.mark.parametrize(("question", "answer", "semantic", "reason"), [
    ("What is the surface code?", "Bananas are yellow fruit rich in potassium and grown in the tropics.", 0.1,
     "answer not supported by its chunk"),
    ("surface code", "The surface code is a topological stabilizer code on a square lattice.", 0.9,
     "question: too short"),
    ("What is the corresponding surface code?", ("The surface code is a topological stabilizer code on a square "
     "lattice."), 0.9, "question: leans on missing context"),
    ("What is the surface code, a topological stabilizer code on a square lattice?",
     "The surface code is a topological stabilizer code on a square lattice.", 0.9, "answer repeats the question"),
    ("What is the surface code?", "A code.", 0.9, "answer length out of limits"),
])
def test_gate_drops_bad_examples_with_the_reason(question, answer, semantic, reason):
    source = "The surface code is a topological stabilizer code on a square lattice of qubits."
    verdict = judge_example(question, answer, "definition", source, semantic, GateConfig())
    assert not verdict.kept and verdict.reason == reason


def test_gate_keeps_a_supported_answer_with_its_weighted_score():
    source = "The surface code is a topological stabilizer code on a square lattice of qubits."
    verdict = judge_example("What is the surface code?", source, "definition", source, 0.85)
    parts = verdict.parts
    expected = 0.3 * parts["coherence"] + 0.3 * parts["factual_consistency"] + 0.2 * parts["complexity"] \
        + 0.2 * parts["format"]
    assert verdict.kept and verdict.score == pytest.approx(expected, abs=1e-3) and verdict.score >= 0.6


def test_a_verbatim_answer_needs_no_embedding_agreement_a_paraphrase_does():
    """One sentence against a long chunk can embed far from it; passage text word for word is grounded by
    construction, so only answers that are not verbatim spans must also agree in meaning."""
    source = ("Twelve patients showed virologic relapse (54.54%). The mean interval between discontinuation and "
              "relapse was 6.38 months. Relapse was more frequent among patients treated with lamivudine alone.")
    sentence = "The mean interval between discontinuation and relapse was 6.38 months."
    kept = judge_example("What was the mean interval between discontinuation and relapse?", sentence, "value",
                         source, 0.30)
    assert kept.kept and kept.parts["verbatim"] == 1.0
    yes = judge_example("Was the mean interval between discontinuation and relapse 6.38 months?", f"Yes. {sentence}",
                        "yes_no", source, 0.30)
    assert yes.kept
    paraphrase = judge_example("How long after stopping did relapse come?", "Relapse came 6.38 months after "
                               "discontinuation on average, the mean interval.", "value", source, 0.30)
    assert not paraphrase.kept and paraphrase.reason == "answer not supported by its chunk"


def test_only_answers_that_are_not_verbatim_are_embedded_for_their_support(embedder):
    """The gate takes a verbatim answer as grounded whatever its embedding, so the generator embeds only the
    others; a verbatim one keeps semantic_support None (JSON null) and passes as before."""
    from graphs.nodes.generator import answer_support
    from tools.data.examples import Example

    source = ("Twelve patients showed virologic relapse (54.54%). The mean interval between discontinuation and "
              "relapse was 6.38 months. Relapse was more frequent among patients treated with lamivudine alone.")
    verbatim = Example("What was the mean interval between discontinuation and relapse?",
                       "The mean interval between discontinuation and relapse was 6.38 months.", "c1", "d1", "value")
    paraphrase = Example("When did relapse come after stopping treatment?",
                         "Relapse came about six months after patients stopped their treatment.", "c1", "d1", "value")
    embedded: list[list[str]] = []

    class Counting:
        def embed(self, texts):
            embedded.append(list(texts))
            return embedder.embed(texts)

    support = answer_support(Counting(), [verbatim, paraphrase], {"c1": embedder.embed([source])[0]}, {"c1": source})
    assert embedded == [[paraphrase.answer]] and support[0] is None and 0 < support[1] < 1
    kept, _ = gate_examples([verbatim, paraphrase], {"c1": source}, support)
    first = next(e for e in kept if e.answer == verbatim.answer)
    assert first.metadata["quality"]["semantic_support"] is None and first.metadata["quality"]["verbatim"] == 1.0
    assert json.loads(json.dumps(first.metadata))["quality"]["semantic_support"] is None


def test_an_answer_without_its_statistical_asides_is_still_a_span_of_its_passage():
    source = ("Fourteen of 379 (3.7%) women in the intervention group and 17 of 340 (5.0%) in the control group had "
              "an EPDS score of 10 or more (p=0.46). Treatment with IMRT (intensity-modulated radiotherapy) helped.")
    plain = without_statistics(source)
    assert plain == ("Fourteen of 379 women in the intervention group and 17 of 340 in the control group had an EPDS "
                     "score of 10 or more. Treatment with IMRT (intensity-modulated radiotherapy) helped.")
    assert verbatim_span(plain, source) and verbatim_span(plain.split(". ")[0], source)
    assert not verbatim_span("Fourteen of 379 women had a score of 10 or more.", source)  # words left out: no span
    kept = judge_example("What did the exercise trial find?", plain, "findings", source, 0.30)
    assert kept.kept and kept.parts["verbatim"] == 1.0


@pytest.mark.parametrize(("text", "plain"), [
    ("Median survival was 21 weeks (range 6-26 weeks) with 25 Gy (95 % confidence interval, CI; p = 0.334).",
     "Median survival was 21 weeks with 25 Gy."),
    ("Weekend admission leads to a 3.47 point reduction in catheterization (p<.001 in all cases).",
     "Weekend admission leads to a 3.47 point reduction in catheterization."),
    ("The mean duration was 38.5 months (± 4.5), p = 0.03.", "The mean duration was 38.5 months."),
    ("Risk was higher (OR 2.1, 95% CI 1.2-3.4) in smokers (n=120).", "Risk was higher in smokers."),
    ("MMR defects (MSH2, MSH6, MLH1) and interleukin (IL)-2 stay.",) * 2,
])
def test_statistical_asides_go_names_in_parentheses_stay(text, plain):
    assert without_statistics(text) == plain


def test_balance_caps_an_over_represented_type():
    labels = [("definition", "easy")] * 8 + [("cause", "hard")] * 2 + [("comparison", "medium")] * 2
    dropped = balance(labels, [0.8] * 12, max_share=0.5)
    remaining = Counter(labels[i][0] for i in range(12) if i not in dropped)
    assert remaining["definition"] <= 0.5 * sum(remaining.values()) and remaining["cause"] == 2


# -- the llm generator against real HTTP servers --------------------------------------------------
PASSAGE = Document("local", "p.md", "Surface code",
                   "The surface code is a topological stabilizer code on a square lattice of qubits. "
                   "It tolerates physical error rates near one percent.", "p.md")


def _scripted_app(script: list[str]) -> FastAPI:
    """An OpenAI-compatible endpoint answering each request with the next scripted behaviour."""
    app, calls = FastAPI(), iter(script)
    good = {"pairs": [{"question": "What is the surface code?", "type": "definition",
                       "answer": "The surface code is a topological stabilizer code on a square lattice of qubits."}]}

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> JSONResponse:
        body = await request.json()
        behaviour = next(calls, "json")
        if behaviour == "timeout":
            await asyncio.sleep(3)
        content = {"json": json.dumps(good), "prose": "Sure! The surface code is a code.",
                   "bad-schema": json.dumps({"pairs": [{"q": "x"}]}), "timeout": "{}"}[behaviour]
        return JSONResponse({"id": "x", "object": "chat.completion", "created": int(time.time()),
                             "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    return app


def test_llm_generator_counts_prose_bad_json_and_timeouts_and_keeps_valid_pairs():
    chunk = chunk_by_tokens(PASSAGE)[0]
    app = _scripted_app(["prose", "bad-schema", "json", "timeout", "timeout", "prose"])
    with serve_in_background(app) as base_url:
        generator = LLMGenerator("scripted", base_url, "key", "quantum error correction", retries=2, timeout_s=1.0)
        first = generator.generate(chunk, "Surface code", 3)  # prose, bad schema, then valid JSON
        second = generator.generate(chunk, "Surface code", 3)  # timeout, timeout, prose: skipped
    assert [e.question for e in first] == ["What is the surface code?"] and first[0].answer in chunk.text
    assert second == []
    stats = generator.stats
    assert stats["malformed output"] == 3 and stats["timeout"] == 2 and stats["requests"] == 6
    assert stats["chunks skipped after retries"] == 1 and stats["generated"] == 1


def test_llm_generator_through_the_projects_own_server(tiny_model_dir):
    """The tiny random model cannot write JSON: every reply is counted as malformed, nothing is kept."""
    chunk = chunk_by_tokens(PASSAGE)[0]
    with serve_in_background(create_app(str(tiny_model_dir), {}, base_name="tiny")) as base_url:
        generator = LLMGenerator("tiny", base_url, None, "quantum error correction", retries=1, max_tokens=16)
        made = generator.generate(chunk, "Surface code", 2)
    failures = generator.stats["malformed output"] + generator.stats["truncated output"]
    assert made == [] and generator.stats["requests"] == 2 and failures == 2


def test_local_generator_runs_the_same_prompts_through_transformers(tiny_model_dir):
    generator = LocalGenerator(str(tiny_model_dir), "quantum error correction", max_new_tokens=12)
    made = generator.generate(chunk_by_tokens(PASSAGE)[0], "Surface code", 2)
    failures = generator.stats["prose instead of JSON"] + generator.stats["malformed output"]
    assert generator.stats["chunks"] == 1 and (failures == 1) == (made == [])
    assert parse_pairs('Here: {"pairs": [{"question": "What is X here?", "answer": "X is Y."}]} ok').pairs


def test_too_few_examples_after_the_gate_go_to_the_critic(tiny_model_dir, tmp_path, embedder):
    """An impossible gate leaves no QA rows and the text is (by a raised bar) too little: the critic asks more
    of the text, then the job stops and says how many words it had."""
    options = tiny_job_options(tiny_model_dir, small_corpus(tmp_path / "docs"), max_rounds=1,
                               generation={"keep_quality": 1.0, "min_quality": 1.0},
                               gates={"min_train_examples": 100_000, "min_kept_words": 100_000})
    context = JobContext(Settings(home=tmp_path / "home"))
    context.__dict__["embedder"] = embedder  # share the loaded model (cached_property slot)
    state = build_graph(InMemorySaver(serde=StrictSerializer())).invoke(
        {"job_id": "job-gate", "request": "fine-tune a model on quantum error correction", "options": options},
        {"configurable": {"thread_id": "job-gate"}, "recursion_limit": 60}, context=context)
    assert state["status"] == "failed" and state["dataset"].train_rows < 100_000
    assert "too little data" in state["remedies"][0].reason and state["remedies"][0].route == "generator"
    assert f"{state['dataset'].kept_words} words kept" in state["outcome"]
    assert state["dataset"].dropped_examples.get("score below threshold", 0) + \
        state["dataset"].dropped_examples.get("answer not supported by its chunk", 0) > 0
    assert Path(state["dataset"].card).exists()
