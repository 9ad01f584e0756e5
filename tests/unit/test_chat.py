"""The chat door: the deterministic intent parser (a table) and a conversation over a real service."""

from __future__ import annotations

import pytest

from agent.chat import ChatSession, Intent, parse_intent
from agent.service import JobService
from agent.settings import resolve_settings
from tools.stores.job_store import UnknownJob


@pytest.mark.parametrize(("message", "expected"), [
    ("fine-tune SmolLM2 on quantum error correction",
     Intent("fine_tune", "fine-tune SmolLM2 on quantum error correction")),
    ("fine-tune SmolLM2 on progress reports", Intent("fine_tune", "fine-tune SmolLM2 on progress reports")),
    ("how is it going?", Intent("status")),
    ("status", Intent("status")),
    ("any progress?", Intent("status")),
    ("stop it", Intent("cancel")),
    ("cancel", Intent("cancel")),
    ("please stop.", Intent("cancel")),
    ("use PubMed only", Intent("sources", sources=("pubmed",))),
    ("use arXiv and Wikipedia", Intent("sources", sources=("arxiv", "wikipedia"))),
    ("what models do I have?", Intent("models")),
    ("list my models", Intent("models")),
    ("ask the new model: what is a stabilizer?", Intent("ask", "what is a stabilizer?")),
    ("ask ft-x-v1: why?", Intent("ask", "why?", model="ft-x-v1")),
    ("help", Intent("help")),
    ("quit", Intent("quit")),
    ("marine biology", Intent("other", "marine biology")),
])
def test_intent_table(message, expected):
    assert parse_intent(message) == expected


@pytest.fixture()
def session(home, tmp_path) -> ChatSession:
    service = JobService(resolve_settings({"home": str(home)}))
    return ChatSession(service, user="alice", options={"docs_path": str(tmp_path)})


def test_missing_subject_gets_a_question_and_the_answer_starts_the_job(session):
    question = session.reply("fine-tune SmolLM2 please")
    assert question.startswith("What should") and session.job_id is None
    started = session.reply("marine biology")
    assert started.startswith("Started job") and "'marine biology'" in started
    record = session.service.jobs.get(session.job_id)
    assert record.request == "fine-tune smollm2-135m on marine biology" and record.owner == "alice"


def test_status_sources_cancel_and_models_in_one_conversation(session):
    assert session.reply("how is it going?").startswith("There is no job yet")
    session.reply("fine-tune on quantum error correction")
    first = session.job_id
    assert f"Job {first} is queued" in session.reply("how is it going?")
    switched = session.reply("use PubMed only")
    assert "replaced it" in switched and session.job_id != first
    assert session.service.jobs.get(first).status == "cancelled"
    assert session.service.jobs.get(session.job_id).options["sources"] == ["pubmed"]
    assert session.reply("stop it") == f"Job {session.job_id} is cancelled."
    assert session.reply("what models do I have?").startswith("You have no models yet")
    assert session.reply("ask the new model: what is a qubit?") == "There is no model to ask yet. Fine-tune one first."
    assert "no model" in session.reply("ask ft-missing-v1: what is a qubit?")
    with pytest.raises(UnknownJob):
        session.service.jobs.get("nope")


def test_another_users_job_cannot_be_stopped_from_their_chat(session):
    session.reply("fine-tune on quantum error correction")
    intruder = ChatSession(session.service, user="bob", job_id=session.job_id)
    assert "belongs to another user" in intruder.reply("stop it")
    assert session.service.jobs.get(session.job_id).status == "queued"
