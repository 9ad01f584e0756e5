"""Benchmark: export the embedded SmolLM2-135M with a LoRA adapter, and check each output against a reference.

Prints JSON lines:
- `llama_cpp_match`: the base written as f32 GGUF vs llama.cpp's own SmolLM2 file, tensor by tensor after
  dequantising theirs (equal tensors / all; proves names and the q/k permutation);
- `merge`: merged safetensors (time, size, max |logit| difference from base+adapter);
- one `gguf` line per dtype: write time, size, and the file read back by transformers vs the merged model
  (max |logit| difference relative to the largest logit, next-token agreement over the prompt).

    .venv/bin/python bench/bench_export.py [--work /tmp/ftagent-export-bench] [--lora-r 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

PROMPT = ("Quantum error correction protects logical qubits by spreading them over many physical qubits; "
          "the surface code tolerates error rates near 1% and needs 17 qubits for distance three.")


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def llama_cpp_match(base: Path, work: Path) -> dict:
    import gguf
    import numpy as np

    from tools.models.catalogue import CATALOGUE, _package_dir
    from tools.serving.gguf_export import write_gguf

    model = CATALOGUE[0]
    started = time.perf_counter()
    ours = gguf.GGUFReader(str(write_gguf(base, work / "base-f32.gguf", "f32")))
    seconds = time.perf_counter() - started
    theirs = {t.name: t for t in gguf.GGUFReader(str(_package_dir(model.gguf_package) / model.gguf_file)).tensors}
    equal = 0
    for tensor in ours.tensors:
        original = theirs[tensor.name]
        expected = gguf.quants.dequantize(original.data, original.tensor_type)
        equal += bool(np.array_equal(np.asarray(tensor.data).reshape(expected.shape), expected))
    return {"bench": "llama_cpp_match", "tensors": len(ours.tensors), "equal": equal,
            "theirs": len(theirs), "write_seconds": round(seconds, 2)}


def random_adapter(base: Path, target: Path, rank: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), LoraConfig(
        r=rank, lora_alpha=2 * rank, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.save_pretrained(str(target))
    return target


def logits(model, tokenizer):
    import torch

    with torch.no_grad():
        return model(tokenizer(PROMPT, return_tensors="pt")["input_ids"]).logits[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--lora-r", type=int, default=8)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ftagent-export-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    from transformers import AutoModelForCausalLM

    from tools.models.catalogue import resolve_base_model
    from tools.models.loading import load_for_inference
    from tools.serving.export import export_merged
    from tools.serving.gguf_export import write_gguf

    base = resolve_base_model("smollm2-135m", work / "home")
    _emit(llama_cpp_match(base, work))
    adapter = random_adapter(base, work / "adapter", args.lora_r)
    started = time.perf_counter()
    merged_dir = export_merged(str(base), adapter, work / "merged")
    merge_seconds = time.perf_counter() - started
    tuned, tokenizer = load_for_inference(str(base), str(adapter))
    reference = logits(tuned, tokenizer)
    merged = logits(AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval(), tokenizer)
    _emit({"bench": "merge", "seconds": round(merge_seconds, 2), "bytes": _folder_size(merged_dir),
           "max_abs_logit_diff": float((merged - reference).abs().max())})
    scale = float(merged.abs().max())
    for dtype in ("f32", "f16", "q8_0"):
        started = time.perf_counter()
        path = write_gguf(merged_dir, work / f"merged-{dtype}.gguf", dtype)
        seconds = time.perf_counter() - started
        reloaded = logits(AutoModelForCausalLM.from_pretrained(str(work), gguf_file=path.name).eval(), tokenizer)
        _emit({"bench": "gguf", "dtype": dtype, "seconds": round(seconds, 2), "bytes": path.stat().st_size,
               "max_abs_logit_diff_relative": round(float((reloaded - merged).abs().max()) / scale, 5),
               "next_token_agreement": round(float((reloaded.argmax(-1) == merged.argmax(-1)).float().mean()), 4)})


if __name__ == "__main__":
    main()
