"""deployer: version, register and describe the tuned model (merged weights on request)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.nodes.common import effective_spec
from graphs.reports import job_report, model_card
from graphs.state import JobState
from tools.export import export_merged
from tools.registry import ModelRegistry, ModelVersion, family_name, now_iso


def register_model(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = effective_spec(state)
    settings = runtime.context.settings
    events = runtime.context.events(state["job_id"])
    registry = ModelRegistry(settings.database)
    training, evaluation = state["training"], state["evaluation"]
    version = registry.find_by_job(state["job_id"], training["round"])  # a resumed deployer registers once
    if version is None:  # the card is written (atomically) before the row: a version is never seen without it
        version = _new_version(state, spec, registry, settings.home)
        write_card(Path(version.card_path), model_card(state, version.to_dict()))
        version = registry.register(version)
    elif not Path(version.card_path).is_file():  # registered by an older build that died before its card
        write_card(Path(version.card_path), model_card(state, version.to_dict()))
    passed = evaluation["passed"]
    outcome = (f"{version.name} registered ({version.status}); gates "
               f"{'passed' if passed else 'failed after ' + str(len(state.get('remedies', []))) + ' remedies'}")
    events.emit("deployer", "phase", outcome, model=version.name, status=version.status)
    final = {**state, "model": version.to_dict(), "outcome": outcome, "status": "succeeded"}
    runtime.context.paths(state["job_id"]).report.write_text(job_report(final))
    return {"model": version.to_dict(), "outcome": outcome, "status": "succeeded"}


def write_card(path: Path, card: str) -> None:
    """The model card, whole or not at all (a temporary file renamed into place)."""
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(card)
    os.replace(temporary, path)


def _new_version(state: JobState, spec, registry: ModelRegistry, home: Path) -> ModelVersion:
    training, evaluation = state["training"], state["evaluation"]
    family = family_name(spec.base_model, spec.subject)
    number = registry.next_version(family)
    name = f"{family}-v{number}-{datetime.now(UTC):%Y%m%d}"
    folder = home / "models" / name
    adapter = folder / "adapter"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(training["adapter_dir"], adapter)
    merged = export_merged(training["base_model_path"], adapter, folder / "merged") if spec.merge else None
    return ModelVersion(
        name=name, family=family, version=number, base_model=spec.base_model,
        base_model_path=training["base_model_path"], subject=spec.subject,
        status="staging" if evaluation["passed"] else "rejected", gates_passed=evaluation["passed"],
        adapter_path=str(adapter), merged_path=str(merged) if merged else None,
        card_path=str(folder / "MODEL_CARD.md"), dataset_hash=state["dataset"]["hash"], job_id=state["job_id"],
        round=training["round"], created_at=now_iso(),
        sources=[{k: d[k] for k in ("source", "title", "uri")} for d in state.get("documents", [])],
        config=training["config"],
        metrics={"base": evaluation["base"], "tuned": evaluation["tuned"], "gates": evaluation["gates"],
                 "train_loss": training["train_loss"], "val_loss": training["val_loss"]},
    )

