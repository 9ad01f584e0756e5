"""Training in several processes with torchrun: how many and how (`plan_processes`), the launch from
the job's process (`train_distributed`), and each rank's entry point (`python -m
tools.training.launch`).

The job's process writes the run (config, data, plan) to `<checkpoint_dir>/.launch/`, starts `python
-m torch.distributed.run --standalone --nproc-per-node N -m tools.training.launch <folder>` as a
subprocess and follows rank 0's progress file there, handing each step and decision to its own
callbacks (events, TensorBoard) as a one-process run would. A rank that fails or is killed stops the
others (torchrun, no restarts); the error says which rank and how, and the checkpoints are kept: the
next run (`ftagent resume`) continues from the newest, on every rank. On a CPU the ranks talk over
gloo, so all of this runs and is tested here; NCCL on CUDA GPUs is the same code, not exercised
here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.training.config import (
    CheckpointRefused,
    StepMetrics,
    TrainingConfig,
    TrainingError,
    TrainingResult,
)
from tools.training.lora import LoraRecipe

LAUNCH_FOLDER = ".launch"  # inside the checkpoint folder: not a step-* checkpoint, kept with them
FSDP_MEMORY_SHARE = (
    0.5  # auto takes FSDP when the weights alone fill more than this share of one GPU
)
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class ProcessPlan:
    processes: int
    strategy: str  # single, ddp or fsdp
    backend: str | None  # gloo or nccl with several processes
    device: str
    why: str


def resolve_nproc(requested: int | str, gpus: int, cpus: int) -> tuple[int, str]:
    """(processes, why) for training.nproc: "auto" is one per visible GPU (1 without a GPU); a
    number is taken as is, but never more processes than visible GPUs on a GPU machine."""
    if requested == "auto":
        if gpus > 1:
            return gpus, f"nproc auto: one process per visible GPU ({gpus})"
        return 1, "nproc auto: one process (" + ("one GPU" if gpus else "no GPU") + ")"
    count = int(requested)
    if gpus and count > gpus:
        raise TrainingError(
            f"training.nproc={count} asks for more processes than the {gpus} visible GPU(s) "
            "(CUDA_VISIBLE_DEVICES): set it to at most that, or to auto"
        )
    if gpus:
        return count, f"nproc {count}: one process per GPU on {count} of {gpus} GPU(s)"
    note = (
        f" (more processes than the {cpus} CPU cores: they will share them)" if count > cpus else ""
    )
    return count, f"nproc {count}: {count} CPU process(es){note}"


def choose_strategy(
    requested: str, processes: int, device: str, qlora: bool, model_bytes: int, device_bytes: int
) -> tuple[str, str]:
    """(single | ddp | fsdp, why). FSDP when asked, or (auto) on GPUs when the weights alone fill
    more than half of one GPU; else DDP. QLoRA's 4-bit weights are not sharded here: QLoRA uses DDP.
    """
    if processes == 1:
        return "single", "one process"
    if requested == "fsdp":
        if qlora:
            raise TrainingError(
                "training.distributed=fsdp with QLoRA is not supported here (4-bit weights "
                "are not sharded): use distributed=ddp, or qlora off"
            )
        return (
            "fsdp",
            "FSDP requested (parameters, gradients and optimizer state sharded over the ranks)",
        )
    if requested == "ddp":
        return "ddp", "DDP requested (each rank holds the whole model)"
    if requested != "auto":
        raise TrainingError(f"unknown training.distributed {requested!r}: use auto, ddp or fsdp")
    too_big = device == "cuda" and device_bytes and model_bytes > FSDP_MEMORY_SHARE * device_bytes
    if too_big and not qlora:
        return "fsdp", (
            f"auto: FSDP, the weights ({model_bytes / 2**30:.1f} GiB) fill more than "
            f"{FSDP_MEMORY_SHARE:.0%} of one GPU ({device_bytes / 2**30:.1f} GiB)"
        )
    return "ddp", "auto: DDP (the model fits one " + (
        "GPU" if device == "cuda" else "process"
    ) + ")"


def weights_bytes(model_path: str) -> int:
    """Size of a model folder's weight files (0 when it is not a folder)."""
    folder = Path(model_path)
    if not folder.is_dir():
        return 0
    return sum(
        p.stat().st_size
        for pattern in ("*.safetensors", "*.bin", "*.gguf")
        for p in folder.glob(pattern)
    )


def plan_processes(config: TrainingConfig) -> ProcessPlan:
    """How many processes train and how, for this machine (a TrainingError for an impossible
    request)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cpus = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    processes, why = resolve_nproc(config.nproc, gpus, cpus)
    device = "cuda" if gpus else "cpu"
    device_bytes = torch.cuda.get_device_properties(0).total_memory if gpus else 0
    strategy, how = choose_strategy(
        config.distributed,
        processes,
        device,
        config.qlora,
        weights_bytes(config.base_model_path),
        device_bytes,
    )
    backend = None if processes == 1 else ("nccl" if device == "cuda" else "gloo")
    return ProcessPlan(processes, strategy, backend, device, f"{why}; {how}")


# -- the job's process ---------------------------------------------------------------------------
def torchrun_command(launch: Path, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "--max-restarts",
        "0",
        "-m",
        "tools.training.launch",
        str(launch),
    ]


def _write_jsonl(path: Path, records: Sequence[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def prepare_launch(
    config: TrainingConfig, train: Sequence[dict], val: Sequence[dict], plan: ProcessPlan
) -> Path:
    """The launch folder with this run's config, data and plan; the last run's outputs removed."""
    launch = Path(config.checkpoint_dir) / LAUNCH_FOLDER
    launch.mkdir(parents=True, exist_ok=True)
    for stale in [
        *launch.glob("error-rank*.json"),
        launch / "result.json",
        launch / "progress.jsonl",
    ]:
        stale.unlink(missing_ok=True)
    (launch / "config.json").write_text(config.model_dump_json(indent=2))
    (launch / "plan.json").write_text(
        json.dumps({**asdict(plan), "launcher_pid": os.getpid()}, indent=2)
    )
    _write_jsonl(launch / "train.jsonl", train)
    _write_jsonl(launch / "val.jsonl", val)
    return launch


def _environment(plan: ProcessPlan, config: TrainingConfig) -> dict[str, str]:
    """The ranks import this same code (its folder first on PYTHONPATH), one thread set per rank."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    threads = config.threads or max(1, (os.cpu_count() or 1) // plan.processes)
    return {
        **os.environ,
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }


class ProgressFollower:
    """Reads rank 0's progress file as it grows and hands each line to the job's callbacks."""

    def __init__(
        self,
        path: Path,
        on_step: Callable[[StepMetrics], None] | None,
        on_event: Callable[[str, dict], None] | None,
    ) -> None:
        self.path, self.offset, self._pending = path, 0, ""
        self.on_step, self.on_event = on_step, on_event

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
            self.offset = handle.tell()
        lines = (self._pending + chunk).split("\n")
        self._pending = lines.pop()  # a line rank 0 has not finished writing
        for line in lines:
            if line.strip():
                self._dispatch(json.loads(line))

    def _dispatch(self, record: dict) -> None:
        if record["kind"] == "step" and self.on_step:
            self.on_step(StepMetrics(**record["metrics"]))
        elif record["kind"] == "event" and self.on_event:
            self.on_event(record["message"], record["data"])


def _stop(process: subprocess.Popen) -> None:
    """Stop torchrun and its ranks: SIGTERM (torchrun passes it on), SIGKILL after a grace time."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def train_distributed(
    config: TrainingConfig,
    train: Sequence[dict],
    val: Sequence[dict],
    plan: ProcessPlan,
    on_step: Callable[[StepMetrics], None] | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    poll_seconds: float = 0.2,
) -> TrainingResult:
    """Train with `plan.processes` torchrun ranks and return rank 0's result. Anything that stops
    this process's wait (a cancel, Ctrl-C) stops the ranks too; finished checkpoints stay."""
    launch = prepare_launch(config, train, val, plan)
    command = torchrun_command(launch, plan.processes)
    if on_event:
        on_event(
            "distributed training",
            {
                **asdict(plan),
                "launcher": "torchrun",
                "command": " ".join(command),
                "launch_folder": str(launch),
            },
        )
    follower = ProgressFollower(launch / "progress.jsonl", on_step, on_event)
    with (launch / "torchrun.log").open("w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_environment(plan, config),
            start_new_session=True,
        )
        try:
            while process.poll() is None:
                follower.poll()
                time.sleep(poll_seconds)
            follower.poll()
        except BaseException:
            _stop(process)
            raise
    if process.returncode != 0:
        raise failure_error(launch, plan, config)
    return TrainingResult(**json.loads((launch / "result.json").read_text()))


def failure_error(launch: Path, plan: ProcessPlan, config: TrainingConfig) -> TrainingError:
    """The error of a failed launch: which rank was killed (the others then fail or are stopped),
    else the failing rank's own TrainingError as it was raised, else which rank ended how; with what
    resuming will do."""
    rank, code = _culprit(_rank_failures((launch / "torchrun.log").read_text(errors="replace")))
    log = f"(log: {launch / 'torchrun.log'})"
    error_file = launch / f"error-rank{rank}.json"
    if code is not None and code >= 0 and error_file.exists():
        error = json.loads(error_file.read_text())
        if error["type"] == "CheckpointRefused":
            return CheckpointRefused(error["message"])
        if error["type"] == "TrainingError":
            return TrainingError(error["message"])
        return TrainingError(
            f"training rank {rank} of {plan.processes} failed: {error['type']}: "
            f"{error['message']}; {_kept(config)} {log}"
        )
    return TrainingError(
        f"training rank {rank} of {plan.processes} {_how(code)}; torchrun stopped the other "
        f"ranks. {_kept(config).capitalize()} {log}"
    )


def _kept(config: TrainingConfig) -> str:
    steps = sorted(
        p.name for p in Path(config.checkpoint_dir).glob("step-*") if (p / "state.pt").exists()
    )
    return (
        f"the checkpoints up to {steps[-1]} are kept, and resuming continues from there on "
        "every rank"
        if steps
        else "no checkpoint was written yet, so resuming starts the training over"
    )


def _rank_failures(log: str) -> list[tuple[str, int]]:
    """(rank, exit code) of each failed rank in torchrun's failure summary, the first observed
    first."""
    found = [
        (rank, int(code))
        for rank, code in re.findall(
            r"rank\s*:\s*(\d+)[^\n]*\n(?:[^\n]*\n)*?\s*exitcode\s*:\s*(-?\d+)", log
        )
    ]
    root = log.rfind("Root Cause")
    if root >= 0:
        first = re.findall(
            r"rank\s*:\s*(\d+)[^\n]*\n(?:[^\n]*\n)*?\s*exitcode\s*:\s*(-?\d+)", log[root:]
        )
        found = [(rank, int(code)) for rank, code in first[:1]] + found
    return found


def _culprit(failures: list[tuple[str, int]]) -> tuple[str, int | None]:
    """The rank to blame: one killed by a signal other than torchrun's SIGTERM, else the first."""
    for rank, code in failures:
        if code < 0 and -code != signal.SIGTERM:
            return rank, code
    return failures[0] if failures else ("?", None)


def _how(code: int | None) -> str:
    if code is None:
        return "failed (see the log)"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# -- each rank -----------------------------------------------------------------------------------
class ProgressWriter:
    """Rank 0's steps and decisions as JSON lines for the job's process; stops the run when the
    process that launched it is gone (killed), so no orphaned training goes on writing checkpoints.
    """

    def __init__(self, path: Path, launcher_pid: int | None) -> None:
        self.path, self.launcher_pid = path, launcher_pid

    def _write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def step(self, metrics: StepMetrics) -> None:
        self._check_launcher()
        self._write({"kind": "step", "metrics": asdict(metrics)})

    def event(self, message: str, data: dict) -> None:
        self._write({"kind": "event", "message": message, "data": data})

    def _check_launcher(self) -> None:
        if not self.launcher_pid:
            return
        try:
            os.kill(self.launcher_pid, 0)
        except ProcessLookupError:
            raise TrainingError(
                f"the process that started this training ({self.launcher_pid}) is gone; "
                "stopping (resuming the job continues from the newest checkpoint)"
            ) from None
        except PermissionError:
            return


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _record_error(launch: Path, rank: int, error: BaseException) -> None:
    payload = {
        "rank": rank,
        "type": type(error).__name__,
        "message": str(error),
        "traceback": traceback.format_exc()[-4000:],
    }
    (launch / f"error-rank{rank}.json").write_text(json.dumps(payload, indent=2))


def run_rank(launch: Path) -> int:
    """One torchrun rank: the recipe with this rank's Parallelism; rank 0 writes the result."""
    from tools.training.parallel import parallelism

    plan = json.loads((launch / "plan.json").read_text())
    parallel = parallelism(plan["strategy"])
    config = TrainingConfig.model_validate_json((launch / "config.json").read_text())
    writer = ProgressWriter(launch / "progress.jsonl", plan.get("launcher_pid"))
    recipe = LoraRecipe(config, writer.step, writer.event, parallel)  # the peft backend: CUDA or CPU
    try:
        recipe.setup(_read_jsonl(launch / "train.jsonl"), _read_jsonl(launch / "val.jsonl"))
        result = recipe.train()
    except Exception as error:  # noqa: BLE001 - recorded for the launcher; the rank exits non-zero
        _record_error(launch, parallel.rank, error)
        return 1
    if parallel.is_main:
        staging = launch / "result.json.partial"
        staging.write_text(json.dumps(result.to_dict()))
        staging.replace(launch / "result.json")
    parallel.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: torchrun ... -m tools.training.launch <launch folder>", file=sys.stderr)
        return 2
    return run_rank(Path(args[0]))


if __name__ == "__main__":
    raise SystemExit(main())
