"""The LoRA recipe on the tiny model: backend choice, memory plan, data checks, anomaly rollback, metrics."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tools.hardware import ModelShape, plan_memory
from tools.training.anomalies import AnomalyGuard, TrainingAnomaly
from tools.training.backends import choose_backend, train_lora
from tools.training.checkpointing import Progress
from tools.training.config import TrainingConfig, TrainingError


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def dataset(count: int) -> list[dict]:
    return [chat(f"What is code number {i}?",
                 f"Code {i} protects {i % 5 + 1} logical qubits with distance {i % 7 + 3}.")
            for i in range(count)]


def config_for(model: Path, tmp_path: Path, **overrides) -> TrainingConfig:
    values = {"base_model_path": str(model), "output_dir": str(tmp_path / "adapter"),
                  "checkpoint_dir": str(tmp_path / "checkpoints"), "metrics_path": str(tmp_path / "metrics.jsonl"),
                  "precision": "fp32", "batch_size": 4, "max_steps": 8, "checkpoint_every": 4, "threads": 1}
    return TrainingConfig(**(values | overrides))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, message: str, data: dict) -> None:
        self.events.append((message, data))

    def named(self, message: str) -> list[dict]:
        return [data for name, data in self.events if name == message]


# -- backend choice ---------------------------------------------------------------------------------
def _raises(error: Exception):
    def importer(name: str):
        raise error
    return importer


@pytest.mark.parametrize(("requested", "cuda", "importer", "expected", "reason_part"), [
    ("auto", False, _raises(AssertionError("must not import")), "peft", "no CUDA GPU"),
    ("peft", True, _raises(AssertionError("must not import")), "peft", "explicitly"),
    ("auto", True, _raises(NotImplementedError("Unsloth: no NVIDIA GPU found")), "peft", "no NVIDIA GPU found"),
    ("auto", True, _raises(ImportError("No module named 'unsloth'")), "peft", "not installed"),
    ("auto", True, lambda name: object(), "unsloth", "imports"),
])
def test_backend_choice_says_why(requested, cuda, importer, expected, reason_part) -> None:
    choice = choose_backend(requested, cuda=cuda, importer=importer)
    assert choice.name == expected
    assert reason_part in choice.reason


def test_unsloth_requested_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(TrainingError, match="unsloth backend cannot run here: no CUDA GPU"):
        choose_backend("unsloth", cuda=False)


# -- memory plan ------------------------------------------------------------------------------------
SMOL = ModelShape(hidden=576, intermediate=1536, layers=30, heads=9, vocab=49152, parameters=135_000_000)


def test_memory_plan_keeps_the_whole_batch_when_it_fits() -> None:
    plan = plan_memory(SMOL, 256, 8, available=64 * 2**30)
    assert (plan.micro_batch, plan.gradient_accumulation, plan.gradient_checkpointing) == (8, 1, False)


def test_memory_plan_accumulates_then_checkpoints_as_memory_shrinks() -> None:
    tight = plan_memory(SMOL, 512, 8, available=4 * 2**30)
    assert tight.micro_batch * tight.gradient_accumulation >= 8 and tight.gradient_accumulation > 1
    assert not tight.gradient_checkpointing
    tighter = plan_memory(SMOL, 512, 8, available=2 * 2**30)
    assert tighter.gradient_checkpointing and tighter.fits
    hopeless = plan_memory(SMOL, 512, 8, available=2**28)
    assert not hopeless.fits


# -- data and model checks (before any training) ---------------------------------------------------
@pytest.mark.parametrize("count", [0, 1])
def test_too_few_examples_fail_before_training(tiny_model_dir, tmp_path, count) -> None:
    with pytest.raises(TrainingError, match="at least 2 training examples"):
        train_lora(config_for(tiny_model_dir, tmp_path), dataset(count), [])
    assert not (tmp_path / "checkpoints").exists()


def test_target_modules_that_do_not_exist(tiny_model_dir, tmp_path) -> None:
    with pytest.raises(TrainingError, match=r"target modules \['query_key_value'\] do not exist"):
        train_lora(config_for(tiny_model_dir, tmp_path, target_modules=["q_proj", "query_key_value"]),
                   dataset(4), [])


def test_a_model_that_is_not_a_causal_lm(tiny_model_dir, tmp_path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path / "t5"
    T5ForConditionalGeneration(T5Config(vocab_size=800, d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                        d_kv=8)).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    with pytest.raises(TrainingError, match="is not a causal language model"):
        train_lora(config_for(folder, tmp_path), dataset(4), [])


def test_qlora_needs_cuda(tiny_model_dir, tmp_path) -> None:
    with pytest.raises(TrainingError, match="QLoRA needs a CUDA GPU"):
        train_lora(config_for(tiny_model_dir, tmp_path, qlora=True), dataset(4), [])


# -- a full run -------------------------------------------------------------------------------------
def test_run_truncates_long_examples_and_writes_metrics_and_plot(tiny_model_dir, tmp_path) -> None:
    long_answer = " ".join(f"word{i}" for i in range(60))
    train = dataset(10) + [chat("Tell me everything.", long_answer) for _ in range(2)]
    events = Recorder()
    result = train_lora(config_for(tiny_model_dir, tmp_path, max_seq_len=96, gradient_accumulation=2),
                        train, dataset(3), on_event=events)
    assert result.truncated_examples == 2
    assert events.named("examples truncated")[0]["count"] == 2
    assert result.steps == 8 and len(result.loss_history) == 8
    assert (result.micro_batch, result.gradient_accumulation) == (2, 2)
    assert "peft, not Unsloth, because no CUDA GPU" in events.named("training backend")[0]["why"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(row["rss_mb"] > 50 for row in rows)
    assert Path(result.plot_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (Path(result.adapter_dir) / "adapter_config.json").exists()


def test_nan_loss_rolls_back_with_a_lower_lr_and_finishes(tiny_model_dir, tmp_path) -> None:
    events = Recorder()
    result = train_lora(config_for(tiny_model_dir, tmp_path, max_steps=10, inject_nan_at_step=7),
                        dataset(12), dataset(2), on_event=events)
    rollbacks = events.named("rolled back")
    # 3 steps per epoch: the newest checkpoint before step 7 is the epoch end at step 6
    assert len(rollbacks) == 1 and rollbacks[0]["to_step"] == 6 and rollbacks[0]["lr_scale"] == 0.5
    assert "loss became nan at step 7" in rollbacks[0]["reason"]
    assert result.rollbacks == 1 and result.steps == 10 and len(result.loss_history) == 10
    assert all(math.isfinite(loss) for loss in result.loss_history)  # no NaN kept


def test_anomalies_beyond_the_cap_stop_training_with_the_reason(tiny_model_dir, tmp_path) -> None:
    events = Recorder()
    with pytest.raises(TrainingError, match="loss became nan at step 3; gave up after 0 rollbacks"):
        train_lora(config_for(tiny_model_dir, tmp_path, inject_nan_at_step=3, max_rollbacks=0),
                   dataset(12), [], on_event=events)
    assert events.named("training failed")


def test_loss_spike_and_exploding_gradients_are_anomalies(tmp_path) -> None:
    guard = AnomalyGuard(config_for(tmp_path, tmp_path))
    settled = Progress(loss_history=[2.0] * 10, grad_ema=0.5)
    guard.check(11, 5.9, 0.6, settled)  # under 3x the recent steps' highest loss: fine
    with pytest.raises(TrainingAnomaly, match=r"loss spiked to 6.500 at step 11 \(> 3 x 2.000, the highest of"):
        guard.check(11, 6.5, 0.6, settled)
    with pytest.raises(TrainingAnomaly, match="gradient norm exploded"):
        guard.check(11, 2.0, 6.0, settled)
    guard.check(3, 50.0, 0.6, Progress(loss_history=[2.0] * 2, grad_ema=0.5))  # warm-up
    old_high = Progress(loss_history=[9.0] + [2.0] * 20, grad_ema=0.5)  # 21 steps ago: out of the window
    with pytest.raises(TrainingAnomaly, match="loss spiked"):
        guard.check(22, 6.5, 0.6, old_high)


def test_batches_that_differ_in_what_they_hold_are_no_spike(tmp_path) -> None:
    """The first 14 step losses of bench/bench_trainer.py's corpus on SmolLM2-135M (bf16, a 2-core AMX Xeon),
    then its 15th: 3.3x their moving average, which made the run roll back three times and give up; it is
    under 3x their highest, and a divergence to 11 (a uniform guess over SmolLM2's vocabulary) still is one."""
    guard = AnomalyGuard(config_for(tmp_path, tmp_path))
    losses = [0.5463, 0.5909, 0.9974, 2.8613, 0.2749, 1.7045, 3.4567, 0.2, 0.867, 3.0382, 0.8902, 2.4484, 3.093,
              0.1537]
    progress = Progress()
    for step, loss in enumerate([*losses, 4.460], start=1):  # as the training loop feeds it
        if step == 15:
            with pytest.raises(TrainingAnomaly, match="loss spiked to 11.000"):
                guard.check(step, 11.0, 0.8, progress)
        guard.check(step, loss, 0.8, progress)
        progress.loss_history.append(loss)
        guard.update_grad_average(progress, 0.8)


def test_a_rollback_to_the_start_starts_from_an_empty_history() -> None:
    """The initial state is restored by reading the same snapshot each time: a Progress read from it is a
    copy, so the steps of one attempt are not in the next (they were: the third attempt of the run above
    counted the first two's 28 steps as settled history and called its 4th step a spike)."""
    from dataclasses import asdict

    snapshot = asdict(Progress())
    first = Progress.from_dict(snapshot)
    first.loss_history += [0.5, 2.9]
    first.val_history.append(1.0)
    again = Progress.from_dict(snapshot)
    assert again.loss_history == [] and again.val_history == []


def test_bf16_precision_trains_evaluates_and_reports_in_bf16(tiny_model_dir, tmp_path) -> None:
    """precision=bf16 really computes in bf16 (losses differ slightly from fp32's from the same seed), the
    result and the setup event say so, and the evaluation of the adapter in bf16 stays close to fp32's."""
    from tools.evaluation.scoring import compare_with_base

    results, setups = {}, {}
    for precision in ("fp32", "bf16"):
        (tmp_path / precision).mkdir()
        events = Recorder()
        results[precision] = train_lora(config_for(tiny_model_dir, tmp_path / precision, precision=precision,
                                                   max_steps=3), dataset(8), dataset(2), on_event=events)
        setups[precision] = events.named("training setup")[0]
    assert [results[p].precision for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    assert (setups["bf16"]["bf16"], setups["bf16"]["precision"], setups["fp32"]["bf16"]) == (True, "bf16", False)
    fp32_loss, bf16_loss = results["fp32"].loss_history, results["bf16"].loss_history
    assert fp32_loss != bf16_loss and bf16_loss == pytest.approx(fp32_loss, rel=0.05)
    nll = {p: compare_with_base(str(tiny_model_dir), results["bf16"].adapter_dir, dataset(4), [], generate_limit=0,
                                precision=p).tuned.answer_nll for p in ("fp32", "bf16")}
    assert nll["fp32"] != nll["bf16"] and nll["bf16"] == pytest.approx(nll["fp32"], rel=0.05)
