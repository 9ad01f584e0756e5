"""The same job writes the same data set wherever its documents lie and whatever Python's hash seed: the graph
up to the generator, in two real processes (PYTHONHASHSEED 1 and 2), each on its own copy of the documents.

The local source named a document by its absolute path, so each pytest run (a fresh temporary folder) split
the same five documents differently: the critic-round test saw data set 7233479cd370 in one run and
29c6ce3ea687 in another, first read as a hash-seed effect."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tiny_job import GRAPH_JOB, small_corpus, tiny_job_options

REPO = Path(__file__).resolve().parents[2]

DATA_STAGES = """
import json, sys
from langgraph.checkpoint.memory import InMemorySaver
from agent.settings import resolve_settings
from graphs.context import JobContext
from graphs.graph import build_graph
home, options = sys.argv[1], json.loads(sys.argv[2])
config = {"configurable": {"thread_id": "job-data"}}
state = build_graph(InMemorySaver()).invoke(
    {"job_id": "job-data", "request": "fine-tune a model on quantum error correction", "options": options},
    config, context=JobContext(resolve_settings({"home": home})), interrupt_after=["generator"])
print(json.dumps({"hash": state["dataset"].hash, "counts": state["dataset"].counts}))
"""


def _start_data_stages(home: Path, model_dir: Path, hash_seed: str) -> subprocess.Popen:
    options = tiny_job_options(model_dir, small_corpus(home / "docs"), base=GRAPH_JOB)
    return subprocess.Popen([sys.executable, "-c", DATA_STAGES, str(home), json.dumps(options)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": hash_seed})


def test_dataset_does_not_depend_on_folder_or_hash_seed(tiny_model_dir, tmp_path):
    runs = [_start_data_stages(tmp_path / f"home-{seed}", tiny_model_dir, seed) for seed in ("1", "2")]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    first, second = (json.loads(output) for output in outputs)
    assert first["counts"]["test"] > 0 and first == second
