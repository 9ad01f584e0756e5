"""Query expansion and source choice: pure functions, table tests."""

from __future__ import annotations

import pytest

from tools.intake.query_expansion import (
    choose_sources,
    clean_subject,
    expand_queries,
    key_phrases,
    variants,
)


@pytest.mark.parametrize(
    ("subject", "cleaned"),
    [
        ("fine-tune SmolLM2 on quantum error correction", "quantum error correction"),
        ("Please train a model about breast cancer therapy.", "breast cancer therapy"),
        ("graph neural networks", "graph neural networks"),
    ],
)
def test_clean_subject_drops_the_request(subject: str, cleaned: str) -> None:
    assert clean_subject(subject) == cleaned


def test_key_phrases_split_on_stopwords() -> None:
    assert key_phrases("deep learning for tumour diagnosis") == [
        "deep learning for tumour diagnosis",
        "deep learning",
        "tumour diagnosis",
    ]


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("surface code", ["surface codes"]),
        ("qubits", ["qubit"]),
        ("quantum error correction", ["QEC", "fault-tolerant quantum computing"]),
        ("cancer", ["neoplasms", "tumour"]),
        ("myocardial infarction", ["heart attack"]),
        ("llm", ["large language model"]),
        ("fault-tolerant", ["fault tolerant"]),
    ],
)
def test_variants_include(phrase: str, expected: list[str]) -> None:
    found = variants(phrase)
    assert all(item in found for item in expected), found
    assert phrase not in found


def test_variants_leave_uncountable_words_alone() -> None:
    assert variants("diagnosis") == [] and variants("deep learning") == ["neural networks"]


def test_expand_queries_is_ordered_deduplicated_and_capped() -> None:
    queries = expand_queries(
        "fine-tune SmolLM2 on quantum error correction",
        related_titles=["Toric code", "Quantum error correction"],
        mesh_terms=[],
        max_queries=6,
    )
    assert queries[0] == "quantum error correction"
    assert "QEC" in queries
    assert len(queries) <= 6
    assert len({q.lower() for q in queries}) == len(queries)


def test_expand_queries_uses_mesh_and_related_titles() -> None:
    queries = expand_queries(
        "breast cancer therapy", mesh_terms=["breast neoplasms"], related_titles=["Tamoxifen"]
    )
    assert queries.index("breast neoplasms") < queries.index("Tamoxifen")


def test_expand_queries_is_deterministic() -> None:
    subject = "deep learning for tumour diagnosis"
    assert expand_queries(subject) == expand_queries(subject)


@pytest.mark.parametrize(
    ("subject", "first", "names"),
    [
        ("fine-tune on quantum error correction", "arxiv", ["arxiv", "wikipedia"]),
        ("breast cancer therapy outcomes", "pubmed", ["pubmed", "wikipedia", "arxiv"]),
        ("graph neural networks", "arxiv", ["arxiv", "wikipedia"]),
        ("history of the Roman Empire", "wikipedia", ["wikipedia"]),
        ("deep learning for tumour diagnosis", "pubmed", ["pubmed", "arxiv", "wikipedia"]),
    ],
)
def test_choose_sources(subject: str, first: str, names: list[str]) -> None:
    plan = choose_sources(subject)
    assert [name for name, _, _ in plan] == names
    assert plan[0][0] == first
    assert sum(share for _, share, _ in plan) == pytest.approx(1.0)
    assert all(reason for _, _, reason in plan)


def test_choose_sources_names_the_terms_it_saw() -> None:
    (name, _, reason), *_ = choose_sources("insulin therapy in diabetes")
    assert name == "pubmed" and "therapy" in reason and "diabetes" in reason
