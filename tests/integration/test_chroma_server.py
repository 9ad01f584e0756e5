"""The chunk store on a chroma server: `chroma run` (from the chromadb package) on a free loopback
port, reached through chromadb.HttpClient when `chroma_url` is set."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from postgres_cluster import free_port

from agent.settings import resolve_settings
from tools.data.chunking import Chunk
from tools.stores.vector_store import ChunkStore, stored_vectors


@pytest.fixture()
def chroma_server(tmp_path):
    """A real chroma server persisting in a temp folder; yields its URL."""
    binary = Path(sys.executable).parent / "chroma"
    command = str(binary) if binary.exists() else shutil.which("chroma")
    if command is None:
        pytest.fail("the `chroma` command (from the chromadb package) is not installed")
    port = free_port()
    server = subprocess.Popen(
        [
            command,
            "run",
            "--path",
            str(tmp_path / "server-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                said = server.communicate()[0] if server.poll() is not None else "(still starting)"
                pytest.fail(f"chroma run did not start: {said}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def test_chunks_and_embeddings_round_trip_through_a_chroma_server(chroma_server, tmp_path):
    settings = resolve_settings(
        {"home": str(tmp_path / "home"), "chroma_url": chroma_server}, environ={}
    )
    assert settings.chroma == chroma_server
    chunks = [
        Chunk("c1", "doc-a", "The surface code protects logical qubits.", "Surface code", 0),
        Chunk("c2", "doc-a", "Stabilizers are measured each round.", "Surface code", 1),
        Chunk("c3", "doc-b", "Shor's code uses nine physical qubits.", "Shor code", 0),
    ]
    vectors = np.eye(3, 8, dtype=np.float32) + 0.1
    ChunkStore(settings.chroma, "job-1").add(
        chunks, vectors, [{"relevance": 0.9}, {"relevance": 0.8}, {}]
    )
    reader = ChunkStore(
        settings.chroma, "job-1"
    )  # another client (another worker) sees the same chunks
    assert reader.count() == 3
    assert [(chunk, meta["doc_id"]) for chunk, meta in reader.all()] == [
        (c, c.doc_id) for c in chunks
    ]
    assert reader.texts(["c3", "missing"]) == {"c3": chunks[2].text}
    assert reader.query(vectors[1], k=1)[0][0] == "c2"
    np.testing.assert_allclose(
        stored_vectors(settings.chroma, "job-1", ["c3", "c1"]), vectors[[2, 0]], rtol=1e-6
    )
    assert not (tmp_path / "home" / "chroma").exists()  # nothing went to the embedded store
    reader.clear()
    assert ChunkStore(settings.chroma, "job-1").count() == 0


def test_a_chroma_url_that_is_not_http_is_refused(tmp_path):
    with pytest.raises(ValueError, match="chroma_url must be an http:// or https:// URL"):
        resolve_settings({"home": str(tmp_path), "chroma_url": "/srv/chroma"}, environ={})
