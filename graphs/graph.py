"""The job graph: intake -> researcher -> curator -> generator -> trainer -> evaluator -> deployer,
with the critic looping back while gates fail and rounds remain. A job on the user's own dataset goes
intake -> import_dataset -> trainer instead (no research, curation or generation)."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graphs.context import JobContext
from graphs.nodes.critic import choose_remedy
from graphs.nodes.curator import curate_chunks
from graphs.nodes.dataset_import import import_dataset
from graphs.nodes.deployer import register_model
from graphs.nodes.evaluator import evaluate_model
from graphs.nodes.finish import stop_without_model
from graphs.nodes.generator import generate_dataset
from graphs.nodes.intake import parse_job_request
from graphs.nodes.researcher import gather_documents
from graphs.nodes.trainer import train_adapter
from graphs.routing import (
    after_critic,
    after_curation,
    after_evaluation,
    after_generation,
    after_intake,
    after_research,
)
from graphs.state import JobState

PHASES = ("intake", "researcher", "curator", "generator", "trainer", "evaluator", "critic", "deployer")


def build_graph(checkpointer=None):
    """Compile the job graph; pass a checkpointer (SQLite by default in the service) for resumable jobs."""
    graph = StateGraph(JobState, context_schema=JobContext)
    graph.add_node("intake", parse_job_request)
    graph.add_node("import_dataset", import_dataset)
    graph.add_node("researcher", gather_documents)
    graph.add_node("curator", curate_chunks)
    graph.add_node("generator", generate_dataset)
    graph.add_node("trainer", train_adapter)
    graph.add_node("evaluator", evaluate_model)
    graph.add_node("critic", choose_remedy)
    graph.add_node("deployer", register_model)
    graph.add_node("stop_without_model", stop_without_model)
    graph.add_edge(START, "intake")
    graph.add_conditional_edges("intake", after_intake)
    graph.add_edge("import_dataset", "trainer")
    graph.add_conditional_edges("researcher", after_research)
    graph.add_conditional_edges("curator", after_curation)
    graph.add_conditional_edges("generator", after_generation)
    graph.add_edge("trainer", "evaluator")
    graph.add_conditional_edges("evaluator", after_evaluation)
    graph.add_conditional_edges("critic", after_critic)
    graph.add_edge("deployer", END)
    graph.add_edge("stop_without_model", END)
    return graph.compile(checkpointer=checkpointer)
