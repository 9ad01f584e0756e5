"""`ftagent push MODEL --repo ID`: huggingface_hub uploads a registered version's folder to a real local HTTP
server that speaks the Hub API's create-repo, preupload and commit calls (HF_ENDPOINT pointing at it; every
file answered as a regular upload, so the LFS/Xet path of large files is not exercised). The exact files
(the folder's own files, not its subfolders, hidden or linked files) arrive byte for byte; offline, without
a token, with a wrong token, an unreachable Hub or a bad repo id it refuses in one line, before uploading."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_server import HubRepos, hub_app
from live_server import live_server
from safetensors.torch import save_file

from agent.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, main
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import now_iso

REPO = Path(__file__).resolve().parents[2]
NAME = "ft-smollm2-135m-instruct-soil-v1-20260101"
EXPECTED = ["README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
            "tokenizer_config.json"]
TOKEN = "hf_test_token_123"


def registered_version(home: Path) -> Path:
    """A registered version whose folder is Hub-shaped, with a merged export, a temporary file and a link
    beside its own files."""
    folder = home / "models" / NAME
    (folder / "merged").mkdir(parents=True)
    save_file({"base_model.model.lm_head.lora_A.weight": torch.arange(12.0).reshape(3, 4)},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path":
                                                            "HuggingFaceTB/SmolLM2-135M-Instruct", "r": 8}))
    (folder / "README.md").write_text("---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nlibrary_name: peft\n"
                                      "---\n\n# soil\n")
    (folder / "tokenizer.json").write_text('{"model": {}}')
    (folder / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    (folder / "merged" / "config.json").write_text("{}")
    (folder / ".README.md.partial").write_text("half a card")
    (folder / "elsewhere.txt").symlink_to("/etc/hostname")
    ModelRegistry(home / "ftagent.sqlite").register(ModelVersion(
        name=NAME, family="ft-smollm2-135m-instruct-soil", version=1, base_model="SmolLM2-135M-Instruct",
        base_model_path=str(home / "base"), subject="soil", status="staging", gates_passed=True,
        adapter_path=str(folder), merged_path=str(folder / "merged"), card_path=str(folder / "README.md"),
        dataset_hash="abc", job_id="job-1", round=1, created_at=now_iso(), sources=[], config={},
        metrics={"base": {}, "tuned": {}}))
    return folder


def push(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`ftagent push` in its own process (huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE at import)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT")}
    environ |= {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                "FTAGENT_HOME": str(home), "HF_HOME": str(home / "hf-home"), "COLUMNS": "400", **env}
    return subprocess.run([sys.executable, "-m", "agent.cli", "push", NAME, *args], env=environ, cwd=str(REPO),
                          capture_output=True, text=True, timeout=300, check=False)


def test_push_uploads_the_version_folder_byte_for_byte(tmp_path):
    home = tmp_path / "home"
    folder = registered_version(home)
    hub = HubRepos(token=TOKEN)
    with live_server(hub_app(hub)) as url:
        done = push(home, "--repo", "alice/soil-smollm2", "--private", HF_ENDPOINT=url, HF_TOKEN=TOKEN)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"pushed {NAME} to {url}/alice/soil-smollm2 (5 files: {', '.join(EXPECTED)}" in done.stdout
        assert sorted(hub.repos["alice/soil-smollm2"]) == EXPECTED and hub.private["alice/soil-smollm2"]
        for name in EXPECTED:
            assert hub.repos["alice/soil-smollm2"][name] == (folder / name).read_bytes(), name
        assert hub.commits[-1]["summary"] == f"Upload {NAME} (ftagent)"

        again = push(home, "--repo", "alice/soil-smollm2", "--message", "v1 again", HF_ENDPOINT=url, HF_TOKEN=TOKEN)
        assert again.returncode == 0, again.stdout + again.stderr  # the repo exists: a new commit
        assert hub.commits[-1]["summary"] == "v1 again" and len(hub.commits) == 2

        wrong = push(home, "--repo", "alice/other", HF_ENDPOINT=url, HF_TOKEN="hf_wrong")
        assert wrong.returncode == EXIT_ENVIRONMENT, wrong.stdout + wrong.stderr
        assert "refused the push (HTTP 401) (is the token valid" in wrong.stdout and "Traceback" not in wrong.stderr
        assert "alice/other" not in hub.repos


def test_no_token_or_an_unreachable_hub_is_said_in_one_line(tmp_path):
    home = tmp_path / "home"
    registered_version(home)
    hub = HubRepos(token=TOKEN)
    with live_server(hub_app(hub)) as url:
        missing = push(home, "--repo", "alice/soil", HF_ENDPOINT=url)
        assert missing.returncode == EXIT_ENVIRONMENT and "no Hugging Face token: set HF_TOKEN" in missing.stdout
        assert hub.calls == []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    away = push(home, "--repo", "alice/soil", HF_ENDPOINT=closed, HF_TOKEN=TOKEN)
    assert away.returncode == EXIT_ENVIRONMENT, away.stdout + away.stderr
    assert f"cannot reach the Hugging Face Hub at {closed}" in away.stdout and "may be offline" in away.stdout


@pytest.mark.parametrize(("env", "code", "said"), [
    ({"HF_HUB_OFFLINE": "1"}, EXIT_ENVIRONMENT, "HF_HUB_OFFLINE is set"),
    ({"FTAGENT_NETWORK": "false"}, EXIT_ENVIRONMENT, "network setting is off"),
])
def test_offline_is_refused_before_anything_is_sent(home, capsys, monkeypatch, env, code, said):
    registered_version(home)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["push", NAME, "--repo", "alice/soil"]) == code
    assert said in " ".join(capsys.readouterr().out.split())


def test_a_bad_repo_id_or_model_is_refused(home, capsys):
    registered_version(home)
    assert main(["push", NAME, "--repo", "soil"]) == EXIT_BAD_INPUT
    assert "must be a Hub model repo id OWNER/NAME" in " ".join(capsys.readouterr().out.split())
    assert main(["push", "no-such-model", "--repo", "alice/soil"]) != 0
