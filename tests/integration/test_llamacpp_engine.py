"""`ftagent serve --engine llamacpp`: a version's LoRA adapter as a llama.cpp GGUF LoRA (read back with gguf's
reader, and checked against the merged model's weights), the GGUF cache, and the clear refusal without
llama-cpp-python: these run in the default run, where llama-cpp-python is not installed.

Marked `llamacpp` (outside the default run; `pytest -m llamacpp`, with `pip install -e '.[llamacpp]'`): real
llama.cpp serving the base GGUF with the adapter's GGUF LoRA, whose greedy answers must equal this project's
own engine (fp32, the adapter merged) on the tiny test model and on the real SmolLM2-135M, and the HTTP
surface (models, plain and streamed completions) with llama.cpp behind it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from tiny_model import random_adapter

from agent.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, main
from tools.serving.export import export_merged
from tools.serving.gguf_export import write_gguf
from tools.serving.gguf_lora import AdapterNotRepresentable, write_gguf_lora
from tools.serving.llamacpp_engine import GgufCache

REPO = Path(__file__).resolve().parents[2]
MODULES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
QUESTIONS = ("What is a stabilizer code?", "Explain the surface code in two sentences.",
             "Why do qubits need error correction?")


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """Rank 4, alpha 64 on every linear layer: it changes the tiny model's answers visibly."""
    return random_adapter(tiny_model_dir, tmp_path_factory.mktemp("llamacpp-adapter") / "ft", seed=3)


def _fields(reader: gguf.GGUFReader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def _tensors(path: Path) -> dict[str, np.ndarray]:
    """{GGUF name: array in numpy order (rows = the GGUF shape reversed)} of an f32 file."""
    return {t.name: np.array(t.data, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])
            for t in gguf.GGUFReader(str(path)).tensors}


# -- without llama-cpp-python (the default run) ---------------------------------------------------
def test_serve_with_llamacpp_without_llama_cpp_python_says_how_to_install(home: Path) -> None:
    """Through the real entry point in its own process, with llama_cpp made unimportable (as in a default
    install): one clear line and the environment exit code, before the registry is read (this home has no
    model, which would otherwise be the complaint), never a traceback."""
    script = ("import sys; sys.modules['llama_cpp'] = None\n"
              "from agent.cli import program\n"
              "sys.argv = ['ftagent', 'serve', '--engine', 'llamacpp']\n"
              "program()\n")
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FTAGENT_HOME": str(home), "COLUMNS": "300"}, cwd=REPO)
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_ENVIRONMENT, output
    assert "cannot serve with llama.cpp" in output and "llama-cpp-python, which is not installed" in output
    assert "pip install -e '.[llamacpp]'" in output and "compiles llama.cpp from source" in output
    assert "Traceback" not in output and "nothing to serve" not in output


def test_llamacpp_refuses_the_int8_and_int4_flags_of_the_other_engine(home: Path, capsys) -> None:
    code = main(["serve", "--engine", "llamacpp", "--int8"])
    out = capsys.readouterr().out
    assert code == EXIT_BAD_INPUT and "--gguf-dtype q8_0" in out


def test_gguf_lora_reads_back_with_llama_cpp_names_shapes_and_alpha(tiny_model_dir: Path, adapter: Path,
                                                                     tmp_path: Path) -> None:
    path = write_gguf_lora(adapter, tiny_model_dir, tmp_path / "ft-lora.gguf")
    reader = gguf.GGUFReader(str(path))
    fields = _fields(reader)
    assert fields["general.architecture"] == "llama" and fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora" and fields["adapter.lora.alpha"] == 64.0
    config = json.loads((tiny_model_dir / "config.json").read_text())
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * hidden // config["num_attention_heads"]
    out_in = {"attn_q": (hidden, hidden), "attn_k": (kv, hidden), "attn_v": (kv, hidden),
              "attn_output": (hidden, hidden), "ffn_gate": (inner, hidden), "ffn_up": (inner, hidden),
              "ffn_down": (hidden, inner)}
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    expected = {}
    for layer in range(config["num_hidden_layers"]):
        for module, (rows, columns) in out_in.items():
            expected[f"blk.{layer}.{module}.weight.lora_a"] = [columns, 4]  # GGUF order: (in, rank)
            expected[f"blk.{layer}.{module}.weight.lora_b"] = [4, rows]  # (rank, out)
    assert shapes == expected
    assert {t.tensor_type.name for t in reader.tensors} == {"F32"}


def test_gguf_lora_applied_to_the_base_gguf_gives_the_merged_gguf(tiny_model_dir: Path, adapter: Path,
                                                                   tmp_path: Path) -> None:
    """What llama.cpp computes, W + alpha/r * B @ A on the base GGUF's tensors, equals the merged model's GGUF
    tensor by tensor: the names, the orientation and q/k's row permutation of lora_b agree with the base
    writer's (a wrong permutation or a transposed factor fails here)."""
    base = _tensors(write_gguf(export_merged(str(tiny_model_dir), None, tmp_path / "base"), tmp_path / "b.gguf",
                               "f32"))
    merged = _tensors(write_gguf(export_merged(str(tiny_model_dir), adapter, tmp_path / "merged"),
                                 tmp_path / "m.gguf", "f32"))
    lora = _tensors(write_gguf_lora(adapter, tiny_model_dir, tmp_path / "lora.gguf"))
    adapted = sorted(name.removesuffix(".lora_a") for name in lora if name.endswith(".lora_a"))
    assert len(adapted) == 2 * len(MODULES)
    for name in adapted:
        applied = base[name] + 64 / 4 * lora[f"{name}.lora_b"] @ lora[f"{name}.lora_a"]
        np.testing.assert_allclose(applied, merged[name], rtol=0, atol=2e-5, err_msg=name)
        assert not np.allclose(base[name], merged[name], atol=1e-3), f"{name}: the adapter changes nothing"
    untouched = set(base) - set(adapted)
    assert untouched and all(np.array_equal(base[name], merged[name]) for name in untouched)


@pytest.mark.parametrize(("change", "reason"), [
    ({"use_dora": True}, "DoRA"),
    ({"use_rslora": True}, "rsLoRA"),
    ({"alpha_pattern": {"q_proj": 32}}, "per-module alphas"),
    ({"modules_to_save": ["lm_head"]}, "whole trained modules"),
    ({"bias": "lora_only"}, "trained biases"),
])
def test_adapters_the_gguf_lora_format_cannot_hold_are_refused_by_name(
        tiny_model_dir: Path, adapter: Path, tmp_path: Path, change: dict, reason: str) -> None:
    changed = shutil.copytree(adapter, tmp_path / "changed")
    config = json.loads((changed / "adapter_config.json").read_text())
    (changed / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(AdapterNotRepresentable, match=reason):
        write_gguf_lora(changed, tiny_model_dir, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf*"))


def test_the_gguf_cache_reuses_current_files_and_serves_unrepresentable_adapters_merged(
        tiny_model_dir: Path, adapter: Path, tmp_path: Path) -> None:
    cache = GgufCache(tmp_path / "cache", "f32")
    first = cache.version(str(adapter), str(tiny_model_dir))
    assert first.role == "lora" and first.written and first.path.read_bytes()[:4] == b"GGUF"
    again = cache.version(str(adapter), str(tiny_model_dir))
    assert again.path == first.path and not again.written
    retrained = adapter / "adapter_model.safetensors"
    later = first.path.stat().st_mtime + 5
    os.utime(retrained, (later, later))  # the adapter changed after its GGUF was written
    assert cache.version(str(adapter), str(tiny_model_dir)).written
    rslora = shutil.copytree(adapter, tmp_path / "rslora")
    config = json.loads((rslora / "adapter_config.json").read_text())
    (rslora / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    merged = cache.version(str(rslora), str(tiny_model_dir))
    assert merged.role == "merged" and _fields(gguf.GGUFReader(str(merged.path)))["general.type"] == "model"
    assert "served merged, since" in merged.describe() and "rsLoRA" in merged.describe()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no scratch folder left
    base = cache.base(str(tiny_model_dir))
    template = _fields(gguf.GGUFReader(str(base.path)))["tokenizer.chat_template"]
    assert "<|im_start|>" in template  # llama.cpp formats chat messages with the GGUF's own template


# -- with llama-cpp-python (pytest -m llamacpp) -----------------------------------------------------
def _request(model: str, question: str, max_tokens: int):
    from tools.serving.server import ChatCompletionRequest

    return ChatCompletionRequest(model=model, temperature=0, max_tokens=max_tokens,
                                 messages=[{"role": "user", "content": question}])


def _same_greedy_answers(base_dir: Path, adapter_dir: Path, cache: Path, names: tuple[str, ...],
                         max_tokens: int, served_as: str = "lora") -> list[tuple[str, str]]:
    """(llama.cpp's answer, ours) for every question and name, after checking the prompts tokenize alike and
    that the version is served `served_as` (a GGUF LoRA on the base GGUF, or merged)."""
    from tools.serving.llamacpp_engine import LlamaCppServer
    from tools.serving.server import ModelServer

    ours = ModelServer(str(base_dir), {"ft": str(adapter_dir)}, base_name="base", max_batch_size=1,
                       precision="fp32")
    theirs = LlamaCppServer(str(base_dir), {"ft": str(adapter_dir)}, cache_dir=cache, base_name="base",
                            gguf_dtype="f32")
    assert [g.role for g in theirs.gguf_files] == ["base", served_as]
    pairs = []
    try:
        for name in names:
            for question in QUESTIONS:
                job, reference = (theirs.prepare(_request(name, question, max_tokens), None),
                                  ours.prepare(_request(name, question, max_tokens), None))
                assert job.input_ids[0].tolist() == reference.input_ids[0].tolist()
                pairs.append((theirs.generate(job), ours.generate(reference)))
    finally:
        theirs.close()
        ours.close()
    return pairs


@pytest.mark.llamacpp
def test_llama_cpp_with_the_gguf_lora_answers_as_our_engine_on_the_tiny_model(
        tiny_model_dir: Path, adapter: Path, tmp_path: Path) -> None:
    pairs = _same_greedy_answers(tiny_model_dir, adapter, tmp_path / "cache", ("ft", "base"), 24)
    assert all(theirs == ours for theirs, ours in pairs), pairs
    tuned, base = [ours.text for _, ours in pairs[:3]], [ours.text for _, ours in pairs[3:]]
    assert tuned != base  # the adapter was applied, not ignored


@pytest.mark.llamacpp
def test_an_adapter_the_gguf_lora_cannot_hold_is_served_merged_with_our_answers(
        tiny_model_dir: Path, adapter: Path, tmp_path: Path) -> None:
    """rsLoRA scales by alpha/sqrt(r), which a GGUF LoRA (alpha/r) cannot say: llama.cpp serves the merged GGUF."""
    rslora = shutil.copytree(adapter, tmp_path / "rslora")
    config = json.loads((rslora / "adapter_config.json").read_text())
    (rslora / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    pairs = _same_greedy_answers(tiny_model_dir, rslora, tmp_path / "cache", ("ft",), 24, served_as="merged")
    assert all(theirs == ours for theirs, ours in pairs), pairs


@pytest.mark.llamacpp
def test_llama_cpp_with_the_gguf_lora_answers_as_our_engine_on_smollm2(tmp_path: Path) -> None:
    """The real SmolLM2-135M (converted from its embedded GGUF) with a random r=8 adapter: 48 greedy tokens
    per question, llama.cpp f32 (base GGUF + GGUF LoRA, f32 KV cache) against our fp32 merged engine.
    Minutes on 2 cores (the conversion and the exports); not marked integration, so that `-m integration`
    never needs the optional extra."""
    from tools.models.catalogue import resolve_base_model

    base = resolve_base_model("smollm2-135m", tmp_path / "home")
    adapter_dir = random_adapter(base, tmp_path / "adapter", rank=8, alpha=16)
    pairs = _same_greedy_answers(base, adapter_dir, tmp_path / "cache", ("ft",), 48)
    assert all(theirs == ours for theirs, ours in pairs), pairs
    assert all(ours.completion_tokens > 8 for _, ours in pairs)


@pytest.mark.llamacpp
def test_http_with_llama_cpp_lists_models_and_streams_what_it_answers(tiny_model_dir: Path, adapter: Path,
                                                                     tmp_path: Path) -> None:
    from openai import NotFoundError, OpenAI

    from tools.serving.llamacpp_engine import LlamaCppServer
    from tools.serving.server import build_app, serve_in_background

    server = LlamaCppServer(str(tiny_model_dir), {"ft-v1": str(adapter)}, cache_dir=tmp_path / "cache",
                            base_name="tiny-base", aliases={"ft": "ft-v1"}, system_prompts={"ft-v1": "Be brief."})
    with serve_in_background(build_app(server)) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["tiny-base", "ft-v1", "ft"]
        messages = [{"role": "user", "content": QUESTIONS[0]}]
        plain = client.chat.completions.create(model="ft", messages=messages, temperature=0, max_tokens=16)
        streamed = client.chat.completions.create(model="ft", messages=messages, temperature=0, max_tokens=16,
                                                  stream=True, stream_options={"include_usage": True})
        chunks = list(streamed)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert plain.model == "ft-v1" and plain.choices[0].message.content == text and text
        assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
        seeded = [client.chat.completions.create(model="ft-v1", messages=messages, temperature=1.0, seed=7,
                                                 max_tokens=16).choices[0].message.content for _ in range(2)]
        assert seeded[0] == seeded[1]
        with pytest.raises(NotFoundError, match="not served here"):
            client.chat.completions.create(model="nope", messages=messages, max_tokens=4)


def _version(name: str, number: int, status: str, adapter_dir: Path, base_dir: Path):
    from tools.stores.model_registry import ModelVersion
    from tools.stores.sql_table import now_iso

    return ModelVersion(
        name=f"{name}-v{number}", family=name, version=number, base_model="tiny", base_model_path=str(base_dir),
        subject="quantum error correction", status=status, gates_passed=True, adapter_path=str(adapter_dir),
        merged_path=None, card_path="", dataset_hash="h", job_id=f"job-{number}", round=1, created_at=now_iso(),
        sources=[], config={}, metrics={})


@pytest.mark.llamacpp
def test_cli_serves_the_registry_with_llama_cpp_exports_once_and_follows_it(
        tiny_model_dir: Path, adapter: Path, home: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """`ftagent serve --engine llamacpp` (f16, the default): production answers to the family name, the
    GGUF files go to <home>/gguf-cache and are said; a version registered while serving answers after
    /admin/reload; a second start reuses every file."""
    import httpx
    from openai import OpenAI

    from agent.service import JobService
    from tools.serving.server import serve_in_background
    from tools.stores.model_registry import ModelRegistry

    registry = ModelRegistry(home / "ftagent.sqlite")
    registry.register(_version("ft-tiny-qec", 1, "production", adapter, tiny_model_dir))
    later = random_adapter(tiny_model_dir, tmp_path / "v2", seed=5)
    seen: dict = {}

    def serve_briefly(self, host: str = "", port: int = 0, names: tuple = (), app=None) -> None:
        with serve_in_background(app) as url:
            client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=60)
            ask = [{"role": "user", "content": QUESTIONS[0]}]
            seen["models"] = [m.id for m in client.models.list().data]
            seen["family"] = client.chat.completions.create(model="ft-tiny-qec", messages=ask, max_tokens=4).model
            if "reload" not in seen:
                registry.register(_version("ft-tiny-qec", 2, "staging", later, tiny_model_dir))
                seen["reload"] = httpx.post(url.removesuffix("/v1") + "/admin/reload", timeout=120).json()
                seen["v2"] = client.chat.completions.create(model="ft-tiny-qec-v2", messages=ask,
                                                            max_tokens=4).choices[0].message.content

    monkeypatch.setattr(JobService, "serve", serve_briefly)
    assert main(["serve", "--engine", "llamacpp", "--reload-interval", "0"]) == 0
    first = " ".join(capsys.readouterr().out.split())
    assert seen["models"] == ["tiny", "ft-tiny-qec-v1", "ft-tiny-qec"] and seen["family"] == "ft-tiny-qec-v1"
    assert seen["reload"]["loaded"] == ["ft-tiny-qec-v2"] and seen["v2"]
    cached = sorted(p.name for p in (home / "gguf-cache").iterdir())
    assert len(cached) == 3 and sum("-lora-f32.gguf" in n for n in cached) == 2, cached
    assert "llama.cpp: base GGUF" in first and "(wrote in" in first and "lora GGUF" in first
    assert "serving tiny, ft-tiny-qec-v1, ft-tiny-qec at http://127.0.0.1:8000/v1 with llama.cpp" in first
    assert main(["serve", "--engine", "llamacpp", "--reload-interval", "0"]) == 0
    second = " ".join(capsys.readouterr().out.split())
    assert "(wrote in" not in second and second.count("(reused, from") == 3  # base, v1 and v2
