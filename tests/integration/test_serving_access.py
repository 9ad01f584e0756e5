"""Who may call the model server (real socket, tiny model): the API key on /v1 and /admin, the Host
check against DNS rebinding on a loopback-bound server, cross-site POSTs refused, staging only by name."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tiny_model import random_adapter

from tools.serving.from_registry import app_for_registry
from tools.serving.server import serve_in_background
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import now_iso

KEY = "serving-key-for-tests"
HTTP = httpx.Client(timeout=60)  # generous: the shared test machine can be slow
QUESTION = [{"role": "user", "content": "What is a stabilizer code?"}]


def _version(number: int, status: str, adapter: str, base_dir: Path) -> ModelVersion:
    return ModelVersion(
        name=f"ft-tiny-qec-v{number}", family="ft-tiny-qec", version=number, base_model="tiny",
        base_model_path=str(base_dir), subject="quantum error correction", status=status,
        gates_passed=True, adapter_path=adapter, merged_path=None, card_path="", dataset_hash="h",
        job_id=f"job-{number}", round=1, created_at=now_iso(), sources=[], config={}, metrics={})


@pytest.fixture(scope="module")
def registry(tiny_model_dir: Path, tmp_path_factory) -> tuple[ModelRegistry, Path]:
    folder = tmp_path_factory.mktemp("served")
    registry = ModelRegistry(folder / "ftagent.sqlite")
    registry.register(_version(1, "production", str(random_adapter(tiny_model_dir, folder / "a", 0)), tiny_model_dir))
    registry.register(_version(2, "staging", str(random_adapter(tiny_model_dir, folder / "b", 1)), tiny_model_dir))
    return registry, folder


@pytest.fixture(scope="module")
def keyed(registry):
    with serve_in_background(app_for_registry(*registry, reload_interval_s=0, api_key=KEY,
                                              default_max_tokens=4)) as url:
        yield url.removesuffix("/v1")


def test_the_api_key_guards_v1_and_admin_but_not_health(keyed):
    auth = {"Authorization": f"Bearer {KEY}"}
    for method, path in (("GET", "/v1/models"), ("POST", "/admin/reload"), ("POST", "/v1/chat/completions")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            reply = HTTP.request(method, f"{keyed}{path}", headers=headers, json={})
            assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key", (path, headers)
    assert HTTP.get(f"{keyed}/v1/models", headers=auth).status_code == 200
    assert HTTP.post(f"{keyed}/admin/reload", headers=auth).status_code == 200
    assert HTTP.get(f"{keyed}/health").status_code == 200
    from openai import OpenAI

    client = OpenAI(base_url=f"{keyed}/v1", api_key=KEY, max_retries=0, timeout=30)
    answer = client.chat.completions.create(model="ft-tiny-qec", messages=QUESTION, max_tokens=2, temperature=0)
    assert answer.model == "ft-tiny-qec-v1"  # the family name is production, never staging
    staging = client.chat.completions.create(model="ft-tiny-qec-v2", messages=QUESTION, max_tokens=2)
    assert staging.model == "ft-tiny-qec-v2"  # staging answers when asked for by its own name


def test_a_rebound_host_or_a_cross_site_post_is_refused_on_loopback(keyed, registry):
    auth = {"Authorization": f"Bearer {KEY}"}
    rebound = HTTP.get(f"{keyed}/v1/models", headers={**auth, "Host": "attacker.example:8000"})
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "bad_host"
    assert HTTP.get(f"{keyed}/health", headers={"Host": "attacker.example"}).status_code == 403
    assert HTTP.get(f"{keyed}/v1/models", headers={**auth, "Host": "localhost:1234"}).status_code == 200
    with serve_in_background(app_for_registry(*registry, reload_interval_s=0)) as url:  # no key at all
        base = url.removesuffix("/v1")
        page = HTTP.post(f"{base}/admin/reload", headers={"Origin": "https://attacker.example"})
        assert page.status_code == 403 and page.json()["error"]["code"] == "bad_origin"
        assert HTTP.post(f"{base}/admin/reload").status_code == 200  # a local script, no Origin
        same_site = HTTP.post(f"{base}/admin/reload", headers={"Origin": base})
        assert same_site.status_code == 200
