"""YAML front matter in the shape the Hugging Face Hub and libraries read: `configs:` on dataset cards
(so `datasets.load_dataset(folder)` gives one config per file format with its splits, instead of one split
of every .jsonl file) and model-card metadata (base_model, library_name, tags, datasets, model-index)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tools.stores.model_registry import ModelVersion

# our split names -> the names `datasets` uses
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def front_matter(metadata: Mapping[str, Any]) -> str:
    """'---\\n<yaml>---\\n' (block style, keys in the given order)."""
    return "---\n" + yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True) + "---\n"


def dataset_configs(files: Mapping[str, Mapping[str, str]], default: str = "chat") -> list[dict[str, Any]]:
    """One config per format ({format: {split: file name}}), the `default` format marked as such; splits
    with no file are left out."""
    configs = []
    for fmt, by_split in files.items():
        data_files = [{"split": HUB_SPLITS.get(split, split), "path": name} for split, name in by_split.items()]
        config: dict[str, Any] = {"config_name": fmt, "data_files": data_files}
        if fmt == default:
            config["default"] = True
        configs.append(config)
    return configs


def split_parse(card: str) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a card; ({}, card) when it has none."""
    if not card.startswith("---\n"):
        return {}, card
    end = card.find("\n---\n", 4)
    if end < 0:
        return {}, card
    return yaml.safe_load(card[4:end]) or {}, card[end + 5:]


# -- model cards -------------------------------------------------------------------------------------

# evaluation metrics as model-index entries: (our key, Hub metric type, name shown)
MODEL_INDEX_METRICS = (("answer_nll", "nll", "answer NLL"), ("rouge_l", "rouge", "ROUGE-L"),
                       ("token_f1", "f1", "token F1"), ("exact_match", "exact_match", "exact match"),
                       ("general_perplexity", "perplexity", "general-text perplexity"))


def model_index(name: str, dataset_name: str, subject: str, tuned: Mapping[str, Any],
                base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """model-index: the tuned model's held-out metrics (and the base model's, named as such)."""
    metrics = []
    for key, kind, label in MODEL_INDEX_METRICS:
        for side, scores in (("tuned", tuned), ("base", base)):
            if isinstance(scores.get(key), int | float):
                metrics.append({"type": kind if side == "tuned" else f"{kind}_base",
                                "value": round(float(scores[key]), 4), "name": f"{label} ({side})"})
    return [{"name": name, "results": [{
        "task": {"type": "text-generation", "name": "Text generation"},
        "dataset": {"name": f"{subject} (held-out test split)", "type": dataset_name, "split": "test"},
        "metrics": metrics}]}]


def model_metadata(*, name: str, base_hub_id: str | None, subject_tag: str, dataset_name: str,
                   subject: str, tuned: Mapping[str, Any], base: Mapping[str, Any],
                   library: str = "peft") -> dict[str, Any]:
    """The front matter of a registered version's README.md (library "peft") or of its merged export
    (library "transformers"). `base_model` only when the base has a Hub id (a local folder has none)."""
    metadata: dict[str, Any] = {}
    if base_hub_id:
        metadata["base_model"] = base_hub_id
    if library == "peft":
        metadata["base_model_relation"] = "adapter"
    metadata |= {"library_name": library, "pipeline_tag": "text-generation",
                 "tags": ["ftagent", "lora", *(["peft"] if library == "peft" else ["merged"]), subject_tag],
                 "datasets": [dataset_name],
                 "model-index": model_index(name, dataset_name, subject, tuned, base)}
    return metadata


def name_base_in_adapter(adapter_dir: Path | str, base_name: str) -> None:
    """adapter_config.json's base_model_name_or_path becomes `base_name` (the Hub id, or the user's own
    folder), not the converted copy under the ftagent home that training loaded."""
    path = Path(adapter_dir) / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base_name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def version_metadata(version: ModelVersion, library: str = "peft") -> dict[str, Any]:
    """The README.md front matter of a registered version (or, library "transformers", of its merge)."""
    from tools.models.catalogue import hub_id_for
    from tools.text import slugify

    return model_metadata(name=version.name, base_hub_id=hub_id_for(version.base_model),
                          subject_tag=slugify(version.subject, 40), dataset_name=f"ftagent-job-{version.job_id}",
                          subject=version.subject, tuned=version.metrics.get("tuned") or {},
                          base=version.metrics.get("base") or {}, library=library)


def write_merged_card(folder: Path, version: ModelVersion) -> Path:
    """The merged export's own README.md: the version's metadata for transformers and a short card."""
    text = (f"# {version.name} (merged)\n\nThe LoRA adapter of {version.name} merged into its base "
            f"**{version.base_model}**: a standalone model for transformers, vLLM or llama.cpp's converter. "
            f"Subject: {version.subject}. Evaluation and training: the version's own card.\n")
    path = folder / "README.md"
    path.write_text(front_matter(version_metadata(version, "transformers")) + "\n" + text)
    return path
