"""Shared fixtures: a tiny model built once per session, paths to the repo's data, an isolated home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEMO_CORPUS = REPO / "eval_sets" / "demo_corpus"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a ChatML tokenizer, saved as a Hugging Face folder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh ftagent home; the real ~/.ftagent is never touched."""
    folder = tmp_path / "home"
    monkeypatch.setenv("FTAGENT_HOME", str(folder))
    monkeypatch.delenv("FTAGENT_CONFIG", raising=False)
    return folder
