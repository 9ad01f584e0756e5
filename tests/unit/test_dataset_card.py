"""Exports (chat, Alpaca, ShareGPT) and the dataset card."""

from __future__ import annotations

import json

from tools.data.dataset import split_by_document, write_splits
from tools.data.dataset_card import write_dataset_card
from tools.data.examples import Example


def _examples() -> list[Example]:
    kinds = ["definition", "cause", "comparison", "function"]
    return [Example(question=f"What is topic {i} about?", answer=f"Topic {i} is about codes and qubits " * (1 + i % 3),
                    chunk_id=f"c{i}", doc_id=f"doc{i % 5}", type=kinds[i % 4], source=f"Doc {i % 5}",
                    quality_score=0.8, metadata={"difficulty": ["easy", "medium", "hard"][i % 3]})
            for i in range(30)]


def test_exports_and_card(tmp_path):
    splits = split_by_document(_examples())
    written = write_splits(tmp_path, splits, "You are an expert.")
    for split, items in splits.items():
        chat = [json.loads(line) for line in written["chat"][split].read_text().splitlines()]
        alpaca = [json.loads(line) for line in written["alpaca"][split].read_text().splitlines()]
        share = [json.loads(line) for line in written["sharegpt"][split].read_text().splitlines()]
        assert len(chat) == len(alpaca) == len(share) == len(items)
        assert all(a["instruction"] == c["messages"][1]["content"] and a["output"] == c["messages"][2]["content"]
                   for a, c in zip(alpaca, chat, strict=True))
        assert all([t["from"] for t in s["conversations"]] == ["system", "human", "gpt"] for s in share)
        assert all(c["metadata"]["difficulty"] for c in chat)
    summary = {"generator": "extractive", "dropped_examples": {"answer not supported by its chunk": 4},
               "generator_stats": {"timeout": 2}}
    card = write_dataset_card(tmp_path, "quantum error correction", splits, summary, seed=1).read_text()
    assert (tmp_path / "question_lengths.png").stat().st_size > 1000
    assert (tmp_path / "answer_lengths.png").exists()
    assert "| answer not supported by its chunk | 4 |" in card and "| timeout | 2 |" in card
    assert "### By difficulty" in card and "| comparison |" in card and "| Doc 3 |" in card
    assert card.count("| What is topic") == 10  # ten random examples
    assert card == write_dataset_card(tmp_path, "quantum error correction", splits, summary, seed=1).read_text()


def test_the_card_has_configs_that_datasets_reads_without_mixing_formats(tmp_path):
    """`datasets.load_dataset(folder)` gives the chat rows' splits; the document rows are their own config."""
    import datasets

    from tools.data.dataset_card import write_dataset_card

    splits = split_by_document(_examples())
    write_splits(tmp_path, splits, "You are an expert.", [{"text": "The surface code is a code.",
                                                           "metadata": {"kind": "document"}}])
    write_dataset_card(tmp_path, "quantum error correction", splits, {"generator": "extractive"})
    chat = datasets.load_dataset(str(tmp_path))
    assert {name: len(rows) for name, rows in chat.items()} == \
        {{"val": "validation"}.get(k, k): len(v) for k, v in splits.items() if v}
    assert "messages" in chat["train"].column_names
    documents = datasets.load_dataset(str(tmp_path), "documents")
    assert documents["train"]["text"] == ["The surface code is a code."]
