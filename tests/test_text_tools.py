"""Extraction, chunking, dedup, extractive QA and splits on real files."""

from pathlib import Path

import pytest

from tools.chunking import Chunk, chunk_document
from tools.dataset import split_by_document
from tools.dedup import find_duplicates
from tools.documents import Document, SourceError
from tools.qa_extractive import generate_examples, question_for
from tools.sources.local import LocalFolderSource
from tools.text_extraction import extract_file

REPO = Path(__file__).resolve().parents[1]
CORRUPT = REPO / "eval_sets" / "corrupt"
DEMO = REPO / "eval_sets" / "demo_corpus"


@pytest.mark.parametrize(("name", "reason"), [
    ("broken.pdf", "corrupt PDF"), ("empty.txt", "no text"), ("binary.md", "binary content"),
])
def test_bad_files_raise_with_a_reason(name, reason):
    with pytest.raises(SourceError, match=reason):
        extract_file(CORRUPT / name)


def test_latin1_text_is_decoded():
    text, _ = extract_file(CORRUPT / "latin1.txt")
    assert "é" in text or "ñ" in text or "ü" in text


def test_pdf_and_html_give_clean_text():
    pdf_text, _ = extract_file(DEMO / "threshold-theorem.pdf")
    assert "threshold theorem" in pdf_text.lower()
    html_text, title = extract_file(next(DEMO.glob("*.html")))
    assert title and "cookie" not in html_text.lower()  # footer boilerplate dropped


def test_local_source_reads_every_supported_file(tmp_path):
    source = LocalFolderSource(DEMO)
    references = source.search("anything", 100)
    assert len(references) == len([p for p in DEMO.iterdir() if p.is_file()])
    with pytest.raises(SourceError, match="no such file or folder"):
        LocalFolderSource(tmp_path / "missing").search("x", 10)


def _document(name: str) -> Document:
    text, title = extract_file(DEMO / name)
    return Document(source="local", native_id=name, title=title, text=text, uri=name)


def test_chunks_respect_size_and_keep_headings():
    chunks = chunk_document(_document("surface-code.md"), max_words=160)
    assert len(chunks) > 3
    assert all(len(c.text.split()) <= 200 for c in chunks)
    assert any(c.heading for c in chunks)


def test_extractive_answers_are_verbatim_source_text():
    examples = []
    for path in sorted(DEMO.glob("*.md")):
        for chunk in chunk_document(_document(path.name)):
            for example in generate_examples(chunk, path.name):
                assert example.answer in chunk.text
                examples.append(example)
    assert len(examples) > 40
    assert {"definition", "function"} <= {e.type for e in examples}


@pytest.mark.parametrize(("sentence", "question"), [
    ("The surface code is a topological stabilizer code on a square lattice.", "What is the surface code?"),
    ("Logical qubits are qubits encoded in many physical qubits.", "What are logical qubits?"),
    ("Decoders are needed because syndromes alone do not say which error happened.",
     "Why are decoders needed?"),
    ("Unlike classical bits, qubits cannot be copied.", "What distinguishes qubits from classical bits?"),
    ("The decoder uses the syndrome history to infer errors.", "What does the decoder use?"),
    ("The Shor code is a degenerate code.", "What is the Shor code?"),
    ("A fault-tolerant circuit is a circuit in which one fault causes at most one error.",
     "What is a fault-tolerant circuit?"),
    ("A code of distance d can correct up to d - 1 erasures.", "What can a code of distance d correct?"),
])
def test_question_patterns(sentence, question):
    assert question_for(sentence)[0] == question


@pytest.mark.parametrize("sentence", [
    "The GKP code is designed to correct small displacements in phase space.",
    "When p is smaller than p_th, the ratio is less than one.",
])
def test_clauses_are_not_taken_for_terms(sentence):
    assert question_for(sentence) is None


def test_near_duplicates_found():
    text = ("The surface code protects logical qubits by measuring stabilizers on a lattice of physical qubits. "
            "Each round of measurement yields a syndrome, and a decoder infers the most likely error from the "
            "history of syndromes. The code distance grows with the size of the lattice, and the logical error "
            "rate falls exponentially with distance when the physical error rate is below threshold.")
    found = find_duplicates([text, text.upper(), text.replace("lattice", "grid", 1), "Something else entirely here."],
                            threshold=0.7)
    assert found[1] == (0, "exact") and found[2][1] == "near" and 3 not in found


def test_splits_never_share_a_document():
    docs = [_document(p.name) for p in sorted(DEMO.glob("*.md"))]
    examples = [e for d in docs for c in chunk_document(d) for e in generate_examples(c, d.title)]
    splits = split_by_document(examples)
    owners = {name: {e.doc_id for e in split} for name, split in splits.items()}
    assert owners["test"] and owners["val"]
    assert not (owners["train"] & owners["test"]) and not (owners["train"] & owners["val"])
    assert not (owners["val"] & owners["test"])


@pytest.mark.parametrize(("sentence", "question"), [
    ("The aim of this study was to evaluate statins after stroke.", 'What was the aim of the study "Statins and stroke"?'),
    ("To assess outcomes of patients with carcinoma.", 'What was the aim of the study "Statins and stroke"?'),
    ("We conducted a population-based case-referent study.", 'How was the study "Statins and stroke" carried out?'),
    ("These results suggest that statins improve outcome.", 'What did the study "Statins and stroke" conclude?'),
])
def test_abstract_sentences_give_questions_about_the_study(sentence, question):
    from tools.qa_extractive import study_name, study_question_for

    study = study_name("Statins and stroke", [])
    assert study_question_for(sentence, study)[0] == question
    assert study_question_for("The weather was fine on the day.", study) is None


def test_an_untitled_study_is_named_by_its_aim_never_by_an_identifier():
    from tools.qa_extractive import study_name, study_question_for

    aim = "The aim of this study was to assess whether off-hours diagnosis delays treatment."
    conclusion = "These results suggest that diagnosis at night delays treatment."
    named = "the study that set out to assess whether off-hours diagnosis delays treatment"
    for identifier in ("pubmed 23774337", "2301.12345", "notes", "arxiv-2301.12345v2"):
        assert study_name(identifier, [conclusion]) is None, identifier
        assert study_name(identifier, [aim, conclusion]) == named, identifier
    assert study_question_for(conclusion, named)[0] == f"What did {named} conclude?"
    assert study_question_for(aim, named) is None  # the name would give the answer away
    assert study_question_for(conclusion, None) is None
    assert study_name("x", ["To assess outcomes of patients with carcinoma."]) == \
        "the study that set out to assess outcomes of patients with carcinoma"


def test_a_cloze_question_quotes_the_opening_and_the_answer_is_the_rest_never_the_question_back():
    from tools.quality import GateConfig, question_overlap, well_formed_question

    sentence = "Most of the patients enrolled were Caucasian and had advanced stage disease at diagnosis."
    chunk = Chunk(chunk_id="c1", doc_id="d1", text=f"{sentence} It rained.", heading="", position=0)
    [example] = generate_examples(chunk, "pubmedqa")
    assert example.type == "cloze"
    assert example.question == 'How does the sentence "Most of the patients …" continue?'
    assert example.answer == "enrolled were Caucasian and had advanced stage disease at diagnosis."
    assert example.answer in chunk.text and well_formed_question(example.question, GateConfig())
    assert question_overlap(example.question, example.answer) < 0.2
