"""A registered version is never seen without its model card: the deployer writes the card (atomically)
before the registry row, a crash between them leaves nothing visible, and a version whose card is missing
(registered by an older build) still answers GET /models/{name}; a resumed deployer writes the card."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from job_results import dataset_summary, evaluation_result, gate, training_summary
from langgraph.runtime import Runtime
from tiny_model import random_adapter

from agent.api import PREFIX, create_app
from agent.service import JobService
from agent.settings import Settings
from graphs.context import JobContext
from graphs.nodes.deployer import register_model
from graphs.spec import JobSpec
from tools.stores.model_registry import ModelRegistry

TOKEN = "test-token-123"


def deployer_state(base: Path, adapter: Path) -> dict:
    scores = {"answer_nll": 2.0, "token_f1": 0.2, "rouge_l": 0.2, "exact_match": 0.0, "general_perplexity": 90.0,
              "examples": 8, "generated": 2}
    gates = [gate("answer_nll", True, value=0.1, detail="ok")]
    return {"job_id": "job-1", "request": "fine-tune on quantum error correction",
            "spec": JobSpec(subject="quantum error correction", base_model=str(base)), "round": 1,
            "training": training_summary(adapter_dir=str(adapter), base_model_path=str(base), config={},
                                         train_loss=1.0, val_loss=1.1, steps=4),
            "evaluation": evaluation_result(passed=True, base=scores, tuned=scores, gates=gates),
            "dataset": dataset_summary(hash="abc", counts={"train": 8}, types={"qa": 8},
                                       paths={"train": str(adapter.parent / "dataset" / "train.jsonl")}),
            "documents": [], "rounds": [], "remedies": []}


def test_a_crash_between_card_and_row_leaves_nothing_visible_and_a_rerun_registers_both(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    service = JobService(Settings(home=home))
    runtime = Runtime(context=JobContext(service.settings))
    state = deployer_state(tiny_model_dir, random_adapter(tiny_model_dir, tmp_path / "adapter"))
    real_register = ModelRegistry.register

    def crash(self, version):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ModelRegistry, "register", crash)
    with pytest.raises(OSError):
        register_model(state, runtime)
    assert service.models() == []  # the crash left no version without a card
    monkeypatch.setattr(ModelRegistry, "register", real_register)
    name = register_model(state, runtime)["model"].name  # the resumed deployer
    client = TestClient(create_app(service, TOKEN))
    answer = client.get(f"{PREFIX}/models/{name}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and f"# {name}" in answer.json()["card"]


def test_a_version_without_its_card_still_answers_and_a_resumed_deployer_writes_it(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    service = JobService(Settings(home=tmp_path / "home"))
    runtime = Runtime(context=JobContext(service.settings))
    state = deployer_state(tiny_model_dir, random_adapter(tiny_model_dir, tmp_path / "adapter"))
    name = register_model(state, runtime)["model"].name
    card = Path(service.model(name).card_path)
    card.unlink()  # as an older build left it when it died between row and card
    client = TestClient(create_app(service, TOKEN))
    answer = client.get(f"{PREFIX}/models/{name}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and "(no model card:" in answer.json()["card"]
    register_model(state, runtime)
    assert f"# {name}" in card.read_text() and len(service.models()) == 1
