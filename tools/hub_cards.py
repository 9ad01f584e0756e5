"""YAML front matter in the shape the Hugging Face Hub and libraries read: `configs:` on dataset cards
(so `datasets.load_dataset(folder)` gives one config per file format with its splits, instead of one split
of every .jsonl file) and model-card metadata (base_model, library_name, tags, datasets, model-index)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

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
