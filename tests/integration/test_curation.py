"""Curation: token chunking with overlap, text filters, language, and the curator's precision and recall
at dropping planted off-topic documents from a mixed corpus."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from graphs.nodes.curator import curation_policy
from graphs.spec import JobSpec
from tools.data.chunking import approximate_tokens, blocks, chunk_by_tokens, tokenizer_counter
from tools.data.curation import chunk_rows, select_chunks
from tools.data.quality import detect_language, text_problem
from tools.llm.embeddings import Embedder
from tools.sources.documents import Document
from tools.sources.text_extraction import extract_file

DEMO = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "demo_corpus"
PUBMEDQA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "pubmedqa" / "pqal_dev.json"
OFF_TOPIC_FILES = {"sourdough-baking.md", "medieval-castle-architecture.md", "cricket-rules.txt"}
FRENCH = ("Le code de surface est un code correcteur d'erreurs quantiques. Il protège les qubits logiques "
          "en mesurant des stabilisateurs sur une grille de qubits physiques, et un décodeur déduit les erreurs "
          "les plus probables à partir des syndromes mesurés au cours du temps.")


def test_token_chunks_fit_overlap_and_keep_lists_whole():
    text = (DEMO / "surface-code.md").read_text()
    document = Document("local", "s.md", "s", text + "\n\n## Steps\n\n- measure stabilizers\n- decode\n- correct\n",
                        "s.md")
    chunks = chunk_by_tokens(document, max_tokens=120, overlap_tokens=30, min_tokens=20)
    assert all(approximate_tokens(c.text) <= 120 + 30 for c in chunks)
    same_section = [(a, b) for a, b in itertools.pairwise(chunks) if a.heading == b.heading]
    assert any(b.text.split(". ")[0] in a.text for a, b in same_section)  # overlap carried over
    assert ("Steps", "- measure stabilizers\n- decode\n- correct") in blocks(document.text)
    assert any("- measure stabilizers\n- decode\n- correct" in c.text for c in chunks)


@pytest.mark.parametrize(("text", "reason"), [
    ("Too few words here.", "too short"),
    ("$$ \\alpha_{1} = \\sum_{i=0}^{n} x_i^2 + {#} @@ ## %% && ** == || <> ~~ ^^ " * 4, "symbol-heavy"),
    (("Accept all cookies and read our privacy policy. Sign in or subscribe to the newsletter to continue "
     "reading this article about quantum codes and more topics today."), "boilerplate"),
    (("[1] A. Kitaev, Ann. Phys. 303, 2 (2003).\n[2] E. Dennis et al., J. Math. Phys. 43, 4452 (2002).\n"
     "[3] A. Fowler et al., Phys. Rev. A 86, 032324 (2012).\n[4] D. Gottesman, arXiv:quant-ph/9705052 (1997)."),
     "reference list"),
    ("Tlie qnantnm c0de wns rnade bv tbe grnnp vvith 5nrface lattlce tliat dcc0dcs thc crr0rs " * 3, "OCR garbage"),
    (("The surface code stores one logical qubit in a lattice of physical qubits and corrects errors by "
     "measuring stabilizers repeatedly, so that a decoder can infer the most likely error."), None),
])
def test_text_filters_name_the_problem(text, reason):
    assert text_problem(text, min_words=20) == reason


def test_language_identification_offline():
    assert detect_language("The surface code protects logical qubits with stabilizer measurements.")[0] == "en"
    assert detect_language(FRENCH)[0] == "fr"


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory) -> tuple[list[Document], set[str]]:
    """The demo corpus (12 on-topic, 3 planted off-topic) + 12 real PubMed abstracts (off-topic for a
    QEC subject) + one French on-topic document, as local files."""
    folder = tmp_path_factory.mktemp("mixed")
    records = json.loads(PUBMEDQA.read_text())
    for pmid in sorted(records)[100:112]:
        (folder / f"pubmed-{pmid}.txt").write_text("\n\n".join(records[pmid]["CONTEXTS"]))
    (folder / "code-de-surface.txt").write_text(f"{FRENCH}\n\n{FRENCH.replace('surface', 'Shor')}")
    documents, off_topic = [], set()
    for path in [*sorted(DEMO.iterdir()), *sorted(folder.iterdir())]:
        text, title = extract_file(path)
        document = Document("local", path.name, title or path.name, text, str(path))
        documents.append(document)
        if path.name in OFF_TOPIC_FILES or path.name.startswith("pubmed-"):
            off_topic.add(document.doc_id)
    return documents, off_topic


def test_curator_drops_planted_off_topic_documents(mixed_corpus, tmp_path):
    documents, off_topic = mixed_corpus
    embedder = Embedder()
    spec = JobSpec(subject="quantum error correction")
    curated = select_chunks(documents, curation_policy(spec), embedder, tokenizer_counter(str(embedder.model_path)))
    dropped = curated.off_topic
    precision = len(dropped & off_topic) / max(1, len(dropped))
    recall = len(dropped & off_topic) / len(off_topic)
    print(f"\ncurator off-topic documents: precision {precision:.3f}, recall {recall:.3f} "
          f"({len(dropped)} dropped, {len(off_topic)} planted of {len(documents)})")
    assert precision >= 0.95 and recall >= 0.95
    rows = chunk_rows(curated, documents)
    assert len(rows) == len(curated.chunks) and all({"relevance", "reason", "kept"} <= set(r) for r in rows)
    assert all(r["reason"].startswith("language fr") for r in rows if r["title"] == "code-de-surface.txt")
    kept_docs = {r["doc_id"] for r in rows if r["kept"]}
    assert not (kept_docs & off_topic) and len(kept_docs) >= 10
    assert all(r["relevance"] >= spec.curation.chunk_relevance_threshold for r in rows if r["kept"])


def test_repeated_texts_are_embedded_once_and_get_the_same_vector(shared_embedder):
    """A fact's question forms share one answer: each distinct text goes to the model once, and every copy
    gets its vector, in order."""
    texts = ["The surface code has a threshold near 1%.", "Cat codes bias the noise.",
             "The surface code has a threshold near 1%.", "Cat codes bias the noise.",
             "GKP codes live in an oscillator."]
    seen: list[int] = []
    vectors = shared_embedder.embed(texts, progress=lambda done, total: seen.append(total))
    alone = shared_embedder.embed(list(dict.fromkeys(texts)))
    assert vectors.shape == (5, shared_embedder.dimension) and seen == [3]
    assert (vectors[[0, 1, 4]] == alone).all() and (vectors[2] == vectors[0]).all() and (vectors[3] == vectors[1]).all()
