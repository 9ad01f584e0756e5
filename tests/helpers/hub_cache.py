"""A model folder placed in a private Hugging Face cache under a Hub id, as `snapshot_download` leaves it
(refs/main -> snapshots/<commit>/), so offline loading by id can be tested without the network."""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0" * 40


def cache_under_id(model_dir: Path, cache: Path, repo_id: str) -> Path:
    """Copy `model_dir` into `cache` as `repo_id`; returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def use_cache(monkeypatch, cache: Path) -> None:
    """Point huggingface_hub (and so transformers and peft) at `cache`."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
