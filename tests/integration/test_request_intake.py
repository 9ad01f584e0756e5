"""Intake with a chat model, against the scripted OpenAI-compatible server on 127.0.0.1: the model's
reading fills what the offline reader missed, disagreements are recorded, failures fall back."""

from __future__ import annotations

import pytest

from agent.service import JobService
from agent.settings import Settings
from graphs.reports import job_report
from graphs.spec import build_spec
from graphs.state import IntakeReading
from tools.events import EventLog
from tools.intake.request_intake import read_with_chat_model
from tools.intake.request_reader import RequestError
from tools.llm.chat_model import build_chat


def reading(subject: str, base_model: str = "", **extra) -> dict:
    return {"is_fine_tuning": True, "subject": subject, "base_model": base_model, "sources": [],
            "docs_path": "", "epochs": None, "lora_rank": None, "learning_rate": None, **extra}


def service_for(base_url: str, tmp_path) -> JobService:
    return JobService(Settings(home=tmp_path / "home", chat_model="scripted", chat_base_url=base_url,
                               chat_timeout_s=5))


@pytest.mark.parametrize("scripted", [[reading("Norse sagas", "Qwen 2.5")]], indirect=True)
def test_the_chat_model_reads_what_the_offline_reader_cannot(scripted, tmp_path, monkeypatch, tiny_model_dir):
    from hub_cache import cache_under_id, use_cache

    # doors check the base model before queueing: the catalogue's Qwen is found in a private local cache
    use_cache(monkeypatch, tmp_path / "hf-cache")
    cache_under_id(tiny_model_dir, tmp_path / "hf-cache", "Qwen/Qwen2.5-0.5B-Instruct")
    chat, base_url = scripted
    sentence = "the Norse sagas are what my new bot needs to be about"
    with pytest.raises(RequestError):
        build_spec(sentence)  # offline alone: no
    service = service_for(base_url, tmp_path)
    record = service.submit(sentence, owner="alice")
    assert record.options["subject"] == "Norse sagas"
    spec = build_spec(record.request, record.options)  # what the graph's intake rebuilds: the same job
    assert (spec.subject, spec.base_model) == ("Norse sagas", "qwen2.5-0.5b")
    assert f"<<<{sentence}>>>" in chat.prompts(0)
    event = next(e for e in EventLog(service.settings.job_paths(record.job_id).events).read()
                 if e["kind"] == "understood")
    assert event["data"]["read_by"] == "chat model (the offline reader could not read it)"
    assert service.understood(record) == "fine-tune qwen2.5-0.5b on 'Norse sagas' from sources chosen for the subject"


@pytest.mark.parametrize("scripted", [[reading("tidal energy", "llama-3.2-1b", epochs=5)]], indirect=True)
def test_disagreements_are_recorded_and_the_exact_names_and_numbers_stay_the_offline_readers(scripted, tmp_path):
    _, base_url = scripted
    service = service_for(base_url, tmp_path)
    record = service.submit("fine-tune SmolLM2 on tidal energy in 4 epochs", owner="alice")
    spec = build_spec(record.request, record.options)
    assert (spec.base_model, spec.training.epochs, spec.subject) == ("smollm2-135m", 4, "tidal energy")
    event = next(e for e in EventLog(service.settings.job_paths(record.job_id).events).read()
                 if e["kind"] == "understood")
    assert event["data"]["read_by"] == "chat model, checked by the offline reader"
    assert event["data"]["disagreements"] == [
        "base model: chat model 'llama-3.2-1b', offline reader 'smollm2-135m' (kept the offline reader's)",
        "training.epochs: chat model 5.0, offline reader 4.0 (kept the offline reader's)"]
    report = job_report({"job_id": record.job_id, "request": record.request, "intake": IntakeReading(
        understood=service.understood(record), read_by=event["data"]["read_by"],
        disagreements=event["data"]["disagreements"])})
    assert "Understood: fine-tune smollm2-135m on 'tidal energy' from sources chosen for the subject " \
           "(4 epochs) (read by the chat model, checked by the offline reader)" in report
    assert "- the readers disagree on base model: chat model 'llama-3.2-1b'" in report


@pytest.mark.parametrize("scripted", [[reading("the surface code", "", sources=["arxiv"], lora_rank=4)]],
                         indirect=True)
def test_the_chat_model_fills_options_the_sentence_left_out(scripted):
    _, base_url = scripted
    intake = read_with_chat_model("fine-tune SmolLM2 about the surface code",
                                  build_chat("scripted", base_url, None, timeout_s=5))
    assert intake.options == {"sources": ["arxiv"], "training": {"lora_r": 4}} and intake.disagreements == ()


@pytest.mark.parametrize("scripted", [["500", "prose"]], indirect=True)
def test_a_failing_chat_model_leaves_the_offline_reader_and_says_why(scripted):
    _, base_url = scripted
    intake = read_with_chat_model("fine-tune SmolLM2 on tides", build_chat("scripted", base_url, None, timeout_s=5))
    assert intake.options == {}
    assert intake.how == ("offline reader (chat model: chat model failed 2 times: API error (HTTP 500), "
                          "prose instead of structured output)")


@pytest.mark.parametrize("scripted", [[reading("x", "GPT-9")]], indirect=True)
def test_a_chat_models_bad_reading_is_checked_out(scripted):
    _, base_url = scripted
    intake = read_with_chat_model("fine-tune SmolLM2 on tides", build_chat("scripted", base_url, None, timeout_s=5))
    assert intake.options == {} and intake.disagreements == ()  # "x" is no subject, GPT-9 no model we know
