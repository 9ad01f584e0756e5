"""The routes the web console needs, over a real app (TestClient): the page itself with its security
headers, the chat door with its question back, a job's artefacts before they exist, and the model actions
(ask next to the base, promote, roll back, delete) on versions with real tiny adapters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tiny_job import tiny_job_options
from tiny_model import random_adapter

from agent.api import PREFIX, create_app
from agent.console import WEB
from agent.service import JobService
from tools.stores.model_registry import ModelVersion
from tools.stores.sql_table import now_iso

TOKEN = "console-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(service) -> TestClient:
    return TestClient(create_app(service, TOKEN, poll_seconds=0.05))


def test_the_page_and_its_assets_are_served_with_a_same_origin_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/console/app.js"' in page.text and "http" not in page.text.split("<body>")[0]
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    script = client.get("/console/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "Authorization" in script.text and "sessionStorage" in script.text
    assert client.get("/console/app.css").status_code == 200
    assert client.get(f"{PREFIX}/me").status_code == 401  # the page is open, the API is not


def test_no_asset_reaches_for_another_origin():
    """No CDN, no web font, no remote script: the only absolute URL is the SVG namespace name."""
    for asset in ("index.html", "app.js", "app.css"):
        text = (WEB / asset).read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (asset, urls)
        assert "@import" not in text and "@font-face" not in text


def test_chat_asks_back_for_a_missing_subject_then_starts_the_job(client, service):
    from tools.stores.api_tokens import TokenStore

    tokens = TokenStore(service.settings.database)
    headers = {"Authorization": f"Bearer {tokens.add('alice')}"}
    me = client.get(f"{PREFIX}/me", headers={**headers, "X-Ftagent-User": "mallory"})
    assert me.json() == {"user": "alice", "admin": False}  # the token names the user, not the header
    docs = service.settings.documents_root / "marine"
    docs.mkdir(parents=True)
    first = client.post(f"{PREFIX}/chat", json={"message": "fine-tune SmolLM2 please"}, headers=headers).json()
    assert first["awaiting_subject"] and first["reply"].startswith("What should") and first["job_id"] is None
    second = client.post(f"{PREFIX}/chat", headers=headers, json={
        "message": "marine biology", "session_id": first["session_id"],
        "options": {"docs_path": "marine", "max_rounds": 0}}).json()
    assert second["started"] and second["session_id"] == first["session_id"]
    job = client.get(f"{PREFIX}/jobs/{second['job_id']}", headers=AUTH).json()
    assert job["owner"] == "alice" and job["request"].endswith(" on marine biology")
    assert job["options"]["docs_path"] == str(docs.resolve())
    outside = client.post(f"{PREFIX}/chat", headers=headers, json={
        "message": "fine-tune SmolLM2 on marine biology", "options": {"docs_path": "/etc"}}).json()
    assert outside["reply"].startswith("I cannot start that: docs_path must be inside one of the document roots")
    # another user cannot continue alice's conversation: the id starts a new one
    other = client.post(f"{PREFIX}/chat", headers={"Authorization": f"Bearer {tokens.add('bob')}"},
                        json={"message": "how is it going?", "session_id": first["session_id"]}).json()
    assert other["session_id"] != first["session_id"] and other["reply"].startswith("There is no job yet")
    bad = client.post(f"{PREFIX}/chat", headers=headers, json={"message": ""})
    assert bad.status_code == 422 and "'message'" in bad.json()["error"]


def test_a_queued_jobs_artefacts_say_they_are_pending(client, service, tmp_path, tiny_model_dir):
    record = service.submit("fine-tune on quantum error correction", tiny_job_options(tiny_model_dir, tmp_path))
    for what in ("dataset", "evaluation"):
        reply = client.get(f"{PREFIX}/jobs/{record.job_id}/{what}", headers=AUTH)
        assert reply.status_code == 200 and reply.json() == {
            "ready": False, "reason": f"job {record.job_id} has no {what} yet"}
    assert client.get(f"{PREFIX}/jobs/{record.job_id}/rounds", headers=AUTH).json()["rounds"] == []
    unknown = client.get(f"{PREFIX}/jobs/nope/dataset", headers=AUTH)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]


def _register(service: JobService, base: Path, adapter: Path, version: int, passed: bool) -> ModelVersion:
    family = "ft-tiny-quantum-error-correction"
    folder = service.settings.home / "models" / f"{family}-v{version}"
    folder.mkdir(parents=True)
    card = folder / "MODEL_CARD.md"
    card.write_text(f"# {family}-v{version}\n\n| metric | base | tuned |\n|---|---|---|\n| ROUGE-L | 0.1 | 0.2 |\n")
    return service.registry.register(ModelVersion(
        name=f"{family}-v{version}", family=family, version=version, base_model="tiny", base_model_path=str(base),
        subject="quantum error correction", status="staging" if passed else "rejected", gates_passed=passed,
        adapter_path=str(adapter), merged_path=None, card_path=str(card), dataset_hash="x", job_id="job",
        round=1, created_at=now_iso(), sources=[], config={}, metrics={"gates": []}))


def test_model_actions_ask_next_to_base_promote_rollback_delete(client, service, tiny_model_dir, tmp_path):
    adapter = random_adapter(tiny_model_dir, tmp_path / "adapter")
    first = _register(service, tiny_model_dir, adapter, 1, passed=True)
    second = _register(service, tiny_model_dir, adapter, 2, passed=False)
    url = f"{PREFIX}/models"

    answers = client.post(f"{url}/{first.name}/ask", json={"question": "What is a qubit?", "max_new_tokens": 6},
                          headers=AUTH).json()
    assert answers["tuned"] != answers["base"]  # a random adapter visibly changes the answer
    assert client.post(f"{url}/{first.name}/promote", headers=AUTH).json()["status"] == "production"
    refused = client.post(f"{url}/{second.name}/promote", json={"force": False}, headers=AUTH)
    assert refused.status_code == 409 and "gates" in refused.json()["error"]
    forced = client.post(f"{url}/{second.name}/promote", json={"force": True}, headers=AUTH)
    assert forced.json()["status"] == "production"
    assert client.get(f"{url}/{first.name}", headers=AUTH).json()["status"] == "archived"
    rolled = client.post(f"{url}/{second.name}/rollback", headers=AUTH).json()
    assert rolled["restored"]["name"] == first.name and rolled["demoted"]["name"] == second.name

    production = client.delete(f"{url}/{first.name}", headers=AUTH)
    assert production.status_code == 409  # production is not deleted without force
    assert client.delete(f"{url}/{second.name}", headers=AUTH).json()["name"] == second.name
    assert not (service.settings.home / "models" / second.name).exists()
    assert [m["name"] for m in client.get(url, headers=AUTH).json()] == [first.name]
    assert client.post(f"{url}/nope/promote", headers=AUTH).status_code == 404
