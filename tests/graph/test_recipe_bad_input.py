"""Bad input for the data recipe: tables and lists only, another language, a one-sentence document,
duplicate documents, code. Each gets a counted reason and the job goes on with the rest."""

from __future__ import annotations

import shutil

from langgraph.checkpoint.memory import InMemorySaver
from tiny_job import small_corpus, tiny_job_options

from agent.settings import Settings
from graphs.checkpointer import StrictSerializer
from graphs.context import JobContext
from graphs.graph import build_graph
from tools.data.chunking import Chunk
from tools.data.qa_extractive import generate_candidates

TABLE = """# Error-correcting codes compared

| Code | Distance | Physical qubits |
|---|---|---|
| Steane code | 3 | 7 |
| Shor code | 3 | 9 |
| Surface code (d=3) | 3 | 17 |

Stabilizer codes have three ingredients:
- a set of commuting Pauli operators
- a code space fixed by all of them
- a decoder that maps syndromes to corrections
"""
FRENCH = ("Le code de surface est un code correcteur d'erreurs quantiques défini sur un réseau carré de qubits. "
          "Chaque mesure de stabilisateur donne un syndrome, et un décodeur infère l'erreur la plus probable à "
          "partir de l'historique des syndromes. La distance du code augmente avec la taille du réseau, et le "
          "taux d'erreur logique diminue exponentiellement avec la distance sous le seuil.\n")
CODE = "\n".join(f"def syndrome_{i}(x): return [(a ^ b) & 0x{i:02x} for a, b in zip(x[::2], x[1::2])]"
                 for i in range(30)) + "\n"


def test_a_table_and_a_list_give_questions_of_their_own():
    chunk = Chunk("t-0000", "t", TABLE.split("\n", 2)[2], "Error-correcting codes compared", 0)
    examples, _rejected = generate_candidates(chunk, "codes.md")
    questions = {e.question for e in examples}
    assert "What is the distance of Steane code in Error-correcting codes compared?" in questions
    assert any(e.type == "list" and "a decoder that maps syndromes to corrections" in e.answer for e in examples)
    assert all(e.answer.rstrip(".").split()[-1] in chunk.text for e in examples if e.type == "table")


def test_bad_documents_are_counted_and_the_job_trains_on_the_rest(tiny_model_dir, tmp_path, shared_embedder):
    docs = small_corpus(tmp_path / "docs")
    (docs / "codes-table.md").write_text(TABLE)
    (docs / "code-de-surface.txt").write_text(FRENCH)
    (docs / "one-sentence.txt").write_text("The surface code is a stabilizer code.\n")
    shutil.copy(docs / "shor-code.md", docs / "shor-code-copy.md")
    (docs / "syndromes.py.txt").write_text(CODE)
    context = JobContext(Settings(home=tmp_path / "home"))
    context.__dict__["embedder"] = shared_embedder
    options = tiny_job_options(tiny_model_dir, docs, curation={"min_chunk_words": 12})
    state = build_graph(InMemorySaver(serde=StrictSerializer())).invoke(
        {"job_id": "job-bad", "request": "fine-tune a model on quantum error correction", "options": options},
        {"configurable": {"thread_id": "job-bad"}, "recursion_limit": 60}, context=context)
    dropped = state["curation"].dropped_chunks
    assert any(reason.startswith("language fr") for reason in dropped), dropped  # says which language
    assert any("duplicate" in reason for reason in dropped), dropped
    assert dropped.get("too short") or dropped.get("symbol-heavy"), dropped
    assert state["status"] == "succeeded" and state["dataset"].counts["train"] > 0
    assert state["dataset"].document_rows > 0
    assert "table" in state["dataset"].types or "list" in state["dataset"].types
    report = (tmp_path / "home" / "jobs" / "job-bad" / "report.md").read_text()
    assert "language fr" in report and "duplicate" in report
