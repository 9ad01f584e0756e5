"""The mixed recipe: document rows trained on every token, QA rows on the answer only; split minimums;
the early-stopping choice of the adapter that is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from tools.data.dataset import split_by_document
from tools.data.document_rows import mix, repeats_for_share
from tools.data.examples import Example
from tools.training.checkpointing import Progress
from tools.training.config import TrainingConfig
from tools.training.encoding import encode_record
from tools.training.lora import LoraRecipe


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def test_a_document_row_is_supervised_on_every_token_a_qa_row_on_its_answer_only(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = "The surface code is a stabilizer code on a square lattice of qubits."
    [document], truncated = encode_record(tokenizer, {"text": text}, 512)
    assert not truncated and document.labels == document.input_ids
    assert document.input_ids[:-1] == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert document.input_ids[-1] == tokenizer.eos_token_id

    [qa], _ = encode_record(tokenizer, chat("What is the surface code?", text), 512)
    supervised = [t for t, label in zip(qa.input_ids, qa.labels, strict=True) if label != -100]
    prompt = tokenizer.apply_chat_template(chat("What is the surface code?", text)["messages"][:-1],
                                           tokenize=False, add_generation_prompt=True)
    assert qa.labels[: len(tokenizer(prompt, add_special_tokens=False)["input_ids"])] == \
        [-100] * len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert text in tokenizer.decode(supervised) and "What is the surface code" not in tokenizer.decode(supervised)


def test_a_long_document_row_is_split_into_windows_not_cut(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = " ".join(f"Sentence {i} says that code {i} has distance {i % 7}." for i in range(80))
    windows, _ = encode_record(tokenizer, {"text": text}, 64)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert all(len(w.input_ids) <= 64 for w in windows) and [t for w in windows for t in w.input_ids] == ids


def test_a_row_of_no_known_kind_is_refused(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    with pytest.raises(Exception, match="neither a chat row"):
        encode_record(tokenizer, {"prompt": "x"}, 64)


def test_the_loss_of_a_mixed_batch_counts_document_tokens_and_answer_tokens(tiny_model_dir, tmp_path):
    """Through the recipe's own collate and loss: a document row contributes every token, a QA row only its
    answer's, so the summed loss equals the sum of the two rows' losses over exactly those tokens."""
    config = TrainingConfig(base_model_path=str(tiny_model_dir), output_dir=str(tmp_path / "a"),
                            checkpoint_dir=str(tmp_path / "c"), precision="fp32", batch_size=2, max_steps=1,
                            threads=1)
    recipe = LoraRecipe(config)
    rows = [{"text": "Magic state distillation turns noisy magic states into fewer, cleaner ones."},
            chat("What does distillation do?", "It turns noisy magic states into cleaner ones."),
            chat("What is a qubit?", "A two-level quantum system.")]
    recipe.setup(rows, [])
    document, qa = recipe.train_set[0], recipe.train_set[1]
    assert all(label != -100 for label in document.labels) and any(label == -100 for label in qa.labels)
    with torch.no_grad():
        both = recipe._loss_sum(*recipe._collate([document, qa]))
        alone = sum(recipe._loss_sum(*recipe._collate([row])) for row in (document, qa))
    assert torch.isclose(both, alone, rtol=1e-4)


def _examples(rows_per_doc: dict[str, int]) -> list[Example]:
    return [Example(f"Question {d} {i}?", f"Answer {i}.", f"{d}-c", d, "fact")
            for d, n in rows_per_doc.items() for i in range(n)]


def test_validation_and_test_each_hold_a_tenth_of_the_documents_and_ten_rows():
    examples = _examples({f"doc{i:02d}": 4 for i in range(32)})
    splits = split_by_document(examples, seed=3)
    docs = {name: {e.doc_id for e in rows} for name, rows in splits.items()}
    for name in ("val", "test"):
        assert len(docs[name]) >= 4 and len(splits[name]) >= 10, name  # 10% of 32 documents, 10 rows
    assert not (docs["train"] & docs["val"]) and not (docs["train"] & docs["test"])
    assert len(splits["train"]) >= 0.6 * len(examples)


def test_small_corpora_keep_the_held_out_share_bounded():
    splits = split_by_document(_examples({f"d{i}": 2 for i in range(5)}))
    assert splits["val"] and splits["test"] and len(splits["train"]) >= 4
    assert split_by_document(_examples({"a": 5, "b": 5}))["train"]  # under 3 documents: all trains


@pytest.mark.parametrize(("documents", "qa", "share", "expected"), [
    (10, 70, 0.3, 3), (10, 20, 0.3, 1), (10, 300, 0.3, 3), (0, 50, 0.3, 0), (10, 50, 0.0, 0), (5, 0, 0.3, 1)])
def test_document_rows_are_repeated_toward_the_share(documents, qa, share, expected):
    assert repeats_for_share(documents, qa, share, max_repeats=3) == expected
    assert len(mix(list(range(documents)), qa, share, 3)) == documents * expected


def test_early_stopping_keeps_the_adapter_of_the_best_validation(tiny_model_dir, tmp_path):
    """Validation losses 2.0, 1.5, 1.7, 1.9 with patience 2: training stops after the fourth check and the
    adapter kept is the one saved at the second (the best), not the last."""
    config = TrainingConfig(base_model_path=str(tiny_model_dir), output_dir=str(tmp_path / "adapter"),
                            checkpoint_dir=str(tmp_path / "checkpoints"), precision="fp32", batch_size=2,
                            max_steps=20, validations_per_epoch=1, early_stopping_patience=2, threads=1,
                            learning_rate=5e-3)
    recipe = LoraRecipe(config)
    recipe.setup([chat(f"What is code {i}?", f"Code {i} has distance {i + 3}.") for i in range(4)],
                  [chat("What is code 9?", "Code 9 has distance 12.")])
    scripted = iter([2.0, 1.5, 1.7, 1.9, 1.0, 1.0])
    snapshots: list[dict] = []
    original_copy = recipe._adapter_copy

    def copy_and_remember() -> dict:
        snapshots.append(original_copy())
        return snapshots[-1]

    recipe.evaluate_loss = lambda examples: next(scripted)  # the validation losses a real run could give
    recipe._adapter_copy = copy_and_remember
    result = recipe.train()
    assert result.val_history == [2.0, 1.5, 1.7, 1.9] and result.stopped_early and result.val_loss == 1.5
    assert result.steps == 4 * recipe.steps_per_epoch
    from safetensors.torch import load_file

    saved = load_file(str(Path(result.adapter_dir) / "adapter_model.safetensors"))
    best = snapshots[1]
    assert saved.keys() and all(torch.equal(saved[k].float(), best[_peft_key(k, best)].float()) for k in saved)
    assert not all(torch.equal(saved[k].float(), snapshots[0][_peft_key(k, best)].float()) for k in saved)


def _peft_key(saved_key: str, state: dict) -> str:
    return saved_key if saved_key in state else next(k for k in state if k.endswith(saved_key.split(".", 1)[-1]))


def test_progress_round_trips_the_validation_history():
    progress = Progress(val_history=[2.0, 1.5], val_steps=[2, 4], best_val=1.5)
    assert Progress.from_dict(progress.__dict__).val_history == [2.0, 1.5]


def test_a_studys_sentence_questions_are_trimmed_from_training_beside_its_findings():
    from graphs.nodes.generator import trim_sentence_questions

    def row(doc: str, form: str, score: float) -> Example:
        return Example(f"{form} question of {doc} {score}?", "An answer.", f"{doc}-c", doc, form,
                       quality_score=score)

    study = [row("study", "findings", 0.9), row("study", "section", 0.9)]
    study += [row("study", "subject", 0.7), row("study", "cloze", 0.95), row("study", "object", 0.8)]
    manual = [row("manual", "heading", 0.9), row("manual", "subject", 0.7), row("manual", "object", 0.6)]
    train, left_out = trim_sentence_questions(study + manual, keep=1)
    assert left_out == 2
    assert [e.type for e in train if e.doc_id == "study"] == ["findings", "section", "cloze"]  # the best-scored
    assert [e for e in train if e.doc_id == "manual"] == manual  # no findings question: every row stays
    assert trim_sentence_questions(study, keep=0) == (study[:2], 3)
    assert trim_sentence_questions(study + manual, keep=None) == (study + manual, 0)  # the default: all kept
