"""Any local model as the base: a folder or a Hugging Face id in the local cache, checked before any work
(config, causal LM, tokenizer, chat template); Hub downloads only when the setting allows them."""

import json
import shutil

import pytest
from hub_cache import cache_under_id, use_cache

from agent.service import JobService
from agent.settings import Settings
from graphs.spec import RequestError
from tools.models.catalogue import BaseModelError, check_base_model, hub_id_for, resolve_base_model

SENTENCE = "fine-tune a model on soil science"


def test_the_tiny_model_passes_the_check(tiny_model_dir):
    checked = check_base_model(tiny_model_dir)
    assert checked == {"model_type": "llama", "architecture": "LlamaForCausalLM", "chat_template": True}


def test_a_model_that_is_not_a_causal_lm_is_refused_at_submit(tmp_path, tiny_model_dir):
    folder = tmp_path / "bert"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(BaseModelError, match="is not a causal language model"):
        check_base_model(folder)
    service = JobService(Settings(home=tmp_path / "home"))
    with pytest.raises(RequestError, match="is not a causal language model"):
        service.submit(SENTENCE, {"base_model": str(folder), "docs_path": str(tmp_path)})
    assert service.list_jobs() == []


def test_a_model_without_a_chat_template_is_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, folder)
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(BaseModelError, match="has no chat template"):
        check_base_model(folder)


def test_a_hub_id_resolves_from_the_local_cache_only(tmp_path, monkeypatch, tiny_model_dir):
    cache = tmp_path / "hf-cache"
    use_cache(monkeypatch, cache)
    with pytest.raises(BaseModelError, match="not in the local Hugging Face cache .* hub_downloads"):
        resolve_base_model("someone/tiny-chat", tmp_path)
    snapshot = cache_under_id(tiny_model_dir, cache, "someone/tiny-chat")
    assert resolve_base_model("someone/tiny-chat", tmp_path) == snapshot
    assert hub_id_for("someone/tiny-chat") == "someone/tiny-chat"
    assert hub_id_for("SmolLM2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id_for(str(tiny_model_dir)) is None
