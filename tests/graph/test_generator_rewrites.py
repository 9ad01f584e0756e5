"""The generator node with a chat model configured: its grounded rewrites become document rows and its
pairs QA rows (through the same gates), beside the offline generator's rows; a dead endpoint leaves the
offline rows standing alone, with the reason in the events."""

from __future__ import annotations

import json
import re
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from scripted_chat import ScriptedChat, serve
from tiny_job import small_corpus, tiny_job_options

from agent.settings import Settings
from graphs.checkpointer import StrictSerializer
from graphs.context import JobContext
from graphs.graph import build_graph
from tools.data.dataset import read_jsonl


class Rewriter(ScriptedChat):
    """Rewrites each passage by restating its sentences in reverse word order (every content word is the
    passage's own, hardly a 4-gram is), and asks one question about it."""

    def behaviour(self, body: dict[str, Any]) -> Any:
        prompt = "\n".join(m["content"] for m in body["messages"])
        passage = re.search(r'Passage:\n"""\n(.*?)\n"""', prompt, re.DOTALL)
        if not passage:
            return "prose"
        sentences = [s for s in re.split(r"(?<=\.)\s+", passage[1]) if len(s.split()) > 6][:3]
        if '"pairs"' in prompt:
            first = sentences[0] if sentences else passage[1]
            return {"pairs": [{"question": "What does the passage about this code describe?", "answer": first,
                               "type": "fact"}]}
        restated = " ".join(" ".join(reversed(s.rstrip(".").split())) + "." for s in sentences)
        return {"rewrites": [restated]}


def run_job(tmp_path, tiny_model_dir, embedder, base_url: str | None, job: str) -> dict:
    settings = Settings(home=tmp_path / job, chat_model="scripted" if base_url else None, chat_base_url=base_url,
                        chat_api_key="x")
    context = JobContext(settings)
    context.__dict__["embedder"] = embedder
    options = tiny_job_options(tiny_model_dir, small_corpus(tmp_path / f"{job}-docs"),
                               generation={"rewrites_per_chunk": 1, "llm_timeout_s": 5, "llm_retries": 0},
                               evaluation={"generate_limit": 0, "general_texts": 2, "judge": False})
    return build_graph(InMemorySaver(serde=StrictSerializer())).invoke(
        {"job_id": job, "request": "fine-tune a model on quantum error correction", "options": options},
        {"configurable": {"thread_id": job}, "recursion_limit": 60}, context=context)


def test_rewrites_become_document_rows_beside_the_passages(tiny_model_dir, tmp_path, shared_embedder):
    for chat, base_url in serve(Rewriter()):
        state = run_job(tmp_path, tiny_model_dir, shared_embedder, base_url, "job-rw")
    dataset = state["dataset"]
    rows = read_jsonl(dataset.documents_path)
    kinds = {row["metadata"]["kind"] for row in rows}
    assert kinds == {"document", "rewrite"} and dataset.rewrite_rows > 0
    assert dataset.rewrite_stats["rewrites kept"] == dataset.rewrite_rows
    assert any(r["metadata"].get("style") for r in rows if r["metadata"]["kind"] == "rewrite")
    assert len(chat.bodies) > 0 and state["status"] == "succeeded"


def test_a_dead_endpoint_leaves_the_offline_rows_and_says_why(tiny_model_dir, tmp_path, shared_embedder):
    state = run_job(tmp_path, tiny_model_dir, shared_embedder, "http://127.0.0.1:9/v1", "job-dead")
    rows = read_jsonl(state["dataset"].documents_path)
    assert rows and {row["metadata"]["kind"] for row in rows} == {"document"}
    events = [json.loads(line) for line in (tmp_path / "job-dead" / "jobs" / "job-dead" / "events.jsonl")
              .read_text().splitlines()]
    assert any("rewrites: the chat model failed" in e["message"] for e in events)
    assert state["dataset"].counts["train"] > 0
