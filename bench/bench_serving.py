"""Serving throughput on loopback, printed as JSON lines.

The real server (`tools.serving.server`, uvicorn on 127.0.0.1, a free port) serves a base model with one
LoRA adapter (random weights, r=8, all linear layers: the same compute as a tuned adapter); the
official `openai` client sends a fixed number of greedy chat requests from 1 and then 4 concurrent
clients, with micro-batching off (`max_batch_size=1`: one generate call at a time, 4 clients queue)
and on (concurrent greedy requests decode as one left-padded batch). Without HTTP, the same questions go,
taking turns question by question (so a drift in load hits all alike), to our fast path (the adapter merged
into a copy of the weights, in the server's `--precision`, in bf16, int8 and int4), with llama-cpp-python
installed to llama.cpp (tools.serving.llamacpp_engine: the base as GGUF of each `--llamacpp-dtypes`, the
adapter as a GGUF LoRA, as many threads as torch's; without it one line says it was skipped and why), and to
plain transformers `generate` on a PeftModel of the same adapter (fp32, unmerged: what a user would write):
one line each with tokens per wall second and per CPU second (the steadier figure on a shared machine), and
one comparison line per other engine (`{"event":"comparison","vs":"transformers-generate","tokens_per_s_ratio":R}`).
Then one line per (batching, concurrency) level (requests/s, generated tokens/s, latencies, and how many
generate calls of each batch size ran), one with batching on where the 4 clients alternate between the
adapter and the base model (peft's mixed-adapter rows), one for streaming time to first token. Each
line carries the 1-minute load average, because on a shared machine it explains most of the spread.
The model is the embedded SmolLM2-135M when `resolve_base_model("smollm2-135m", home)` works (the
first run converts the GGUF into the home, ~45 s), else the tiny random test model; the `model` field
says which.

Run: `.venv/bin/python bench/bench_serving.py [--home DIR] [--requests 8] [--max-tokens 48] [--threads 1]
[--precision auto|fp32|bf16|int8|int4] [--engines bf16,int8,int4] [--llamacpp-dtypes f16] [--direct-only]`;
on a shared machine pin it (`taskset -c 1 ... --threads 1`): the lines say which CPUs it was allowed
(`pinned_cpus`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.hardware import machine_report
from tools.serving.server import create_app, serve_in_background

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "What is a stabilizer code?",
    "Explain the surface code in two sentences.",
    "Why do qubits need error correction?",
    "What is a logical qubit?",
    "How does a syndrome measurement work?",
    "Name one decoder for the surface code.",
)


def _tiny_model_module():
    """The tests' tiny random Llama helpers, loaded from their file (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("tiny_model", REPO / "tests" / "helpers" / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def base_model(home: Path, scratch: Path) -> tuple[Path, str]:
    """(model folder, label): the embedded SmolLM2 if it can be had, else the tiny model."""
    from tools.models.catalogue import resolve_base_model

    try:
        return resolve_base_model("smollm2-135m", home), "smollm2-135m (embedded GGUF, fp32 safetensors)"
    except Exception as error:  # noqa: BLE001 - any failure means "fall back", and the label says why
        tiny = _tiny_model_module().build_tiny_model(scratch / "tiny")
        return tiny, f"tiny-random-llama (SmolLM2 unavailable: {type(error).__name__})"


def _one_request(client: Any, model: str, index: int, max_tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model=model, temperature=0, max_tokens=max_tokens,
        messages=[{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}])
    return time.perf_counter() - started, reply.usage.completion_tokens


def run_level(client: Any, models: tuple[str, ...], concurrency: int, requests: int,
              max_tokens: int) -> dict[str, Any]:
    """A fixed number of requests from `concurrency` client threads; request i asks models[i % len]."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: _one_request(client, models[i % len(models)], i, max_tokens),
                                range(requests)))
    seconds = time.perf_counter() - started
    latencies, tokens = [r[0] for r in results], sum(r[1] for r in results)
    return {"concurrency": concurrency, "models": "+".join(models), "requests": requests, "seconds": round(seconds, 2),
            "requests_per_s": round(requests / seconds, 3), "generated_tokens": tokens,
            "generated_tokens_per_s": round(tokens / seconds, 1),
            "latency_p50_s": round(statistics.median(latencies), 3), "latency_max_s": round(max(latencies), 3)}


def time_to_first_token(client: Any, model: str, max_tokens: int, repeats: int = 3) -> dict[str, Any]:
    """Streaming: seconds until the first content chunk, and the whole stream."""
    first, total = [], []
    for index in range(repeats):
        started, first_at = time.perf_counter(), None
        stream = client.chat.completions.create(
            model=model, temperature=0, max_tokens=max_tokens, stream=True,
            messages=[{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}])
        for chunk in stream:
            if first_at is None and chunk.choices and chunk.choices[0].delta.content:
                first_at = time.perf_counter() - started
        first.append(first_at or float("nan"))
        total.append(time.perf_counter() - started)
    return {"stream": True, "requests": repeats, "ttft_median_s": round(statistics.median(first), 3),
            "stream_median_s": round(statistics.median(total), 3)}


def _prompt_ids(tokenizer: Any, index: int) -> Any:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}],
                                           tokenize=False, add_generation_prompt=True)
    return tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]


@dataclass
class DirectEngine:
    """One way to generate without HTTP, and what it has generated so far (wall and CPU seconds)."""

    name: str
    model: Any
    tokenizer: Any
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    tokens: int = 0
    requests: int = 0

    greedy_loop: bool = False  # tools.models.decoding.greedy_decode instead of generate

    def generate(self, index: int, new_tokens: int, count: bool = True) -> None:
        import torch

        from tools.models.decoding import greedy_decode

        ids, pad = _prompt_ids(self.tokenizer, index), self.tokenizer.pad_token_id
        started, cpu_started = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            if self.greedy_loop:
                generated = greedy_decode(self.model, ids, None, new_tokens, self.tokenizer.eos_token_id, pad)
            else:
                output = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                             max_new_tokens=new_tokens, pad_token_id=pad)
                generated = output[:, ids.shape[1]:]
        if count:
            self.seconds += time.perf_counter() - started
            self.cpu_seconds += time.process_time() - cpu_started
            self.tokens += generated.shape[1]
            self.requests += 1

    def line(self) -> dict[str, Any]:
        return {"direct": True, "engine": self.name, "requests": self.requests, "seconds": round(self.seconds, 2),
                "generated_tokens": self.tokens, "generated_tokens_per_s": round(self.tokens / self.seconds, 1),
                "tokens_per_cpu_s": round(self.tokens / self.cpu_seconds, 1),
                "load_average_1m": round(os.getloadavg()[0], 2)}


WEIGHTS = {"int8": "int8 weights, bf16 activations",
           "int4": "int4 weights in groups of 32, int8 head rescoring an int4 copy, bf16 activations"}


def ours(base: Path, adapter: Path, precision: str) -> DirectEngine:
    """Our fast path without HTTP, lock or streaming (the floor the server adds to): the adapter merged
    into a copy of the weights, in `precision` ("auto" is what the server runs for one version); int4 and
    int8 decode with our greedy loop as the server does (int4's rescored head needs it), one row through the
    one-row decoder (tools.models.llama_decoder) where the architecture has one."""
    from tools.models.decoding import has_greedy_path
    from tools.models.loading import inference_dtype, load_for_inference

    model, tokenizer = load_for_inference(str(base), str(adapter), precision=precision, merge=True)
    weights = WEIGHTS.get(precision) or str(inference_dtype(precision))[6:]
    loop = has_greedy_path(model)
    path = ", one-row decoder" if getattr(model, "one_row_decoder", None) else ", greedy loop" if loop else ""
    return DirectEngine(f"ftagent (merged, {precision}: {weights}{path})", model, tokenizer, greedy_loop=loop)


def transformers_generate(base: Path, adapter: Path) -> DirectEngine:
    """The plain way: transformers `generate` on a PeftModel of the same adapter (fp32, unmerged)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                                      str(adapter)).eval()
    return DirectEngine("transformers-generate (PeftModel, fp32)", model, tokenizer)


def side_by_side(engines: list[DirectEngine], max_tokens: int, repeats: int) -> None:
    """Each engine answers the same questions, taking turns question by question (a drift in the machine's
    load then hits every engine alike), after one warm-up call each."""
    for engine in engines:
        engine.generate(0, 4, count=False)
    for index in range(repeats):
        for engine in engines:
            engine.generate(index, max_tokens)


def comparison(engine: DirectEngine, baseline: DirectEngine, http_single: dict[str, Any] | None) -> dict[str, Any]:
    line = {"event": "comparison", "vs": "transformers-generate", "engine": engine.name,
            "tokens_per_s_ratio": round(engine.tokens / engine.seconds / (baseline.tokens / baseline.seconds), 2),
            "tokens_per_cpu_s_ratio": round(engine.tokens / engine.cpu_seconds
                                            / (baseline.tokens / baseline.cpu_seconds), 2)}
    if http_single:
        line["http_1_client_tokens_per_s_ratio"] = round(
            http_single["generated_tokens_per_s"] / (baseline.tokens / baseline.seconds), 2)
    return {**line, "load_average_1m": round(os.getloadavg()[0], 2)}


@dataclass
class LlamaCppEngine(DirectEngine):
    """llama.cpp through our llama.cpp engine (tools.serving.llamacpp_engine.LlamaCppServer, held in `model`)
    without HTTP: the base model as GGUF and the adapter as a GGUF LoRA, greedy."""

    def generate(self, index: int, new_tokens: int, count: bool = True) -> None:
        from tools.serving.server import ChatCompletionRequest

        request = ChatCompletionRequest(model="bench-adapter", temperature=0, max_tokens=new_tokens,
                                        messages=[{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}])
        job = self.model.prepare(request, None)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = self.model.generate(job)
        if count:
            self.seconds += time.perf_counter() - started
            self.cpu_seconds += time.process_time() - cpu_started
            self.tokens += result.completion_tokens
            self.requests += 1


def llama_cpp_engines(base: Path, adapter: Path, cache: Path, dtypes: list[str],
                      threads: int) -> tuple[list[DirectEngine], dict[str, Any] | None]:
    """(llama.cpp engines, None), one per GGUF dtype of the base; or ([], a line saying why there are none):
    llama-cpp-python is an optional extra (it compiles llama.cpp from source on install)."""
    from tools.serving.llamacpp_engine import LlamaCppServer, LlamaCppUnavailable, load_llama_cpp

    try:
        version = load_llama_cpp().__version__
    except LlamaCppUnavailable as missing:
        return [], {"engine": "llama.cpp", "skipped": str(missing)}
    engines: list[DirectEngine] = []
    for dtype in dtypes:
        server = LlamaCppServer(str(base), {"bench-adapter": str(adapter)}, cache_dir=cache, base_name="base",
                                threads=threads, gguf_dtype=dtype)
        kinds = {gguf.role for gguf in server.gguf_files}
        adapter_kind = "GGUF LoRA f32" if "lora" in kinds else "merged into the GGUF"
        engines.append(LlamaCppEngine(f"llama.cpp (llama-cpp-python {version}; base GGUF {dtype}, adapter as "
                                      f"{adapter_kind}; {threads} threads)", server, None))
    return engines, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("FTAGENT_HOME", "/tmp/ftagent-bench"),
                        help="ftagent home holding (or receiving) the converted SmolLM2")
    parser.add_argument("--requests", type=int, default=8, help="requests per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--max-batch", type=int, default=8, help="max_batch_size of the batching run")
    parser.add_argument("--direct-requests", type=int, default=4, help="questions per engine without HTTP")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8", "int4"),
                        help="the server's precision (the direct lines add int8 and int4 either way)")
    parser.add_argument("--direct-only", action="store_true", help="only the engines without HTTP")
    parser.add_argument("--engines", default="bf16,int8,int4",
                        help="precisions of our direct engines besides the server's (comma-separated)")
    parser.add_argument("--llamacpp-dtypes", default="f16",
                        help="with llama-cpp-python installed: the base GGUF dtypes of the llama.cpp engine, one "
                             "line each (comma-separated: f16, f32, q8_0)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        base, label = base_model(Path(args.home), Path(scratch))
        adapter = _tiny_model_module().random_adapter(base, Path(scratch) / "adapter", rank=8, alpha=16)
        common = {"bench": "serving", "model": label, "served": "bench-adapter (LoRA r=8 on the base)",
                  "max_tokens": args.max_tokens, "torch_threads": torch.get_num_threads(),
                  "cpu_count": os.cpu_count(), "pinned_cpus": sorted(os.sched_getaffinity(0)),
                  "load_average_1m": round(os.getloadavg()[0], 2)}
        print(json.dumps({**machine_report(), "pinned_cpus": sorted(os.sched_getaffinity(0))}), flush=True)
        precisions = dict.fromkeys([args.precision, *filter(None, args.engines.split(","))])
        llama_cpp, skipped = llama_cpp_engines(base, adapter, Path(scratch) / "gguf",
                                               list(filter(None, args.llamacpp_dtypes.split(","))),
                                               torch.get_num_threads())
        engines = [*(ours(base, adapter, precision) for precision in precisions), *llama_cpp,
                   transformers_generate(base, adapter)]
        side_by_side(engines, args.max_tokens, args.direct_requests)
        for engine in engines:
            print(json.dumps({**common, **engine.line()}), flush=True)
        *our_engines, plain = engines
        del engines
        if skipped:
            print(json.dumps({**common, **skipped}), flush=True)
        http_single = None if args.direct_only else serve_levels_apart(base, adapter, common, args)
        for engine in our_engines:
            print(json.dumps(comparison(engine, plain, http_single if engine is our_engines[0] else None)),
                  flush=True)


def serve_levels_apart(base: Path, adapter: Path, common: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """`serve_levels` in a child process, as `ftagent serve` runs beside its clients: this process has run
    torch on its main thread (the engines above), and a second thread running torch in one process slows
    every one of them (tools/serving/model_thread.py)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(serve_levels, (base, adapter, common, args))


def serve_levels(base: Path, adapter: Path, common: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The HTTP levels (batching off, then on); returns the 1-client level without batching."""
    from openai import OpenAI

    http_single: dict[str, Any] = {}
    for max_batch in (1, args.max_batch):
        app = create_app(str(base), {"bench-adapter": str(adapter)}, base_name="base",
                         max_batch_size=max_batch, precision=args.precision)
        with serve_in_background(app) as url:
            client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=300)
            _one_request(client, "bench-adapter", 0, 4)  # warm-up
            levels = [(1, ("bench-adapter",)), (4, ("bench-adapter",))]
            if max_batch > 1:
                levels.append((4, ("bench-adapter", "base")))
            for concurrency, models in levels:
                before = _batch_sizes(app)
                level = run_level(client, models, concurrency, args.requests, args.max_tokens)
                common["load_average_1m"] = round(os.getloadavg()[0], 2)  # the machine is shared
                print(json.dumps({**common, "precision": args.precision, "max_batch_size": max_batch, **level,
                                  "generate_calls_by_batch_size": _batch_sizes(app) - before}), flush=True)
                if max_batch == 1 and concurrency == 1:
                    http_single = level
            if max_batch > 1:
                print(json.dumps({**common, **time_to_first_token(client, "bench-adapter", args.max_tokens)}),
                      flush=True)
    return http_single


def _batch_sizes(app: Any) -> Counter:
    """{rows: generate calls} so far (empty without batching: every call then has one row)."""
    batcher = app.state.server.batcher
    return Counter() if batcher is None else Counter(batcher.batch_sizes)


if __name__ == "__main__":
    main()
