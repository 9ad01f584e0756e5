"""Typed node results for tests that call one node, router or report on a hand-built state: each
builder fills the fields a test does not care about, so a test names only what it asserts on."""

from __future__ import annotations

from typing import Any

from graphs.state import (
    CurationSummary,
    DatasetSummary,
    EvaluationResult,
    GateCheck,
    IntakeReading,
    RemedyRecord,
    TrainingSummary,
)


def gate(name: str, passed: bool, **fields: Any) -> GateCheck:
    return GateCheck(
        name=name, passed=passed, detail=fields.pop("detail", f"{name} checked"), **fields
    )


def curation_summary(**fields: Any) -> CurationSummary:
    defaults = {
        "collection": "job-1",
        "documents_in": 1,
        "documents_kept": 1,
        "chunks_in": 1,
        "chunks_kept": 1,
    }
    return CurationSummary(**defaults | fields)


def dataset_summary(**fields: Any) -> DatasetSummary:
    return DatasetSummary(
        **{"paths": {}, "counts": {"train": 0, "val": 0, "test": 0}, "hash": "abc"} | fields
    )


def training_summary(**fields: Any) -> TrainingSummary:
    defaults = {
        "adapter_dir": "",
        "base_model_path": "",
        "config": {},
        "steps": 4,
        "total_steps": 4,
        "train_loss": 1.0,
    }
    return TrainingSummary(**defaults | fields)


def evaluation_result(**fields: Any) -> EvaluationResult:
    return EvaluationResult(**{"base": {}, "tuned": {}, "passed": True} | fields)


def remedy_record(route: str = "trainer", **fields: Any) -> RemedyRecord:
    defaults = {
        "after_round": 1,
        "remedy_number": 1,
        "section": "training",
        "changes": {},
        "reason": "underfit",
        "before": {},
        "metrics_before": {},
    }
    return RemedyRecord(route=route, **defaults | fields)


def intake_reading(**fields: Any) -> IntakeReading:
    return IntakeReading(**{"understood": "fine-tune smollm2-135m on 'the subject'"} | fields)
