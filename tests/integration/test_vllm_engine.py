"""`ftagent serve --engine vllm`: the vLLM command built from the registry, and the adapters kept in
step with it over vLLM's runtime LoRA endpoints. vLLM itself needs CUDA and is not installed here:
the
server side is tests/helpers/vllm_standin.py, a scripted process that parses the flags we pass and answers
those endpoints as vLLM does. What is NOT run here: vLLM loading the base model and the adapters and
generating with them (bench/gpu_check.py does that on a CUDA machine)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import httpx
import pytest
from tiny_model import random_adapter

from agent.cli import EXIT_ENVIRONMENT, main
from agent.service import JobService
from agent.settings import resolve_settings
from tools.serving.server import ServingError
from tools.serving.vllm_engine import (
    RUNTIME_LORA_ENV,
    VllmServer,
    lora_rank_for,
    plan_for_registry,
    vllm_command,
)
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import now_iso

STANDIN = Path(__file__).parents[1] / "helpers" / "vllm_standin.py"


@pytest.fixture(scope="module")
def adapters(tiny_model_dir: Path, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("vllm-adapters")
    return {
        "a": str(random_adapter(tiny_model_dir, folder / "a", 0, rank=4)),
        "b": str(random_adapter(tiny_model_dir, folder / "b", 1, rank=12)),
        "c": str(random_adapter(tiny_model_dir, folder / "c", 2, rank=4)),
    }


def _version(
    number: int, status: str, adapter: str, base: Path, family: str = "ft-tiny-qec"
) -> ModelVersion:
    return ModelVersion(
        name=f"{family}-v{number}",
        family=family,
        version=number,
        base_model="tiny",
        base_model_path=str(base),
        subject="quantum error correction",
        status=status,
        gates_passed=True,
        adapter_path=adapter,
        merged_path=None,
        card_path="",
        dataset_hash="h",
        job_id=f"job-{number}",
        round=1,
        created_at=now_iso(),
        sources=[],
        config={},
        metrics={},
    )


@pytest.fixture()
def registry(tmp_path, tiny_model_dir, adapters) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "home" / "ftagent.sqlite")
    registry.register(_version(1, "production", adapters["a"], tiny_model_dir))
    registry.register(_version(2, "staging", adapters["b"], tiny_model_dir))
    registry.register(_version(3, "rejected", adapters["c"], tiny_model_dir))
    return registry


def test_the_command_serves_the_base_with_each_version_and_the_family_as_lora_modules(
    registry, tiny_model_dir, adapters
):
    plan = plan_for_registry(registry, port=8123, extra_args=["--gpu-memory-utilization", "0.8"])
    command = vllm_command(plan)
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == str(tiny_model_dir)
    assert command[command.index("--served-model-name") + 1] == tiny_model_dir.name
    assert command[command.index("--port") + 1] == "8123" and "--enable-lora" in command
    modules = command[
        command.index("--lora-modules") + 1 : command.index("--gpu-memory-utilization")
    ]
    assert modules == [
        f"ft-tiny-qec-v1={adapters['a']}",
        f"ft-tiny-qec-v2={adapters['b']}",
        f"ft-tiny-qec={adapters['a']}",
    ]  # the family name is its production version; v3 was rejected
    assert (
        command[command.index("--max-lora-rank") + 1] == "16"
    )  # rank 12 needs vLLM's next size, 16
    assert command[-2:] == ["--gpu-memory-utilization", "0.8"]


def test_lora_rank_and_base_model_limits_are_said_plainly(registry, tmp_path, adapters):
    assert lora_rank_for([adapters["a"]]) == 8 and lora_rank_for([]) == 8
    other_base = tmp_path / "other-base"
    registry.register(_version(1, "staging", adapters["c"], other_base, family="ft-other-qec"))
    with pytest.raises(ServingError, match="one server serves one base model"):
        plan_for_registry(registry, ["ft-tiny-qec-v1", "ft-other-qec-v1"])


def test_serve_engine_vllm_prints_its_command_and_says_when_vllm_is_missing(
    registry, tmp_path, capsys
):
    home = tmp_path / "home"
    assert (
        main(
            [
                "--home",
                str(home),
                "serve",
                "--engine",
                "vllm",
                "--print-command",
                "--port",
                "8124",
                "--vllm-args",
                "--max-model-len 2048",
            ]
        )
        == 0
    )
    printed = shlex.split(capsys.readouterr().out.strip())
    assert printed[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and printed[-2:] == [
        "--max-model-len",
        "2048",
    ]
    assert main(["--home", str(home), "serve", "--engine", "vllm"]) == EXIT_ENVIRONMENT
    assert "vLLM is not installed" in capsys.readouterr().out


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_server_starts_with_the_modules_and_follows_registrations_promotions_and_deletions(
    registry, tiny_model_dir, adapters, tmp_path, monkeypatch
):
    from postgres_cluster import free_port

    log = tmp_path / "standin.jsonl"
    monkeypatch.setenv("STANDIN_LOG", str(log))
    service = JobService(resolve_settings({"home": str(tmp_path / "home")}, environ={}))
    server = service.vllm_server(
        port=free_port(), reload_interval_s=0, program=(sys.executable, str(STANDIN))
    )
    assert isinstance(server, VllmServer)
    try:
        server.start(startup_timeout_s=60)
        start = _calls(log)[0]
        assert (
            start["runtime_updates"] is True and start["max_lora_rank"] == 16
        )  # VLLM_ALLOW_RUNTIME_LORA_UPDATING
        assert server.client.served() == [
            tiny_model_dir.name,
            "ft-tiny-qec-v1",
            "ft-tiny-qec-v2",
            "ft-tiny-qec",
        ]
        assert server.sync.sync() == {"loaded": [], "unloaded": [], "failed": []}  # already in step

        registry.register(_version(4, "staging", adapters["c"], tiny_model_dir))  # a new version
        assert server.sync.sync() == {"loaded": ["ft-tiny-qec-v4"], "unloaded": [], "failed": []}
        registry.set_status("ft-tiny-qec-v2", "production")  # v1 archived; the family moves to v2
        assert server.sync.sync() == {
            "loaded": ["ft-tiny-qec"],
            "unloaded": ["ft-tiny-qec", "ft-tiny-qec-v1"],
            "failed": [],
        }
        registry.delete("ft-tiny-qec-v4")
        assert server.sync.sync()["unloaded"] == ["ft-tiny-qec-v4"]
        assert server.client.served() == [tiny_model_dir.name, "ft-tiny-qec-v2", "ft-tiny-qec"]
        family = [c for c in _calls(log) if c.get("lora_name") == "ft-tiny-qec"]
        assert [(c["call"], c.get("lora_path")) for c in family] == [
            ("unload_lora_adapter", None),
            ("load_lora_adapter", adapters["b"]),
        ]
    finally:
        server.close()
    assert server.process.poll() is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.client.base_url}/health", timeout=2)


def test_an_adapter_vllm_refuses_is_reported_and_tried_again_while_the_rest_keep_serving(
    registry, tiny_model_dir, tmp_path, monkeypatch
):
    from postgres_cluster import free_port

    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "standin.jsonl"))
    server = VllmServer(
        registry, port=free_port(), reload_interval_s=0, program=(sys.executable, str(STANDIN))
    )
    broken = tmp_path / "not-an-adapter"
    broken.mkdir()
    try:
        server.start(startup_timeout_s=60)
        registry.register(_version(5, "staging", str(broken), tiny_model_dir))
        assert server.sync.sync()["failed"] == ["ft-tiny-qec-v5"]
        assert server.sync.sync()["failed"] == ["ft-tiny-qec-v5"]  # tried again at the next poll
        assert "ft-tiny-qec-v2" in server.client.served()
        reply = httpx.post(
            f"{server.client.base_url}/v1/load_lora_adapter",
            json={"lora_name": "ft-tiny-qec-v2", "lora_path": "x"},
        )
        assert reply.status_code == 400  # the stand-in refuses a second load, as vLLM does
    finally:
        server.close()
    assert RUNTIME_LORA_ENV == "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
