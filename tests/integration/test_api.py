"""The HTTP jobs API: auth, clear errors, submit/status/cancel, and a real server process killed mid-job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tiny_job import SUBJECT_SENTENCE, tiny_job_options

from agent.api import PREFIX, create_app
from agent.service import JobService
from agent.settings import resolve_settings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(service) -> TestClient:
    return TestClient(create_app(service, TOKEN, poll_seconds=0.05))


def test_every_api_route_needs_the_bearer_token_but_docs_are_open(client):
    assert client.get(f"{PREFIX}/jobs").status_code == 401
    wrong = client.get(f"{PREFIX}/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "bearer token" in wrong.json()["error"]
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert client.get(f"{PREFIX}/models", headers=AUTH).json() == []
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert f"{PREFIX}/jobs/{{job_id}}/events" in paths and f"{PREFIX}/feedback" in paths


def test_a_malformed_body_gets_422_naming_the_field(client):
    missing = client.post(f"{PREFIX}/jobs", json={"options": {}}, headers=AUTH)
    assert missing.status_code == 422 and "'request'" in missing.json()["error"]
    wrong_type = client.post(f"{PREFIX}/jobs", json={"request": "x", "options": [1]}, headers=AUTH)
    assert wrong_type.status_code == 422 and "'options'" in wrong_type.json()["error"]
    extra = client.post(f"{PREFIX}/feedback", json={"model": "m", "question": "q", "answer": "a", "rating": 5},
                        headers=AUTH)
    assert extra.status_code == 422 and "'rating'" in extra.json()["error"]


def test_an_unreadable_sentence_gets_400_with_a_question_back_not_a_trace(client):
    reply = client.post(f"{PREFIX}/jobs", json={"request": "fine-tune SmolLM2 please"}, headers=AUTH)
    assert reply.status_code == 400
    body = reply.json()
    assert body["question"].startswith("What should") and "Traceback" not in reply.text
    assert body["understood"]["model"]
    bad_option = client.post(f"{PREFIX}/jobs", json={"request": SUBJECT_SENTENCE,
                                                     "options": {"training": {"epochs": -1}}}, headers=AUTH)
    assert bad_option.status_code == 400 and "training.epochs" in bad_option.json()["error"]


def test_submit_status_events_and_owner_only_cancel(client, service):
    from tools.stores.api_tokens import TokenStore

    alice = {"Authorization": f"Bearer {TokenStore(service.settings.database).add('alice')}"}
    bob = {"Authorization": f"Bearer {TokenStore(service.settings.database).add('bob')}"}
    service.settings.documents_root.mkdir()
    created = client.post(f"{PREFIX}/jobs", json={"request": SUBJECT_SENTENCE, "options": {"docs_path": "."}},
                          headers=alice)
    assert created.status_code == 201
    job = created.json()
    assert job["status"] == "queued" and job["owner"] == "alice"
    assert client.get(job["links"]["self"], headers=alice).json()["job_id"] == job["job_id"]
    assert client.get(f"{PREFIX}/jobs/nope", headers=AUTH).status_code == 404
    assert client.post(job["links"]["cancel"], headers={**bob, "X-Ftagent-User": "alice"}).status_code == 404
    cancelled = client.post(job["links"]["cancel"], headers=alice)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    stream = client.get(job["links"]["events"], headers=AUTH)  # the job has ended, so the stream ends
    kinds = [line.split(": ", 1)[1] for line in stream.text.splitlines() if line.startswith("event:")]
    assert kinds == ["cancelled", "end"]
    assert client.get(f"{PREFIX}/models/nope", headers=AUTH).status_code == 404


# --- a real server process, killed with SIGKILL in the middle of a job, then restarted ----------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FTAGENT_HOME": str(home), "FTAGENT_API_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "FTAGENT_DOCUMENT_ROOTS": str(REPO / "tools" / "eval_sets")}
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "api", "--port", str(port)], cwd=REPO, env=env,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the API did not start: {log.read_text()[-2000:]}")


def _wait_for_training_step(base: str, job_id: str, minimum: int) -> int:
    """Follow the SSE stream until the trainer reports step >= minimum; returns the step seen."""
    with httpx.stream("GET", f"{base}/jobs/{job_id}/events", headers=AUTH, timeout=180) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and '"kind": "step"' in line:
                step = json.loads(line[5:])["data"]["step"]
                if step >= minimum:
                    return step
    raise AssertionError("the stream ended before training started")


def test_killed_api_process_resumes_the_job_after_restart(home, tiny_model_dir, tmp_path):
    port, log = _free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}{PREFIX}"
    server = _start_server(home, port, log)
    try:
        options = tiny_job_options(tiny_model_dir, REPO / "tools" / "eval_sets" / "demo_corpus")
        created = httpx.post(f"{base}/jobs", json={"request": SUBJECT_SENTENCE, "options": options},
                             headers=AUTH, timeout=30)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        _wait_for_training_step(base, job_id, minimum=2)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        assert JobService(resolve_settings({"home": str(home)})).jobs.get(job_id).status == "interrupted"

        server = _start_server(home, port, log)
        deadline, status = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            status = httpx.get(f"{base}/jobs/{job_id}", headers=AUTH, timeout=10).json()
            if status["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1)
        assert status["status"] == "succeeded", (status, log.read_text()[-3000:])
        events = [json.loads(line) for line in (home / "jobs" / job_id / "events.jsonl").read_text().splitlines()]
        assert any(e["message"].startswith("resuming job") for e in events)
        _check_model_routes(base, status["model_name"])
    finally:
        server.kill()
        server.wait(10)


def _check_model_routes(base: str, model: str) -> None:
    models = httpx.get(f"{base}/models", headers=AUTH, timeout=10).json()
    assert [m["name"] for m in models] == [model]
    detail = httpx.get(f"{base}/models/{model}", headers=AUTH, timeout=10).json()
    assert detail["subject"] == "quantum error correction" and detail["card"]
    evaluation = httpx.post(f"{base}/evaluations", json={"model": model, "dataset_path": "x.jsonl"}, headers=AUTH)
    assert evaluation.status_code == 422 and "no such file" in evaluation.json()["error"]  # home/x.jsonl
    feedback = httpx.post(f"{base}/feedback", headers=AUTH, json={
        "model": model, "question": "What is a logical qubit?", "answer": "?", "rating": -1,
        "correction": "A qubit encoded across many physical qubits."})
    assert feedback.status_code == 201 and feedback.json()["feedback_id"] == 1
