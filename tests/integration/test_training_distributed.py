"""Training in several processes (torchrun, gloo on this CPU): two ranks train the same adapter as
one process on the same batches (DDP and FSDP), a rank killed with SIGKILL stops the run with an
error that names it, and the next run resumes from rank 0's checkpoint on every rank and finishes
with the losses of an uninterrupted run. Precision is pinned to fp32 (bf16 rounding would differ
with the shapes)."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tools.training.backends import choose_backend, train_lora
from tools.training.config import TrainingConfig, TrainingError
from tools.training.launch import LAUNCH_FOLDER, choose_strategy, resolve_nproc


def _records(count: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Which code protects qubit group {i}?"},
                {
                    "role": "assistant",
                    "content": f"Group {i} uses a surface code of distance "
                    f"{i % 5 + 3}." + " It is planar." * (i % 4),
                },
            ]
        }
        for i in range(count)
    ]


def _config(model: Path, work: Path, nproc: int, **overrides) -> TrainingConfig:
    # 25 examples in batches of 6: the fifth step has one example, so one rank trains on nothing
    # then;
    # micro-batches of at most 100 padded tokens: gradient accumulation within each rank's share
    settings = {
        "precision": "fp32",
        "batch_size": 6,
        "max_steps": 8,
        "checkpoint_every": 4,
        "threads": 1,
        "lora_dropout": 0.0,
        "learning_rate": 5e-3,
        "early_stopping_patience": 100,
        "seed": 3,
        "micro_batch_tokens": 100,
    } | overrides
    return TrainingConfig(
        base_model_path=str(model),
        output_dir=str(work / "adapter"),
        checkpoint_dir=str(work / "checkpoints"),
        nproc=nproc,
        **settings,
    )


def _train(model: Path, work: Path, nproc: int, **overrides):
    events: list[tuple[str, dict]] = []
    result = train_lora(
        _config(model, work, nproc, **overrides),
        _records(25),
        _records(30)[25:],
        on_event=lambda message, data: events.append((message, data)),
    )
    return result, events


def _adapter(work: Path) -> dict[str, torch.Tensor]:
    return load_file(str(work / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("one-process")
    result, _ = _train(tiny_model_dir, work, 1)
    return result, _adapter(work)


def _assert_same_training(reference, adapter_ref, result, adapter) -> None:
    assert result.steps == reference.steps == 8
    assert (
        reference.loss_history[-1] < reference.loss_history[0] - 0.1
    )  # it learns: the comparison means something
    for step, (a, b) in enumerate(
        zip(reference.loss_history, result.loss_history, strict=True), start=1
    ):
        assert abs(a - b) <= 1e-5 * a, f"step {step}: one process {a} vs two {b}"
    assert abs(reference.val_loss - result.val_loss) <= 1e-5 * reference.val_loss
    assert adapter.keys() == adapter_ref.keys() and len(adapter) > 0
    moved = max(float(t.abs().max()) for name, t in adapter_ref.items() if "lora_B" in name)
    assert moved > 1e-2  # lora_B starts at zero: training moved it
    for name, tensor in adapter_ref.items():
        assert torch.allclose(adapter[name], tensor, rtol=1e-4, atol=1e-6), name


def test_two_ddp_processes_train_the_same_adapter_as_one(
    tiny_model_dir, tmp_path, one_process
) -> None:
    reference, adapter_ref = one_process
    result, events = _train(tiny_model_dir, tmp_path, 2)
    _assert_same_training(reference, adapter_ref, result, _adapter(tmp_path))
    assert (result.processes, result.distributed, result.distributed_backend) == (2, "ddp", "gloo")
    assert (reference.processes, reference.distributed) == (1, "single")
    by_message = {message: data for message, data in events}
    launched = by_message["distributed training"]
    assert (
        launched["processes"],
        launched["strategy"],
        launched["backend"],
        launched["device"],
    ) == (2, "ddp", "gloo", "cpu") and "torch.distributed.run" in launched["command"]
    ranks = by_message["distributed setup"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and len({r["pid"] for r in ranks}) == 2
    assert all(r["device"] == "cpu" and r["pid"] != os.getpid() for r in ranks)  # real processes
    assert by_message["memory plan"]["examples_per_process"] == 3  # half of each batch of 6
    assert "2 processes" in by_message["training backend"]["why"]
    # rank 0 alone wrote the checkpoints, one folder per checkpoint step (5: validation, 8: the end)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert saved == ["step-0000005", "step-0000008"]
    assert (
        len(
            torch.load(tmp_path / "checkpoints" / saved[-1] / "state.pt", weights_only=True)[
                "rank_torch_rng"
            ]
        )
        == 2
    )


def test_two_fsdp_processes_train_the_same_adapter_as_one(
    tiny_model_dir, tmp_path, one_process
) -> None:
    reference, adapter_ref = one_process
    result, events = _train(tiny_model_dir, tmp_path, 2, distributed="fsdp")
    _assert_same_training(reference, adapter_ref, result, _adapter(tmp_path))
    assert (result.processes, result.distributed) == (2, "fsdp")
    assert dict(events)["distributed setup"]["strategy"] == "fsdp"


def _rank_pids(launch: Path) -> list[int]:
    progress = launch / "progress.jsonl"
    if not progress.exists():
        return []
    for line in progress.read_text().splitlines():
        record = json.loads(line) if line.endswith("}") else {}
        if record.get("message") == "distributed setup":
            return [rank["pid"] for rank in record["data"]["ranks"]]
    return []


def test_a_killed_rank_stops_the_run_and_the_next_run_resumes_on_every_rank(
    tiny_model_dir, tmp_path
) -> None:
    steps = {"max_steps": 40, "checkpoint_every": 4}
    work = tmp_path / "killed"
    launch = work / "checkpoints" / LAUNCH_FOLDER
    with ThreadPoolExecutor(2) as pool:
        straight = pool.submit(_train, tiny_model_dir, tmp_path / "straight", 1, **steps)
        victim = pool.submit(_train, tiny_model_dir, work, 2, **steps)
        deadline = time.monotonic() + 240
        while not list((work / "checkpoints").glob("step-*/state.pt")):
            assert not victim.done(), (
                f"the run ended before its first checkpoint: {victim.exception()}"
            )
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        os.kill(_rank_pids(launch)[1], signal.SIGKILL)
        with pytest.raises(TrainingError) as stopped:
            victim.result(timeout=120)
        reference, _ = straight.result(timeout=240)
    message = str(stopped.value)
    assert (
        "rank 1 of 2 was killed by SIGKILL" in message
        and "resuming continues from there" in message
    )
    kept = max(
        int(p.parent.name.split("-")[1]) for p in (work / "checkpoints").glob("step-*/state.pt")
    )
    assert 4 <= kept < 40 and not (work / "adapter").exists()

    resumed, events = _train(tiny_model_dir, work, 2, **steps)
    assert resumed.resumed_from_step == kept and resumed.steps == 40 and resumed.processes == 2
    assert ("resumed from checkpoint", {"step": kept}) in events
    for step, (a, b) in enumerate(
        zip(reference.loss_history, resumed.loss_history, strict=True), start=1
    ):
        assert abs(a - b) <= 1e-5 * a, f"step {step}: uninterrupted {a} vs killed and resumed {b}"
    assert (work / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize(
    ("requested", "gpus", "cpus", "expected"),
    [
        ("auto", 0, 2, 1),
        ("auto", 1, 16, 1),
        ("auto", 4, 16, 4),
        (2, 0, 2, 2),
        (3, 0, 2, 3),
        (2, 4, 16, 2),
    ],
)
def test_process_count(requested, gpus, cpus, expected) -> None:
    processes, why = resolve_nproc(requested, gpus, cpus)
    assert processes == expected and why
    if requested == 3:
        assert "more processes than the 2 CPU cores" in why


def test_more_processes_than_gpus_is_refused_with_what_to_set() -> None:
    with pytest.raises(
        TrainingError, match=r"training.nproc=4 asks for more processes than the 2 visible GPU"
    ):
        resolve_nproc(4, 2, 16)


GIB = 2**30


@pytest.mark.parametrize(
    ("requested", "processes", "device", "qlora", "weights", "memory", "expected"),
    [
        ("auto", 1, "cuda", False, 100 * GIB, 80 * GIB, "single"),
        ("auto", 2, "cpu", False, 100 * GIB, 0, "ddp"),
        ("auto", 2, "cuda", False, 10 * GIB, 80 * GIB, "ddp"),
        ("auto", 8, "cuda", False, 60 * GIB, 80 * GIB, "fsdp"),  # a 30B model in bf16 on 80 GB GPUs
        (
            "auto",
            8,
            "cuda",
            True,
            60 * GIB,
            80 * GIB,
            "ddp",
        ),  # QLoRA's 4-bit weights are not sharded
        ("fsdp", 2, "cpu", False, 1, 0, "fsdp"),
        ("ddp", 8, "cuda", False, 60 * GIB, 80 * GIB, "ddp"),
    ],
)
def test_strategy(requested, processes, device, qlora, weights, memory, expected) -> None:
    strategy, why = choose_strategy(requested, processes, device, qlora, weights, memory)
    assert strategy == expected and why
    if expected == "fsdp" and requested == "auto":
        assert "60.0 GiB" in why and "80.0 GiB" in why


def test_fsdp_with_qlora_and_unsloth_with_several_processes_are_refused() -> None:
    with pytest.raises(TrainingError, match="fsdp with QLoRA is not supported"):
        choose_strategy("fsdp", 2, "cuda", True, 1, GIB)
    with pytest.raises(TrainingError, match="unsloth backend trains in one process, not 2"):
        choose_backend("unsloth", cuda=True, importer=lambda name: None, processes=2)
    choice = choose_backend("auto", cuda=True, importer=lambda name: None, processes=2)
    assert choice.name == "peft" and "2 processes" in choice.reason


TORCHRUN_SUMMARY = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
tools.training.launch FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-01_12:35:30
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 6386)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 6386
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-01_12:35:30
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : {code} (pid: 6387)
  error_file: <N/A>
============================================================"""


@pytest.mark.parametrize(
    ("code", "blamed", "how"),
    [
        ("-9", "rank 1 of 2 was killed by SIGKILL", "no checkpoint was written yet"),
        ("3", "rank 1 of 2 exited with code 3", "no checkpoint was written yet"),
    ],
)
def test_the_failure_names_the_rank_and_how_it_ended(tmp_path, code, blamed, how) -> None:
    from tools.training.launch import ProcessPlan, failure_error

    config = _config(tmp_path / "model", tmp_path, 2)
    launch = tmp_path / "checkpoints" / LAUNCH_FOLDER
    launch.mkdir(parents=True)
    (launch / "torchrun.log").write_text(TORCHRUN_SUMMARY.replace("{code}", code))
    message = str(failure_error(launch, ProcessPlan(2, "ddp", "gloo", "cpu", ""), config))
    assert blamed in message and how in message.lower() and "torchrun.log" in message
    (launch / "error-rank1.json").write_text(
        json.dumps(
            {"rank": 1, "type": "TrainingError", "message": "need at least 2 training examples"}
        )
    )
    again = failure_error(launch, ProcessPlan(2, "ddp", "gloo", "cpu", ""), config)
    assert str(again) == ("need at least 2 training examples" if code == "3" else message)


def test_optimizer_states_convert_between_position_and_name_keys(tiny_model_dir) -> None:
    """FSDP checkpoints key the optimizer state by parameter name, one-process and DDP ones by
    position: each loads the other's (a job resumed with another strategy)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tools.training.parallel import optimizer_state_by_index, optimizer_state_by_name

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
        LoraConfig(r=2, target_modules="all-linear"),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    optimizer.step()
    by_position = optimizer.state_dict()
    by_name = optimizer_state_by_name(by_position, model)
    first = "model." + next(n for n, p in model.named_parameters() if p.requires_grad)
    assert by_name["param_groups"][0]["params"][0] == first and first in by_name["state"]
    assert optimizer_state_by_name(by_name, model) is by_name
    back = optimizer_state_by_index(by_name, model)
    assert back["param_groups"] == by_position["param_groups"]
    assert back["state"].keys() == by_position["state"].keys()
    optimizer.load_state_dict(back)  # what a one-process resume of an FSDP checkpoint does
