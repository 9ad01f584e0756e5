"""The OpenAI-compatible server over a real socket, called by the official openai client and by
langchain-openai: a tiny base model with two random LoRA adapters."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tiny_model import random_adapter

from tools.serving.from_registry import app_for_registry
from tools.serving.server import ABSplit, create_app, serve_in_background
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import now_iso

ADAPTERS = ("ft-tiny-alpha-v1", "ft-tiny-beta-v1")


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("adapters")
    adapters = {name: str(random_adapter(tiny_model_dir, folder / name, seed))
                for seed, name in enumerate(ADAPTERS)}
    log = folder / "assignments.jsonl"
    app = create_app(str(tiny_model_dir), adapters, base_name="tiny-base", default_max_tokens=16,
                     ab_splits={"ft-tiny-ab": {ADAPTERS[0]: 0.5, ADAPTERS[1]: 0.5}},
                     aliases={"ft-tiny-alpha": ADAPTERS[0]}, assignment_log=log)
    with serve_in_background(app) as base_url:
        yield {"url": base_url, "log": log, "adapters": adapters}


@pytest.fixture(scope="module")
def client(served: dict):
    from openai import OpenAI

    return OpenAI(base_url=served["url"], api_key="x", max_retries=0, timeout=30)


QUESTION = [{"role": "user", "content": "What is a stabilizer code?"}]


def _greedy(client, model: str) -> str:
    reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=12)
    return reply.choices[0].message.content


def test_models_lists_base_adapters_alias_and_split(client) -> None:
    names = [m.id for m in client.models.list().data]
    assert names == ["tiny-base", *ADAPTERS, "ft-tiny-alpha", "ft-tiny-ab"]


def test_health(served: dict) -> None:
    health = httpx.get(served["url"].removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["context_length"] == 1024


def test_plain_completion_with_openai_client(client) -> None:
    reply = client.chat.completions.create(model=ADAPTERS[0], messages=QUESTION, temperature=0, max_tokens=8)
    assert reply.model == ADAPTERS[0]
    assert reply.choices[0].message.role == "assistant"
    assert 1 <= reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens > 5
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_greedy_is_repeatable_and_adapters_change_the_answer(client) -> None:
    answers = {name: _greedy(client, name) for name in ("tiny-base", *ADAPTERS)}
    assert _greedy(client, ADAPTERS[0]) == answers[ADAPTERS[0]]
    assert len(set(answers.values())) == 3, answers  # base and both adapters differ: set_adapter works
    assert _greedy(client, "tiny-base") == answers["tiny-base"]  # disabling adapters restores the base
    assert _greedy(client, "ft-tiny-alpha") == answers[ADAPTERS[0]]  # the alias answers as its version


def test_sampling_with_seed_is_repeatable(client) -> None:
    def sample(seed: int) -> str:
        return client.chat.completions.create(model="tiny-base", messages=QUESTION, temperature=1.5,
                                              top_p=0.95, max_tokens=12, seed=seed).choices[0].message.content
    assert sample(1) == sample(1)
    assert len({sample(s) for s in range(4)}) > 1


def test_stream_with_openai_client_matches_plain_answer(client) -> None:
    stream = client.chat.completions.create(model=ADAPTERS[1], messages=QUESTION, temperature=0, max_tokens=12,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == _greedy(client, ADAPTERS[1])
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens >= 1


def test_raw_stream_ends_with_done(served: dict) -> None:
    body = {"model": "tiny-base", "messages": QUESTION, "stream": True, "max_tokens": 4, "temperature": 0}
    with httpx.stream("POST", served["url"] + "/chat/completions", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0].removeprefix("data: "))["object"] == "chat.completion.chunk"


def test_langchain_chat_openai_plain_and_stream(served: dict, client) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=served["url"], api_key="x", model=ADAPTERS[0], temperature=0, max_tokens=12,
                      max_retries=0)
    answer = chat.invoke("What is a stabilizer code?")
    assert answer.content == _greedy(client, ADAPTERS[0])
    assert answer.response_metadata["model_name"] == ADAPTERS[0]
    streamed = "".join(chunk.content for chunk in chat.stream("What is a stabilizer code?"))
    assert streamed == answer.content


def test_unknown_model_is_404_listing_available_models(client) -> None:
    from openai import NotFoundError

    with pytest.raises(NotFoundError) as caught:
        client.chat.completions.create(model="ft-nope", messages=QUESTION)
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert set(error["available"]) >= {"tiny-base", *ADAPTERS}
    assert "ft-tiny-alpha-v1" in error["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "tiny-base", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"model": "tiny-base", "messages": [{"role": "user"}]}, "messages.0.content"),
    ({"model": "tiny-base", "messages": []}, "messages"),
    ({"model": "tiny-base", "messages": QUESTION, "temperature": 7}, "temperature"),
    ({"messages": QUESTION}, "model"),
])
def test_malformed_request_is_422_naming_the_field(served: dict, body: dict, field: str) -> None:
    response = httpx.post(served["url"] + "/chat/completions", json=body, timeout=30)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"]


def test_prompt_longer_than_context_is_400(client) -> None:
    from openai import BadRequestError

    long_text = " ".join(f"word{i}" for i in range(3000))
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(model="tiny-base", messages=[{"role": "user", "content": long_text}])
    assert caught.value.body["code"] == "context_length_exceeded"
    assert "context of 1024 tokens" in caught.value.body["message"]


def test_ab_split_is_deterministic_by_user_and_logged(client, served: dict) -> None:
    def arm(user: str) -> str:
        return client.chat.completions.create(model="ft-tiny-ab", messages=QUESTION, max_tokens=1,
                                              user=user).model
    users = [f"user-{i}" for i in range(12)]
    first = {u: arm(u) for u in users}
    assert {u: arm(u) for u in users[:4]} == {u: first[u] for u in users[:4]}
    assert set(first.values()) == set(ADAPTERS)  # both arms get traffic
    split = ABSplit("ft-tiny-ab", ((ADAPTERS[0], 0.5), (ADAPTERS[1], 0.5)))
    assert all(split.choose(u) == first[u] for u in users)
    by_header = client.chat.completions.create(model="ft-tiny-ab", messages=QUESTION, max_tokens=1,
                                               user="user-0", extra_headers={"X-Request-ID": "req-42"}).model
    assert by_header == split.choose("req-42")  # the header wins over the user field
    logged = [json.loads(line) for line in served["log"].read_text().splitlines()]
    assert {"split": "ft-tiny-ab", "request_id": "user-3", "version": first["user-3"]}.items() <= logged[3].items()
    assert len(logged) == 17


def test_ab_split_weights_are_respected() -> None:
    split = ABSplit("s", (("a", 0.9), ("b", 0.1)))
    share = sum(split.choose(str(i)) == "a" for i in range(2000)) / 2000
    assert 0.86 < share < 0.94


def _version(family: str, number: int, status: str, adapter: str, base_dir: Path) -> ModelVersion:
    return ModelVersion(
        name=f"{family}-v{number}", family=family, version=number, base_model="tiny",
        base_model_path=str(base_dir), subject="quantum error correction", status=status,
        gates_passed=status != "rejected", adapter_path=adapter, merged_path=None, card_path="",
        dataset_hash="h", job_id=f"job-{number}", round=1, created_at=now_iso(), sources=[], config={}, metrics={})


def test_registry_app_serves_production_and_staging_with_the_family_as_alias(
        served: dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    from openai import OpenAI

    registry = ModelRegistry(tmp_path / "ftagent.sqlite")
    alpha, beta = (served["adapters"][name] for name in ADAPTERS)
    for number, status, adapter in ((1, "production", alpha), (2, "staging", beta), (3, "rejected", alpha)):
        registry.register(_version("ft-tiny-qec", number, status, adapter, tiny_model_dir))
    with serve_in_background(app_for_registry(registry, tmp_path)) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == ["tiny", "ft-tiny-qec-v1", "ft-tiny-qec-v2",
                                                             "ft-tiny-qec"]
        def reply(messages: list[dict]):
            return client.chat.completions.create(model="ft-tiny-qec", messages=messages, max_tokens=1)
        plain = reply(QUESTION)
        own_system = reply([{"role": "system", "content": "Hi."}, *QUESTION])
    assert plain.model == "ft-tiny-qec-v1"  # the family name answers with its production version
    # the version's training-time system prompt is added only when the request brings none
    assert plain.usage.prompt_tokens > own_system.usage.prompt_tokens + 10


# -- following the registry while serving ---------------------------------------------------------
def _served_names(client) -> list[str]:
    return [m.id for m in client.models.list().data]


def _eventually(check, seconds: float = 20.0):
    """Poll until `check()` is truthy (the follower polls the registry every 0.1 s in these tests)."""
    import time

    deadline = time.monotonic() + seconds
    while not (outcome := check()):
        assert time.monotonic() < deadline, "the server did not follow the registry in time"
        time.sleep(0.05)
    return outcome


def test_a_running_server_loads_new_versions_moves_aliases_and_drops_withdrawn_ones(
        served: dict, client, tiny_model_dir: Path, tmp_path: Path, caplog) -> None:
    from openai import NotFoundError, OpenAI

    registry = ModelRegistry(tmp_path / "ftagent.sqlite")
    alpha, beta = (served["adapters"][name] for name in ADAPTERS)
    registry.register(_version("ft-tiny-qec", 1, "production", alpha, tiny_model_dir))
    with serve_in_background(app_for_registry(registry, tmp_path, reload_interval_s=0.1)) as url:
        live = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)
        assert _served_names(live) == ["tiny", "ft-tiny-qec-v1", "ft-tiny-qec"]
        registry.register(_version("ft-tiny-qec", 2, "staging", beta, tiny_model_dir))
        registry.register(_version("ft-elsewhere", 1, "staging", alpha, tmp_path / "another-base"))
        _eventually(lambda: "ft-tiny-qec-v2" in _served_names(live))
        system = [{"role": "system", "content": "Hi."}]  # the same prompt on both servers
        v2 = live.chat.completions.create(model="ft-tiny-qec-v2", messages=system + QUESTION, temperature=0,
                                          max_tokens=12)
        reference = client.chat.completions.create(model=ADAPTERS[1], messages=system + QUESTION, temperature=0,
                                                   max_tokens=12)
        assert v2.choices[0].message.content == reference.choices[0].message.content  # its adapter is loaded
        assert "ft-elsewhere-v1" not in _served_names(live)
        assert any("ft-elsewhere-v1" in r.message and "base model" in r.message for r in caplog.records)

        registry.set_status("ft-tiny-qec-v2", "production")  # archives v1
        _eventually(lambda: _served_names(live) == ["tiny", "ft-tiny-qec-v2", "ft-tiny-qec"])
        assert live.chat.completions.create(model="ft-tiny-qec", messages=QUESTION, max_tokens=1).model == \
               "ft-tiny-qec-v2"
        with pytest.raises(NotFoundError) as withdrawn:
            live.chat.completions.create(model="ft-tiny-qec-v1", messages=QUESTION, max_tokens=1)
        assert withdrawn.value.body["available"] == ["tiny", "ft-tiny-qec-v2", "ft-tiny-qec"]

        registry.delete("ft-tiny-qec-v2", force=True)
        _eventually(lambda: _served_names(live) == ["tiny"])


def test_admin_reload_applies_changes_at_once_and_splits_keep_their_remaining_arms(
        served: dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    from tools.serving.server import ChatCompletionRequest, ServingError

    registry = ModelRegistry(tmp_path / "ftagent.sqlite")
    alpha, beta = (served["adapters"][name] for name in ADAPTERS)
    for number, adapter in ((1, alpha), (2, beta)):
        registry.register(_version("ft-tiny-qec", number, "staging", adapter, tiny_model_dir))
    split = {"ft-tiny-qec": {"ft-tiny-qec-v1": 1.0, "ft-tiny-qec-v2": 1.0}}
    app = app_for_registry(registry, tmp_path, ab_splits=split, reload_interval_s=0)
    server = app.state.server
    with serve_in_background(app) as url:
        admin = url.removesuffix("/v1") + "/admin/reload"
        assert server.kinds() == {"tiny": "base", "ft-tiny-qec-v1": "adapter", "ft-tiny-qec-v2": "adapter",
                                  "ft-tiny-qec": "ab_split"}
        registry.register(_version("ft-tiny-qec", 3, "staging", alpha, tiny_model_dir))
        assert "ft-tiny-qec-v3" not in server.available()  # no polling: nothing changes by itself
        report = httpx.post(admin, timeout=30).json()
        assert report["loaded"] == ["ft-tiny-qec-v3"] and report["unloaded"] == []
        waiting = server.prepare(ChatCompletionRequest(model="ft-tiny-qec-v2", messages=QUESTION), None)
        registry.set_status("ft-tiny-qec-v2", "archived")
        report = httpx.post(admin, timeout=30).json()
        assert report["unloaded"] == ["ft-tiny-qec-v2"] and "ft-tiny-qec" in report["skipped"]
        assert server.catalog.splits["ft-tiny-qec"].arms == (("ft-tiny-qec-v1", 1.0),)
        with pytest.raises(ServingError) as caught:  # a request resolved before the unload, run after it
            server.generate(waiting)
        assert caught.value.status == 404 and "stopped being served" in caught.value.message
        registry.register(_version("ft-tiny-qec", 4, "staging", str(tmp_path / "no-adapter"), tiny_model_dir))
        report = httpx.post(admin, timeout=30).json()
        assert "no LoRA adapter" in report["skipped"]["ft-tiny-qec-v4"]  # skipped with its reason
        assert report["models"] == ["tiny", "ft-tiny-qec-v1", "ft-tiny-qec-v3", "ft-tiny-qec"]
    unfollowed = httpx.post(served["url"].removesuffix("/v1") + "/admin/reload", timeout=30)
    assert unfollowed.status_code == 404 and unfollowed.json()["error"]["code"] == "reload_unavailable"


def test_cli_serve_ab_split_from_the_command_line_overrides_the_config(
        served: dict, tiny_model_dir: Path, home: Path, monkeypatch) -> None:
    from openai import OpenAI

    from agent.cli import main
    from agent.service import JobService

    registry = ModelRegistry(home / "ftagent.sqlite")
    alpha, beta = (served["adapters"][name] for name in ADAPTERS)
    registry.register(_version("ft-tiny-qec", 1, "production", alpha, tiny_model_dir))
    registry.register(_version("ft-tiny-qec", 2, "staging", beta, tiny_model_dir))
    (home / "config.yaml").write_text(json.dumps({"serving_ab_splits": {
        "ft-tiny-qec": {"ft-tiny-qec-v1": 1, "ft-tiny-qec-v2": 1},
        "qec-vs-base": {"tiny": 1, "ft-tiny-qec-v1": 1}}}))  # JSON is YAML
    seen: dict = {}

    def serve_briefly(self, host: str = "", port: int = 0, names: tuple = (), app=None) -> None:
        """The real server on a free port for a few requests, instead of serving until interrupted."""
        with serve_in_background(app) as url:
            client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)
            seen["kinds"] = app.state.server.kinds()
            seen["arms"] = [client.chat.completions.create(model="ft-tiny-qec", messages=QUESTION, max_tokens=1,
                                                           user=f"user-{i}").model for i in range(40)]

    monkeypatch.setattr(JobService, "serve", serve_briefly)
    assert main(["serve", "--ab", "ft-tiny-qec=ft-tiny-qec-v1:1,ft-tiny-qec-v2:3", "--reload-interval", "0"]) == 0
    assert seen["kinds"] == {"tiny": "base", "ft-tiny-qec-v1": "adapter", "ft-tiny-qec-v2": "adapter",
                             "ft-tiny-qec": "ab_split", "qec-vs-base": "ab_split"}  # the split wins over the alias
    split = ABSplit("ft-tiny-qec", (("ft-tiny-qec-v1", 1.0), ("ft-tiny-qec-v2", 3.0)))
    assert seen["arms"] == [split.choose(f"user-{i}") for i in range(40)]
    assert seen["arms"].count("ft-tiny-qec-v2") > seen["arms"].count("ft-tiny-qec-v1")
    logged = [json.loads(line) for line in (home / "serving-assignments.jsonl").read_text().splitlines()]
    assert [record["version"] for record in logged] == seen["arms"]
