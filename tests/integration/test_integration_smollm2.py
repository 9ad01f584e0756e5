"""The demo job with the real embedded SmolLM2 (minutes on CPU): run with `pytest -m integration`."""

from pathlib import Path

import pytest

from agent.service import JobService
from agent.settings import Settings

DEMO = Path(__file__).resolve().parents[2] / "tools" / "eval_sets" / "demo_corpus"


@pytest.mark.integration
def test_demo_job_beats_the_base_model(tmp_path):
    service = JobService(Settings(home=tmp_path))
    record = service.submit("fine-tune SmolLM2 on quantum error correction", {"docs_path": str(DEMO)})
    state = service.run(record.job_id)
    evaluation = state["evaluation"]
    assert evaluation["tuned"]["answer_nll"] < evaluation["base"]["answer_nll"]
    assert state["model"].name.startswith("ft-smollm2-135m-quantum-error-correction-v1-")
    answer = service.ask(state["model"].name, "What is the surface code?", max_new_tokens=32)
    assert answer.strip()
