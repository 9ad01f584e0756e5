"""Exact resume: a training process killed with SIGKILL after its first checkpoint, resumed in a new
process, ends with the same per-step losses as an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

RUNNER = """
import json, sys, time
from tools.training.backends import train_lora
from tools.training.config import TrainingConfig

model, work, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
records = [{"messages": [{"role": "user", "content": f"Which code protects qubit group {i}?"},
                         {"role": "assistant", "content": f"Group {i} uses a surface code of distance {i % 5 + 3}."}]}
           for i in range(28)]
config = TrainingConfig(base_model_path=model, output_dir=work + "/adapter", checkpoint_dir=work + "/checkpoints",
                        precision="fp32", batch_size=4, max_steps=12, checkpoint_every=4, threads=1,
                        lora_dropout=0.1, early_stopping_patience=100, seed=3)
result = train_lora(config, records[:24], records[24:], on_step=lambda metrics: time.sleep(pause))
with open(work + "/result.json", "w") as handle:
    json.dump(result.to_dict(), handle)
"""


def start(model: Path, work: Path, pause: float) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(model), str(work), str(pause)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_checkpoint(process: subprocess.Popen, folder: Path, timeout: float = 240) -> None:  # a loaded CI
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.exists() and any(folder.glob("step-*/state.pt")):
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before its first checkpoint: {process.stderr.read()[-1500:]}")
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def finish(process: subprocess.Popen, work: Path) -> dict:
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return json.loads((work / "result.json").read_text())


def test_killed_run_resumes_to_the_same_losses(tiny_model_dir, tmp_path) -> None:
    uninterrupted = start(tiny_model_dir, tmp_path / "straight", pause=0.0)
    victim_dir = tmp_path / "killed"
    victim = start(tiny_model_dir, victim_dir, pause=0.1)  # slow steps so the kill lands mid-run
    wait_for_checkpoint(victim, victim_dir / "checkpoints")
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not (victim_dir / "result.json").exists()

    resumed = finish(start(tiny_model_dir, victim_dir, pause=0.0), victim_dir)
    straight = finish(uninterrupted, tmp_path / "straight")

    assert resumed["resumed_from_step"] >= 4 and resumed["steps"] == straight["steps"] == 12
    assert len(resumed["loss_history"]) == len(straight["loss_history"]) == 12
    for step, (a, b) in enumerate(zip(resumed["loss_history"], straight["loss_history"]), start=1):
        assert abs(a - b) <= 1e-4 * abs(b), f"step {step}: resumed {a} vs uninterrupted {b}"
    for a, b in zip(resumed["val_history"], straight["val_history"], strict=True):
        assert abs(a - b) <= 1e-4 * abs(b)


class _RunsAShellCommand:
    """What an attacker plants: unpickling this calls os.system (torch.load with weights_only=False)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_planted_pickle_in_a_checkpoint_is_refused_and_says_how_to_go_on(tiny_model_dir, tmp_path) -> None:
    import pytest
    import torch

    from tools.training.backends import train_lora
    from tools.training.config import CheckpointRefused, TrainingConfig

    records = [{"messages": [{"role": "user", "content": f"Which code protects group {i}?"},
                             {"role": "assistant", "content": f"Group {i} uses distance {i % 5 + 3}."}]}
               for i in range(10)]
    config = TrainingConfig(base_model_path=str(tiny_model_dir), output_dir=str(tmp_path / "adapter"),
                            checkpoint_dir=str(tmp_path / "checkpoints"), precision="fp32", batch_size=4,
                            max_steps=4, checkpoint_every=2, threads=1)
    assert train_lora(config, records[:8], records[8:]).steps == 4
    newest = tmp_path / "checkpoints" / "step-0000004"
    state = torch.load(newest / "state.pt", weights_only=True)  # the real file loads without unpickling code
    marker, proof = tmp_path / "ran", tmp_path / "would-have-run"
    torch.save({**state, "progress": _RunsAShellCommand(f"touch {marker}")}, newest / "state.pt")
    with pytest.raises(CheckpointRefused) as refused:
        train_lora(config, records[:8], records[8:])
    assert not marker.exists()
    message = str(refused.value)
    assert "posix.system" in message and f"delete the folder {newest}" in message and "weights_only" not in message
    # the plant is a real exploit: the old loading (weights_only=False) runs it
    torch.save({**state, "progress": _RunsAShellCommand(f"touch {proof}")}, tmp_path / "exploit.pt")
    torch.load(tmp_path / "exploit.pt", weights_only=False)
    assert proof.exists()
    # doing what the message says: the run goes on from the checkpoint before
    shutil.rmtree(newest)
    resumed = train_lora(config, records[:8], records[8:])
    assert (resumed.resumed_from_step, resumed.steps) == (2, 4) and not marker.exists()
