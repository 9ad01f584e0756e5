"""The fixtures every tier shares (tests/unit, tests/graph, tests/integration): a tiny model built once
per session, an isolated home and a service on it, the replay server, the scripted chat model and judge,
a PostgreSQL cluster, the embedded MiniLM. The helpers they build on are modules in tests/helpers
(on the path: pyproject's pythonpath)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from judge_server import JudgeServer, running_judge
from replay_server import ReplayServer
from scripted_chat import ScriptedChat, serve
from tiny_model import build_tiny_model

from agent.service import JobService
from agent.settings import resolve_settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEMO_CORPUS = REPO / "tools" / "eval_sets" / "demo_corpus"

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


@pytest.fixture()
def service(home) -> JobService:
    """The service every door uses, on the isolated home (settings from this test's environment)."""
    return JobService(resolve_settings({"home": str(home)}))


@pytest.fixture(scope="session")
def postgres_cluster():
    """A real PostgreSQL server for this test session (stopped and removed at its end). Fails, never
    skips, when the server binaries are missing: the Postgres tests are part of the suite. Its folder is
    not under pytest's tmp root, which the `postgres` user (the server's, when tests run as root) cannot enter."""
    import shutil
    import tempfile

    from postgres_cluster import PostgresMissing, start_cluster

    folder = Path(tempfile.mkdtemp(prefix="ftagent-postgres-"))
    try:
        cluster = start_cluster(folder)
    except PostgresMissing as missing:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(str(missing))
    yield cluster
    cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres_cluster, request) -> str:
    """The URL of a fresh, empty database on the session's cluster, one per test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return postgres_cluster.create_database(name)


@pytest.fixture(scope="session")
def shared_embedder():
    """The embedded MiniLM, loaded once for the tests that run whole jobs."""
    from tools.llm.embeddings import Embedder

    return Embedder()


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    """A local HTTP server replaying the recorded API payloads (arXiv, PubMed, Wikipedia, web pages)."""
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
def scripted(request) -> Iterator[tuple[ScriptedChat, str]]:
    """A scripted OpenAI-compatible chat model on loopback and its base URL; parametrise it (indirect)
    with the script (tests/helpers/scripted_chat.py)."""
    yield from serve(ScriptedChat(request.param))


@pytest.fixture
def judge(request) -> Iterator[tuple[JudgeServer, str]]:
    """A scripted LLM judge on loopback and its base URL; parametrise it (indirect) with behaviours."""
    yield from running_judge(getattr(request, "param", None))
