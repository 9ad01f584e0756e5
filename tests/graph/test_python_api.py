"""The Python door: FineTuner, build_graph as a subgraph, and the LangChain tool."""

from __future__ import annotations

import pytest
from langgraph.graph import END, START, StateGraph
from tiny_job import SUBJECT_SENTENCE, small_corpus, tiny_job_options

from agent import FineTuner
from agent.python_api import build_graph, fine_tune_tool
from agent.settings import resolve_settings
from graphs.context import JobContext
from graphs.spec import RequestError
from graphs.state import JobState


def test_submit_status_events_and_cancel(home, tmp_path):
    tuner = FineTuner(home=home, user="alice")
    job_id = tuner.submit(SUBJECT_SENTENCE, docs_path=str(tmp_path))
    assert tuner.status(job_id)["status"] == "queued" and tuner.status(job_id)["owner"] == "alice"
    assert tuner.cancel(job_id) == "cancelled"
    assert [e["kind"] for e in tuner.events(job_id, follow=True, timeout=5)] == ["cancelled"]
    with pytest.raises(RequestError):
        tuner.submit("fine-tune SmolLM2")


def test_build_graph_compiles_as_a_subgraph_of_another_graph():
    outer = StateGraph(JobState)
    outer.add_node("fine_tune", build_graph())
    outer.add_edge(START, "fine_tune")
    outer.add_edge("fine_tune", END)
    assert "fine_tune" in outer.compile().get_graph().nodes


def test_the_job_graph_runs_inside_a_parent_graph_with_the_job_context(home, tmp_path):
    """The subgraph is invoked for real: the parent declares the job context, passes it on invoke,
    and its own next node reads what the job left in the shared state."""
    empty = tmp_path / "empty"
    empty.mkdir()
    seen: list[str] = []

    def announce(state: JobState) -> dict:
        seen.append(state["outcome"])
        return {}

    outer = StateGraph(JobState, context_schema=JobContext)
    outer.add_node("fine_tune", build_graph())
    outer.add_node("announce", announce)
    outer.add_edge(START, "fine_tune")
    outer.add_edge("fine_tune", "announce")
    outer.add_edge("announce", END)
    settings = resolve_settings({"home": str(home)})
    inputs = {"job_id": "job-sub", "request": SUBJECT_SENTENCE,
              "options": {"docs_path": str(empty), "sources": ["local"]}}
    final = outer.compile().invoke(inputs, context=JobContext(settings))
    assert final["status"] == "failed" and final["outcome"].startswith("stopped: no documents")
    assert seen == [final["outcome"]]
    events = settings.job_paths("job-sub").events.read_text()
    assert '"phase": "researcher"' in events  # the job's nodes ran with the parent's context


def test_langchain_tool_runs_a_job_to_its_end_and_says_how_it_went(home, tiny_model_dir, tmp_path):
    tuner = FineTuner(home=home, user="alice")
    options = tiny_job_options(tiny_model_dir, small_corpus(tmp_path / "docs"))
    tool = fine_tune_tool(tuner, **options)
    assert tool.name == "fine_tune" and "request" in tool.args
    assert tool.invoke({"request": "fine-tune SmolLM2 please"}).startswith("cannot start: no subject")
    answer = tool.invoke({"request": SUBJECT_SENTENCE})
    assert " succeeded: " in answer and "registered" in answer
    assert "trainer -> evaluator -> deployer" in answer
    assert len(tuner.models()) == 1
