"""Outputs the Hugging Face tools read as they are: a registered version's folder loads with peft's
AutoPeftModelForCausalLM (the base named by its Hub id, resolved from the local cache), its README.md has
YAML front matter with base_model and model-index, the merged export has its own card, and dataset
folders carry `configs:` so `datasets.load_dataset` gives the right splits."""

import json
from pathlib import Path

import pytest
import yaml
from hub_cache import cache_under_id, use_cache
from langgraph.checkpoint.memory import InMemorySaver
from own_dataset import parts_rows, write_rows

from agent.settings import Settings
from graphs.checkpointer import StrictSerializer
from graphs.context import JobContext
from graphs.graph import build_graph
from tools.data.dataset import split_by_document, write_splits
from tools.data.dataset_card import write_dataset_card
from tools.data.examples import Example
from tools.hub_cards import split_parse
from tools.stores.model_registry import ModelRegistry

HUB_ID = "someone/tiny-chat"


@pytest.fixture(scope="module")
def registered(tiny_model_dir, tmp_path_factory):
    """A tiny job on the parts list whose base is named by a Hub id in a private local cache."""
    folder = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_cache(monkeypatch, folder / "hf-cache")
        cache_under_id(tiny_model_dir, folder / "hf-cache", HUB_ID)
        options = {"base_model": HUB_ID, "dataset": str(write_rows(folder / "own.jsonl", parts_rows())),
                   "max_rounds": 0, "merge": True,
                   "gates": {"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0},
                   "training": {"max_steps": 3, "precision": "fp32", "checkpoint_every": 3},
                   "evaluation": {"generate_limit": 2, "max_new_tokens": 4, "general_texts": 2, "general_qa": 1}}
        state = build_graph(InMemorySaver(serde=StrictSerializer())).invoke(
            {"job_id": "hub-job", "request": "fine-tune a model on our parts list", "options": options},
            {"configurable": {"thread_id": "hub-job"}, "recursion_limit": 60},
            context=JobContext(Settings(home=folder / "home")))
        version = ModelRegistry(folder / "home" / "ftagent.sqlite").get(state["model"].name)
        yield version, monkeypatch


def test_the_version_folder_loads_with_auto_peft_model(registered):
    from peft import AutoPeftModelForCausalLM

    version, _ = registered
    folder = Path(version.adapter_path)
    assert folder == Path(version.card_path).parent  # the version's folder is the adapter
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    model = AutoPeftModelForCausalLM.from_pretrained(str(folder))
    assert model.peft_config["default"].base_model_name_or_path == HUB_ID
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0


def test_the_readme_front_matter_is_hub_metadata(registered):
    version, _ = registered
    metadata, body = split_parse(Path(version.card_path).read_text())
    assert metadata["base_model"] == HUB_ID and metadata["library_name"] == "peft"
    assert {"ftagent", "lora", "peft", "our-parts-list"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["ftagent-job-hub-job"]
    metrics = {m["name"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics["answer NLL (tuned)"] == round(version.metrics["tuned"]["answer_nll"], 4)
    assert "answer NLL (base)" in metrics and body.lstrip().startswith(f"# {version.name}")


def test_the_merged_export_has_its_own_card(registered):
    version, _ = registered
    metadata, body = split_parse((Path(version.merged_path) / "README.md").read_text())
    assert metadata["library_name"] == "transformers" and metadata["base_model"] == HUB_ID
    assert "merged" in metadata["tags"] and "(merged)" in body


def test_a_version_on_a_local_folder_names_that_folder(tiny_model_dir):
    from graphs.nodes.deployer import base_model_name

    assert base_model_name(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    assert base_model_name("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_generated_dataset_folder_loads_with_its_splits_and_formats(tmp_path):
    from datasets import load_dataset

    examples = [Example(question=f"What does code {i} protect?", answer=f"Code {i} protects qubit {i}.",
                        chunk_id=f"c{i}", doc_id=f"doc{i % 6}", type="definition", source=f"Doc {i % 6}",
                        quality_score=0.9, metadata={"difficulty": "easy"}) for i in range(24)]
    splits = split_by_document(examples)
    write_splits(tmp_path, splits, "You are an expert.")
    card = write_dataset_card(tmp_path, "codes", splits, {"generator": "extractive"}).read_text()
    assert yaml.safe_load(card.split("---\n")[1])["configs"][0]["default"] is True
    counts = {name: len(items) for name, items in splits.items()}
    chat = load_dataset(str(tmp_path))
    assert {k: len(v) for k, v in chat.items()} == {"train": counts["train"], "validation": counts["val"],
                                                    "test": counts["test"]}
    assert chat["train"][0]["messages"][1]["role"] == "user"
    alpaca = load_dataset(str(tmp_path), "alpaca")
    assert len(alpaca["test"]) == counts["test"] and "instruction" in alpaca["test"].column_names
