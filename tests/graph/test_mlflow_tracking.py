"""MLflow tracking (`tracking: mlflow`): a tiny job on the user's own dataset logs its training round to a
local file-store tracking URI, read back with MLflow's own client (params, step metrics, the evaluation's
metrics, the adapter's files, the run's status); the run is found again for a resumed round; an unreachable
tracking server is a clear error naming its URI."""

import socket

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from mlflow.tracking import MlflowClient
from own_dataset import parts_rows, write_rows

from agent.settings import Settings, resolve_settings
from graphs.checkpointer import StrictSerializer
from graphs.context import JobContext
from graphs.graph import build_graph
from tools.stores.model_registry import family_name
from tools.training.mlflow_tracking import MlflowRun, MlflowTarget, TrackingError

SENTENCE = "fine-tune a model on our parts list"


@pytest.fixture(scope="module")
def tracked_job(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    uri = (folder / "mlruns").as_uri()
    options = {"base_model": str(tiny_model_dir), "dataset": str(write_rows(folder / "own.jsonl", parts_rows())),
               "max_rounds": 0, "gates": {"min_nll_improvement": 0.0, "max_general_ppl_increase": 10.0},
               "training": {"max_steps": 4, "precision": "fp32", "checkpoint_every": 2},
               "evaluation": {"generate_limit": 2, "max_new_tokens": 4, "general_texts": 2, "general_qa": 1}}
    settings = Settings(home=folder / "home", tracking="mlflow", mlflow_tracking_uri=uri)
    state = build_graph(InMemorySaver(serde=StrictSerializer())).invoke(
        {"job_id": "tracked", "request": SENTENCE, "options": options},
        {"configurable": {"thread_id": "tracked"}, "recursion_limit": 60}, context=JobContext(settings))
    return uri, state, str(tiny_model_dir)


def test_the_round_is_an_mlflow_run_with_params_metrics_and_the_adapter(tracked_job):
    uri, state, base = tracked_job
    assert state["status"] == "succeeded"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(family_name(base, "our parts list"))
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked round 1"
    assert run.data.tags["ftagent.job"] == "tracked" and run.data.tags["ftagent.subject"] == "our parts list"
    assert run.data.params["max_steps"] == "4" and float(run.data.params["learning_rate"]) > 0
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == [1, 2, 3, 4]
    assert {"train/learning_rate", "train/grad_norm", "train/tokens_per_second", "eval/val_loss"} <= set(
        run.data.metrics)
    tuned = state["evaluation"].tuned["answer_nll"]
    assert run.data.metrics["eval/answer_nll/tuned"] == pytest.approx(tuned)
    assert "eval/answer_nll/base" in run.data.metrics
    files = {item.path for item in client.list_artifacts(run.info.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= files


def test_a_resumed_round_finds_its_run_again(tmp_path):
    target = MlflowTarget((tmp_path / "mlruns").as_uri(), "ft-x", "job-1", 1, {"ftagent.subject": "x"})
    first = MlflowRun(target)
    first.config({"lr": 0.1})
    first.close("FAILED")
    again = MlflowRun(target)
    assert again.run_id == first.run_id and first.created and not again.created
    again.config({"lr": 0.1})  # params are not logged twice
    again.close()
    assert MlflowClient(target.tracking_uri).get_run(first.run_id).info.status == "FINISHED"
    assert MlflowRun(MlflowTarget(target.tracking_uri, "ft-x", "job-1", 2), create=False).run_id is None


def test_an_unreachable_tracking_server_names_its_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(TrackingError, match=rf"MLflow tracking at {uri} failed opening the run"):
        MlflowRun(MlflowTarget(uri, "ft-x", "job-1", 1))


def test_tracking_settings_from_the_environment(tmp_path):
    settings = resolve_settings({"home": str(tmp_path)}, {"FTAGENT_TRACKING": "mlflow",
                                                          "MLFLOW_TRACKING_URI": "http://mlflow.example:5000"})
    assert settings.tracking == "mlflow" and settings.mlflow_tracking_uri == "http://mlflow.example:5000"
    with pytest.raises(ValueError, match="tracking"):
        resolve_settings({"home": str(tmp_path)}, {"FTAGENT_TRACKING": "wandb"})
