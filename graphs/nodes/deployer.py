"""deployer: version, register and describe the tuned model (merged weights on request)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from langgraph.runtime import Runtime

from graphs.context import JobContext
from graphs.reports import job_report, model_card
from graphs.state import JobState
from tools.home import HomeLayout
from tools.hub_cards import front_matter, name_base_in_adapter, version_metadata, write_merged_card
from tools.models.catalogue import hub_id_for
from tools.serving.export import export_merged
from tools.stores.model_registry import ModelRegistry, ModelVersion, family_name
from tools.stores.sql_table import now_iso


def register_model(state: JobState, runtime: Runtime[JobContext]) -> dict:
    spec = state["spec"]
    settings = runtime.context.settings
    events = runtime.context.events(state["job_id"])
    registry = ModelRegistry(settings.database)
    version = registry.find_by_job(state["job_id"], state["round"])  # a resumed deployer registers once
    if version is None:  # the card is written (atomically) before the row: a version is never seen without it
        version = _new_version(state, spec, registry, settings.home)
        write_card(Path(version.card_path), hub_card(state, version))
        version = registry.register(version)
        if version.merged_path:
            write_merged_card(Path(version.merged_path), version)
    elif not Path(version.card_path).is_file():  # registered by an older build that died before its card
        write_card(Path(version.card_path), hub_card(state, version))
    passed = state["evaluation"].passed
    outcome = (f"{version.name} registered ({version.status}); gates "
               f"{'passed' if passed else 'failed after ' + str(len(state.get('remedies', []))) + ' remedies'}")
    events.emit("deployer", "phase", outcome, model=version.name, status=version.status)
    final: JobState = {**state, "model": version, "outcome": outcome, "status": "succeeded"}
    runtime.context.paths(state["job_id"]).report.write_text(job_report(final))
    return {"model": version, "outcome": outcome, "status": "succeeded"}


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
    # The version's folder is the adapter itself, Hub-shaped: adapter_config.json (naming the base by its
    # Hub id), the weights, the tokenizer and README.md; peft's AutoPeftModelForCausalLM loads it as it is.
    folder = adapter = HomeLayout(home).model(name)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(training.adapter_dir, adapter)
    name_base_in_adapter(adapter, base_model_name(spec.base_model))
    merged = export_merged(training.base_model_path, adapter, folder / "merged") if spec.merge else None
    return ModelVersion(
        name=name, family=family, version=number, base_model=spec.base_model,
        base_model_path=training.base_model_path, subject=spec.subject,
        status="staging" if evaluation.passed else "rejected", gates_passed=evaluation.passed,
        adapter_path=str(adapter), merged_path=str(merged) if merged else None,
        card_path=str(folder / "README.md"), dataset_hash=state["dataset"].hash, job_id=state["job_id"],
        round=state["round"], created_at=now_iso(),
        sources=[{k: d[k] for k in ("source", "title", "uri")} for d in state.get("documents", [])],
        config=training.config,
        metrics={"base": evaluation.base, "tuned": evaluation.tuned,
                 "gates": [gate.model_dump() for gate in evaluation.gates],
                 "train_loss": training.train_loss, "val_loss": training.val_loss},
    )


def hub_card(state: JobState, version: ModelVersion) -> str:
    """README.md: the Hub's YAML front matter, then the prose card."""
    return front_matter(version_metadata(version)) + "\n" + model_card(state, version)


def base_model_name(base_model: str) -> str:
    """How the adapter names its base: the Hub id when the base has one (catalogue models, ids from the
    local cache), else the user's own folder as an absolute path (the only name it has). The copy that
    training loaded (the embedded GGUF model converted under the home) stays in the registry
    (base_model_path): ftagent loads from there, other tools by the id."""
    return hub_id_for(base_model) or str(Path(base_model).expanduser().resolve())

