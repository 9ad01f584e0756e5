"""`ftagent`: parse, call the service, print progress and results, map errors to clear messages."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from agent.cli_extras import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_JOB_FAILED,
    EXIT_NOT_FOUND,
    add_extra_commands,
    add_json_flags,
    describe_commands,
    dispatch_extra,
)
from agent.service import JobBusy, JobFailed, JobService
from agent.settings import resolve_settings
from graphs.job_file import ResolvedJob, resolve_job, spec_yaml
from graphs.spec import RequestError, understood_line
from graphs.state import JobState
from tools.models.catalogue import BaseModelError
from tools.package_data import DEMO_CORPUS
from tools.refusals import RefusedToLoad
from tools.stores.job_store import UnknownJob
from tools.stores.model_registry import RegistryError, RegistryRefusal
from tools.stores.sql_table import DatabaseUnavailable


class ProgressPrinter:
    """An event listener: a line per phase or decision, a progress bar with ETA while training (rich, on the
    console) and for the long tasks before and after it (documents downloaded, chunks embedded, QA
    generated, answers evaluated: tqdm on stderr). `bars`: None = only when stderr is a terminal; False
    (--quiet) = no bars at all, the lines only."""

    def __init__(self, console: Console, bars: bool | None = None, stream: Any = None) -> None:
        self.console = console
        self.stream = stream or sys.stderr
        self.quiet = bars is False
        self.bars = self.stream.isatty() if bars is None else bars
        self.progress: Progress | None = None
        self.task = None
        self.tick_bar: Any = None
        self.tick_task: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if event["kind"] == "progress":
            self._tick(event["phase"], event["data"])
            return
        self._close_tick()
        if event["kind"] == "step":
            if not self.quiet:
                self._step(event["data"])
            return
        self._close_bar()
        if event["kind"] in ("phase", "decision", "gate", "skip"):
            why = event.get("data", {}).get("why")
            message = f"{event['message']}: {why}" if why and why not in event["message"] else event["message"]
            self.console.print(f"[bold]{event['phase']:>10}[/bold]  {escape(message)}", highlight=False)

    def _tick(self, phase: str, data: dict[str, Any]) -> None:
        if not self.bars:
            return
        if self.tick_task != data["task"]:
            from tqdm import tqdm

            self._close_tick()
            self.tick_bar = tqdm(total=data["total"], desc=f"{phase:>10}  {data['task']}", file=self.stream,
                                 leave=False, dynamic_ncols=True, mininterval=0.2, disable=False)
            self.tick_task = data["task"]
        self.tick_bar.total = data["total"]
        self.tick_bar.update(data["done"] - self.tick_bar.n)
        if data["done"] >= data["total"]:
            self._close_tick()

    def _close_tick(self) -> None:
        if self.tick_bar is not None:
            self.tick_bar.close()
            self.tick_bar, self.tick_task = None, None

    def _step(self, data: dict[str, Any]) -> None:
        if self.progress is None:
            self.progress = Progress(TextColumn("   training"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total}"),
                                     TextColumn("loss {task.fields[loss]:.3f}"),
                                     TextColumn("{task.fields[tps]:.0f} tok/s"),
                                     TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self.progress.start()
            self.task = self.progress.add_task("train", total=data["total_steps"], loss=data["loss"], tps=0.0)
        self.progress.update(self.task, completed=data["step"], total=data["total_steps"], loss=data["loss"],
                             tps=data["tokens_per_second"])

    def _close_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def close(self) -> None:
        self._close_tick()
        self._close_bar()


def summary_table(state: JobState) -> Table:
    table = Table(title=f"job {state.get('job_id')}", show_header=False)
    curation, dataset = state.get("curation"), state.get("dataset")
    training, evaluation = state.get("training"), state.get("evaluation")
    dropped = (len(curation.documents_dropped) if curation else 0) + len(state.get("skipped", []))
    table.add_row("documents", f"{curation.documents_kept if curation else 0} kept, {dropped} dropped or skipped")
    if dataset:
        table.add_row("examples", ", ".join(f"{k} {v}" for k, v in dataset.counts.items()))
    if training:
        table.add_row("loss", f"train {training.train_loss:.3f}, val {training.val_loss or float('nan'):.3f}")
    if evaluation:
        base, tuned = evaluation.base, evaluation.tuned
        for key in ("answer_nll", "token_f1", "rouge_l", "general_perplexity"):
            if base.get(key) is not None:
                table.add_row(key, f"base {base[key]:.3f} → tuned {tuned[key]:.3f}")
        table.add_row("gates", "; ".join(f"{'PASS' if g.passed else 'FAIL'} {g.name}" for g in evaluation.gates))
    if model := state.get("model"):
        table.add_row("model", f"{model.name} ({model.status})")
        table.add_row("adapter", model.adapter_path)
    table.add_row("outcome", state.get("outcome", ""))
    return table


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ftagent")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftagent", description="Fine-tune a language model from one sentence.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--home", help="home folder (default ~/.ftagent or $FTAGENT_HOME)")
    parser.add_argument("--threads", type=int, help="CPU threads for training and inference")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help='run a job: ftagent run "fine-tune SmolLM2 on <subject>" --docs PATH')
    add_job_arguments(run)
    status = commands.add_parser("status", help="a job's status (or all jobs)")
    status.add_argument("job", nargs="?")
    resume = commands.add_parser("resume", help="continue an interrupted job from its last checkpoint")
    resume.add_argument("job")
    add_quiet_flag(resume)
    cancel = commands.add_parser("cancel", help="stop a job (queued: at once; running: at its next step)")
    cancel.add_argument("job")
    commands.add_parser("models", help="list registered models")
    show = commands.add_parser("show", help="a model's card")
    show.add_argument("model")
    ask = commands.add_parser("ask", help="ask a registered model a question")
    ask.add_argument("model")
    ask.add_argument("question")
    ask.add_argument("--max-new-tokens", type=int, default=128)
    weights = ask.add_mutually_exclusive_group()
    weights.add_argument("--int8", action="store_true", help="CPU: answer with int8 weight-only layers (faster; "
                         "answers close to fp32's, not equal)")
    weights.add_argument("--int4", action="store_true", help="CPU: answer with int4 layers and an int8 head "
                         "(fastest; general perplexity as fp32's within 1%%)")
    evaluate = commands.add_parser("eval", help="evaluate a model (tuned vs its base) on a JSONL question/answer set")
    evaluate.add_argument("model", help="a registered model, 'base', or a local adapter/model folder")
    evaluate.add_argument("--set", dest="set_path", required=True, metavar="FILE",
                          help='JSONL: {"question", "answer"} per line, or chat records {"messages": [...]}')
    evaluate.add_argument("--limit", type=int, help="at most this many examples")
    evaluate.add_argument("--generate", type=int, help="answers generated for ROUGE-L/F1/format (default 40)")
    evaluate.add_argument("--max-new-tokens", type=int)
    evaluate.add_argument("--no-general", action="store_true", help="skip the general-capability regression check")
    evaluate.add_argument("--no-judge", action="store_true",
                          help="do not grade answers with the configured chat model (LLM judge)")
    add_quiet_flag(evaluate)
    _add_registry_commands(commands)
    _add_export_command(commands)
    _add_push_command(commands)
    _add_door_commands(commands)
    add_extra_commands(commands, add_job_arguments)
    add_json_flags(commands)
    describe_commands(commands)
    return parser


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's arguments, shared by `run` and `submit`; defaults in the help are the job spec's."""
    from graphs.spec import JobSpec, Training

    training, spec = Training(), JobSpec.model_fields
    parser.add_argument("sentence", nargs="?", help="what to fine-tune, e.g. 'fine-tune SmolLM2 on soil "
                        "science' (default: request: in the --config job file)")
    parser.add_argument("--config", metavar="JOB.yaml", help="a job file: request:, dataset:, base_model:, "
                        "training: {...} and any other job spec key")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="set any job spec key, typed by the spec (repeatable; wins over the job file and "
                             "the other options), e.g. --set training.epochs=3 --set generation.generator=llm")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved job spec as YAML (each value's origin as a comment) and exit")
    parser.add_argument("--docs", help="folder (or file) of .md/.txt/.html/.pdf documents")
    parser.add_argument("--demo", action="store_true", help="use the demo corpus in tools/eval_sets/demo_corpus")
    parser.add_argument("--dataset", help="train on your own dataset instead of documents: chat-messages, "
                        "Alpaca or ShareGPT JSONL, a folder of <split>.jsonl, or a folder saved by "
                        "datasets.save_to_disk (research and generation are skipped)")
    parser.add_argument("--sources", help="comma-separated: arxiv,pubmed,wikipedia,web,local "
                        "(default: local with --docs, web with --url, else chosen from the subject)")
    parser.add_argument("--url", dest="urls", action="append", metavar="URL",
                        help="a web page or PDF to read (repeatable)")
    parser.add_argument("--model", dest="base_model", help="base model: a catalogue name, a Hugging Face "
                        f"folder or a Hub id in the local cache (default: {spec['base_model'].default})")
    parser.add_argument("--epochs", type=float, help=f"training epochs (default: {training.epochs:g})")
    parser.add_argument("--learning-rate", type=float, help=f"LoRA learning rate (default: {training.learning_rate:g})")
    parser.add_argument("--lora-r", type=int, help=f"LoRA rank (default: {training.lora_r})")
    parser.add_argument("--max-steps", type=int, help="stop training after this many steps (default: the epochs)")
    parser.add_argument("--nproc", type=_process_count, metavar="N|auto",
                        help="training processes, started with torchrun (DDP; gloo on a CPU): auto = one per "
                             f"visible GPU, 1 without a GPU (default: {training.nproc})")
    parser.add_argument("--max-rounds", type=int,
                        help=f"critic rounds after the first (default: {spec['max_rounds'].default})")
    parser.add_argument("--min-nll-improvement", type=float, help="gate: tuned answer NLL this fraction below "
                        "base (default: 0.05)")
    parser.add_argument("--max-ppl-increase", type=float, help="gate: general perplexity at most this fraction "
                        "above base (default: 0.05)")
    parser.add_argument("--merge", action="store_true", help="also save merged weights")
    add_quiet_flag(parser)


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars (the phase and decision lines "
                        "only); bars are drawn only on a terminal anyway")


def _add_door_commands(commands: Any) -> None:
    api = commands.add_parser("api", help="HTTP jobs API (and the queue worker) at /api/v1/fine-tuning, docs at /docs")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8321)
    api.add_argument("--token", help=argparse.SUPPRESS)  # visible in `ps`: kept for old scripts only
    api.add_argument("--token-file", metavar="FILE",
                     help="a file holding the admin bearer token (default $FTAGENT_API_TOKEN, else "
                          "<home>/api_token); users get their own with `ftagent token add NAME`")
    api.add_argument("--no-worker", action="store_true", help="only queue jobs; an `ftagent worker` runs them")
    worker = commands.add_parser("worker", help="run queued jobs one at a time (resumes interrupted ones first)")
    worker.add_argument("--once", action="store_true", help="exit when the queue is empty")
    add_quiet_flag(worker)
    chat = commands.add_parser("chat", help="talk to the agent: start, follow and stop jobs, ask models")
    chat.add_argument("--user", help="your name as the jobs' owner (default: the OS user)")
    token = commands.add_parser("token", help="API tokens, one per user: add NAME [--admin], list, revoke NAME")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    add = token_commands.add_parser("add", help="make a token for NAME and print it (shown only once)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may see and cancel every user's jobs")
    token_commands.add_parser("list", help="users with a live token")
    revoke = token_commands.add_parser("revoke", help="revoke NAME's token at once")
    revoke.add_argument("name")
    mcp = commands.add_parser("mcp", help="serve the agent over the Model Context Protocol (stdio, or streamable "
                              "HTTP with --http) for other agents",
                              description="Serve ftagent's tools (start_job, job_status, job_events, list_models, "
                                          "show_model, ask_model, cancel_job) over MCP on stdin/stdout, or with "
                                          "--http at http://HOST:PORT/mcp behind bearer tokens (ftagent token add "
                                          "NAME), running jobs in a worker thread. Example client config: "
                                          '{"command": "ftagent", "args": ["mcp"]}')
    mcp.add_argument("--user", help="stdio: owner of the jobs it starts (default: the OS user)")
    mcp.add_argument("--no-worker", action="store_true", help="only queue jobs; an `ftagent worker` runs them")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio; each request needs "
                     "'Authorization: Bearer <token>' and acts for that token's user")
    mcp.add_argument("--host", default="127.0.0.1", help="--http: address to bind (default: 127.0.0.1)")
    mcp.add_argument("--port", type=int, default=8323, help="--http: port (default: 8323)")
    mcp.add_argument("--token-file", metavar="FILE", help="--http: a file holding the admin token (default "
                     "$FTAGENT_API_TOKEN, else <home>/api_token, as for `ftagent api`)")


def _add_export_command(commands: Any) -> None:
    from tools.serving.export import EXPORT_FORMATS, GGUF_DTYPES, SAFETENSORS_DTYPES

    export = commands.add_parser("export", help="write a model version for vLLM/transformers (merged safetensors) "
                                 "or llama.cpp (GGUF)")
    export.add_argument("model")
    export.add_argument("--format", dest="export_format", choices=EXPORT_FORMATS, default="safetensors")
    export.add_argument("--dtype", help=f"safetensors: {', '.join(SAFETENSORS_DTYPES)} (default f32); "
                        f"gguf: {', '.join(GGUF_DTYPES)} (default f16)")
    export.add_argument("--out", help="a new or empty folder (safetensors), a .gguf file or a folder (gguf; a "
                        "path ending in / is a folder); an earlier export there is replaced, anything else "
                        "is refused; default under <home>/models/<model>/")


def _add_push_command(commands: Any) -> None:
    push = commands.add_parser("push", help="upload a model version's folder (adapter, tokenizer, README.md card) "
                               "to a Hugging Face Hub repo with huggingface_hub (needs network and HF_TOKEN)",
                               description="Upload a registered model version's own files (adapter, tokenizer, "
                                           "README.md card; not its merged/ export) to a Hugging Face Hub model "
                                           "repo in one commit, creating the repo when missing. Needs the network "
                                           "and a write token (HF_TOKEN or `hf auth login`; HF_ENDPOINT for "
                                           "another Hub).")
    push.add_argument("model")
    push.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub model repo (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--message", help="the commit message (default: Upload MODEL (ftagent))")


def _add_registry_commands(commands: Any) -> None:
    from tools.serving.export import GGUF_DTYPES

    promote = commands.add_parser("promote", help="put a model version in production (archives the current one)")
    promote.add_argument("model")
    promote.add_argument("--force", action="store_true", help="promote even if it failed its quality gates")
    rollback = commands.add_parser("rollback", help="production goes back to the family's previous version")
    rollback.add_argument("family_or_model")
    delete = commands.add_parser("delete", help="remove a model version and its folder under <home>/models")
    delete.add_argument("model")
    delete.add_argument("--force", action="store_true", help="delete even the production version")
    serve = commands.add_parser("serve", help="OpenAI-compatible HTTP server for registered models")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", dest="models", action="append", metavar="NAME",
                       help="serve this version (repeatable; default: production and staging versions)")
    serve.add_argument("--ab", dest="ab_splits", action="append", metavar="NAME=VERSION_A:W,VERSION_B:W",
                       help="answer NAME with an A/B split between served versions, by request id (repeatable; "
                            "weights optional = equal shares; overrides the config's serving_ab_splits)")
    serve.add_argument("--engine", choices=("ftagent", "vllm", "llamacpp"), default="ftagent",
                       help="ftagent: this project's server (default); vllm: vLLM's OpenAI-compatible server with "
                            "the versions as LoRA modules (a CUDA machine with vllm installed); llamacpp: the same "
                            "API answered by llama.cpp from GGUF exports (pip install -e '.[llamacpp]', compiles)")
    serve.add_argument("--gguf-dtype", choices=GGUF_DTYPES, default="f16",
                       help="with --engine llamacpp: the base model's GGUF weights (f16 default; f32 exact, with an "
                            "f32 KV cache; q8_0 half of f16)")
    serve.add_argument("--vllm-args", default="", metavar="'ARGS'",
                       help="more arguments for vLLM's server, e.g. '--gpu-memory-utilization 0.85'")
    serve.add_argument("--print-command", action="store_true",
                       help="with --engine vllm: print the vLLM command line and exit")
    serve.add_argument("--reload-interval", type=float, default=5.0, metavar="SECONDS",
                       help="re-read the registry this often to load new versions and drop withdrawn ones "
                            "(0 = only on POST /admin/reload; default 5)")
    serve.add_argument("--max-batch", type=int, default=8, metavar="N",
                       help="decode up to N concurrent requests in one batch (1 = one at a time; default 8)")
    serve.add_argument("--batch-window-ms", type=float, default=10.0, metavar="MS",
                       help="how long a batch waits for more requests before it decodes (default 10)")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 and /admin "
                       "(visible in ps: prefer --api-key-file or $FTAGENT_SERVING_API_KEY)")
    serve.add_argument("--api-key-file", metavar="FILE", help="read the API key from this file")
    serve.add_argument("--int8", action="store_true",
                       help="CPU: run the one served adapter merged into int8 weight-only layers (1.4-1.6x the "
                            "tokens per second of fp32; answers close to fp32's, not equal)")
    serve.add_argument("--int4", action="store_true",
                       help="CPU: the same with int4 layers and an int8 head (2.6x the tokens per CPU second "
                            "of transformers generate; general perplexity as fp32's within 1%%)")


def _process_count(value: str) -> int | str:
    """--nproc: a positive whole number or auto."""
    if value.strip().lower() == "auto":
        return "auto"
    if value.strip().isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected a number of processes (1, 2, ...) or auto, not {value!r}")


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    docs = str(DEMO_CORPUS) if args.demo and not args.docs else args.docs
    training = {k: v for k, v in {"epochs": args.epochs, "learning_rate": args.learning_rate,
                                  "lora_r": args.lora_r, "max_steps": args.max_steps,
                                  "nproc": args.nproc}.items() if v is not None}
    gates = {k: v for k, v in {"min_nll_improvement": args.min_nll_improvement,
                               "max_general_ppl_increase": args.max_ppl_increase}.items() if v is not None}
    options: dict[str, Any] = {"docs_path": docs, "dataset": args.dataset, "base_model": args.base_model,
                               "max_rounds": args.max_rounds, "merge": args.merge or None}
    if args.sources:
        options["sources"] = [name.strip() for name in args.sources.split(",") if name.strip()]
    if args.urls:
        options["urls"] = args.urls
    if training:
        options["training"] = training
    if gates:
        options["gates"] = gates
    return {k: v for k, v in options.items() if v is not None}


def print_resolved_spec(console: Console, job: ResolvedJob) -> int:
    """--dry-run: the resolved job spec as YAML with each value's origin; nothing is queued or run."""
    console.print(spec_yaml(job), highlight=False, markup=False, soft_wrap=True, end="")
    return 0


def _follow(service: JobService, console: Console, job_id: str, resume: bool, quiet: bool = False) -> int:
    printer = ProgressPrinter(console, bars=False if quiet else None)
    try:
        state = service.resume(job_id, (printer,)) if resume else service.run(job_id, (printer,))
    except JobFailed as failure:
        printer.close()
        refused = isinstance(failure.error, RefusedToLoad)  # it says what to do
        console.print(f"[red]error:[/red] {escape(str(failure.error))}" + (
            "" if refused else f"\nfinished work is kept; continue with: ftagent resume {job_id}"), highlight=False)
        return EXIT_JOB_FAILED
    printer.close()
    if state.get("status") == "cancelled":
        console.print(f"job {job_id} cancelled; finished work is kept; continue with: ftagent resume {job_id}",
                      highlight=False)
        return EXIT_JOB_FAILED
    console.print(summary_table(state))
    console.print(f"report: {service.settings.job_paths(job_id).report}", highlight=False)
    return 0 if state.get("status") == "succeeded" else EXIT_JOB_FAILED


def _quiet_libraries() -> None:
    """Library progress bars and deprecation chatter would drown the job's own progress lines."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the one-time GGUF conversion's tqdm bar
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# these load no model
LIGHT_COMMANDS = ("cancel", "status", "token", "models", "show", "promote", "rollback", "logs", "config",
                  "push")  # push: also, HF_HUB_OFFLINE is not defaulted to 1 for it


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command not in LIGHT_COMMANDS:
        _quiet_libraries()
    console = Console(stderr=False, highlight=False)
    try:
        settings = resolve_settings({"home": args.home, "threads": args.threads},
                                    flags={"home": "--home", "threads": "--threads"})
    except ValueError as error:  # a setting (environment, config file) that fails its check
        console.print(f"[red]bad setting:[/red] {escape(str(error))}", highlight=False)
        return EXIT_BAD_INPUT
    try:
        service = JobService(settings)
        return _dispatch(service, console, args)
    except RequestError as error:
        console.print(f"[red]cannot start:[/red] {error}", highlight=False)
        return EXIT_BAD_INPUT
    except RegistryRefusal as error:
        console.print(f"[red]refused:[/red] {error}", highlight=False)
        return EXIT_BAD_INPUT
    except JobBusy as error:
        console.print(f"[red]busy:[/red] {error}", highlight=False)
        return EXIT_BAD_INPUT
    except (UnknownJob, RegistryError) as error:
        console.print(f"[red]not found:[/red] {error}", highlight=False)
        return EXIT_NOT_FOUND
    except BaseModelError as error:
        console.print(f"[red]base model:[/red] {error}", highlight=False)
        return EXIT_ENVIRONMENT
    except DatabaseUnavailable as error:
        console.print(f"[red]database:[/red] {escape(str(error))}", highlight=False)
        return EXIT_ENVIRONMENT
    except RefusedToLoad as error:
        console.print(f"[red]refused:[/red] {escape(str(error))}", highlight=False)
        return EXIT_ENVIRONMENT
    except OSError as error:  # the home folder cannot be written, a disk is full, ...
        console.print(f"[red]cannot read or write files:[/red] {error}", highlight=False)
        return EXIT_ENVIRONMENT


def _dispatch(service: JobService, console: Console, args: argparse.Namespace) -> int:
    extra = dispatch_extra(service, console, args)
    if extra is not None:
        return extra
    if args.command in ("run", "submit"):
        job = resolve_job(args.sentence, args.config, args.sets, _run_options(args))
        if args.dry_run:
            console.print(f"# understood: {understood_line(job.spec)}", highlight=False, markup=False, soft_wrap=True)
            return print_resolved_spec(console, job)
        if args.command == "submit":  # queued for a worker: not claimed by this process
            record = service.submit(job.request, job.options)
            console.print(record.job_id, highlight=False)
            return 0
        record = service.submit(job.request, job.options, claim=True)
        console.print(f"job {record.job_id}: {service.understood(record)}", highlight=False, soft_wrap=True)
        return _follow(service, console, record.job_id, resume=False, quiet=args.quiet)
    if args.command == "resume":
        return _follow(service, console, args.job, resume=True, quiet=args.quiet)
    if args.command == "cancel":
        record = service.cancel(args.job, admin=True)  # the machine's own user may stop any job
        done = record.status in ("cancelled", "succeeded", "failed")
        console.print(f"job {record.job_id} is {record.status}" if done
                      else f"job {record.job_id}: cancel requested; it stops at its next step", highlight=False)
        return 0
    if args.command == "token":
        return _token(service, console, args)
    if args.command == "status":
        if args.job:
            for key, value in service.status(args.job).items():
                if value not in (None, "", {}):
                    console.print(f"{key:>14}: {value}", highlight=False)
        else:
            table = Table("job", "status", "request", "model")
            for record in service.list_jobs():
                table.add_row(record.job_id, record.status, record.request[:60], record.model_name or "")
            console.print(table)
        return 0
    if args.command == "models":
        table = Table("model", "status", "gates", "answer NLL base → tuned", "created")
        for version in service.models():
            base, tuned = version.metrics["base"], version.metrics["tuned"]
            table.add_row(version.name, version.status, "passed" if version.gates_passed else "failed",
                          f"{base.get('answer_nll') or 0:.3f} → {tuned.get('answer_nll') or 0:.3f}", version.created_at)
        console.print(table)
        return 0
    if args.command == "show":
        console.print(service.model_card(args.model), highlight=False, markup=False)
        return 0
    if args.command == "ask":
        precision = "int4" if args.int4 else "int8" if args.int8 else None
        answer = service.ask(args.model, args.question, args.max_new_tokens, precision=precision)
        console.print(answer, highlight=False, markup=False)
        return 0
    if args.command == "eval":
        return _evaluate(service, console, args)
    if args.command in ("promote", "rollback", "delete"):
        return _registry_change(service, console, args)
    if args.command == "serve":
        return _serve(service, console, args)
    if args.command == "export":
        return _export(service, console, args)
    if args.command == "push":
        return _push(service, console, args)
    if args.command == "mcp":
        return _mcp(service, console, args)
    if args.command in ("api", "worker", "chat"):
        return _door(service, console, args)
    raise AssertionError(args.command)


def _door(service: JobService, console: Console, args: argparse.Namespace) -> int:
    """The long-running front doors: the HTTP API, the queue worker, the terminal chat."""
    if args.command == "api":
        from agent.api import serve

        console.print(f"jobs API at http://{args.host}:{args.port}/api/v1/fine-tuning (docs at /docs), "
                      f"web console at http://{args.host}:{args.port}/", highlight=False)
        if args.token:
            console.print("[yellow]warning:[/yellow] --token shows the token to every user of this machine "
                          "(ps); use --token-file or $FTAGENT_API_TOKEN", highlight=False)
        token = args.token or (Path(args.token_file).expanduser().read_text().strip() if args.token_file else None)
        serve(service, args.host, args.port, token, with_worker=not args.no_worker)
        return 0
    if args.command == "worker":
        from agent.queue import Worker, WorkerBusy

        worker = Worker(service, listeners=(ProgressPrinter(console, bars=False if args.quiet else None),))
        try:
            worker.acquire()
        except WorkerBusy as busy:
            console.print(f"[red]cannot start:[/red] {busy}", highlight=False)
            return EXIT_BAD_INPUT
        if args.once:
            try:
                results = worker.drain()
            finally:
                worker.release()
            console.print(f"ran {len(results)} job(s)", highlight=False)
            return 0
        worker.release()
        worker.serve_forever()
        return 0
    from agent.chat import run_terminal_chat

    return run_terminal_chat(service, console, args.user)


def _mcp(service: JobService, console: Console, args: argparse.Namespace) -> int:
    """`ftagent mcp`: stdio for a local client; --http: streamable HTTP behind the users' bearer tokens."""
    if not args.http:
        from agent.mcp_server import serve_stdio

        serve_stdio(service, args.user, with_worker=not args.no_worker)
        return 0
    from agent.api import resolve_token
    from agent.mcp_server import serve_http

    token_file = Path(args.token_file).expanduser() if args.token_file else None
    admin_token = resolve_token(service.settings, token_file.read_text().strip() if token_file else None)
    console.print(f"MCP (streamable HTTP) at http://{args.host}:{args.port}/mcp; send 'Authorization: Bearer "
                  "<token>' (ftagent token add NAME)", highlight=False)
    serve_http(service, args.host, args.port, admin_token, with_worker=not args.no_worker)
    return 0


def _token(service: JobService, console: Console, args: argparse.Namespace) -> int:
    """`ftagent token add|list|revoke`: one API token per user, stored hashed in the home's database."""
    from tools.stores.api_tokens import TokenError, TokenStore

    store = TokenStore(service.settings.database)
    try:
        if args.token_command == "add":
            token = store.add(args.name, admin=args.admin)
            console.print(f"token for {args.name}{' (admin)' if args.admin else ''}; it is shown only once:",
                          highlight=False)
            print(token)  # the last line, alone, for scripts: TOKEN=$(ftagent token add alice | tail -1)
        elif args.token_command == "revoke":
            console.print(f"revoked {store.revoke(args.name).name}'s token", highlight=False)
        else:
            table = Table("user", "role", "created")
            for record in store.list():
                table.add_row(record.name, "admin" if record.admin else "user", record.created_at)
            console.print(table)
    except TokenError as error:
        console.print(f"[red]token:[/red] {escape(str(error))}", highlight=False)
        return EXIT_BAD_INPUT
    return 0


EVAL_ROWS = (("answer_nll", "answer NLL (lower is better)"), ("token_f1", "token F1"), ("rouge_l", "ROUGE-L"),
             ("exact_match", "exact match"), ("format_compliance", "format compliance"),
             ("general_qa_f1", "general QA token F1"), ("general_perplexity", "general perplexity"))


def evaluation_table(result: dict[str, Any]) -> Table:
    """Base vs tuned, one row per metric (tuned is blank when the model had no adapter)."""
    base, tuned = result["base"], result.get("tuned") or {}
    table = Table("metric", "base", "tuned", title=f"{result['model']} on {result['examples']} examples")
    for key, label in EVAL_ROWS:
        if base.get(key) is not None:
            table.add_row(label, f"{base[key]:.3f}", "" if tuned.get(key) is None else f"{tuned[key]:.3f}")
    add_judge_rows(table, result.get("judge") or {})
    return table


def add_judge_rows(table: Table, judge: dict[str, Any]) -> None:
    """The LLM judge's mean score per model and tuned's wins/ties/losses, when it graded anything."""
    scores = judge.get("scores") or {}
    if "base" in scores:
        tuned = scores.get("tuned", {}).get("score")
        table.add_row("judge score (1-5)", f"{scores['base']['score']:.2f}", "" if tuned is None else f"{tuned:.2f}")
    if pairs := judge.get("pairwise"):
        table.add_row("judge: tuned wins/ties/losses", "", f"{pairs['wins']}/{pairs['ties']}/{pairs['losses']}")


def _evaluate(service: JobService, console: Console, args: argparse.Namespace) -> int:
    from tools.evaluation.scoring import QASetError

    overrides = {k: v for k, v in {"generate_limit": args.generate, "max_new_tokens": args.max_new_tokens}.items()
                 if v is not None} | ({"general_texts": 0, "general_qa": 0} if args.no_general else {})
    overrides |= {"judge": False} if args.no_judge else {}
    printer = ProgressPrinter(console, bars=False if args.quiet else None)
    try:
        result = service.evaluate(args.model, args.set_path, limit=args.limit, evaluation=overrides,
                                  progress=lambda side: lambda done, total: printer({
                                      "kind": "progress", "phase": "eval",
                                      "data": {"task": f"evaluating {side}: answers", "done": done, "total": total}}))
    except QASetError as error:
        console.print(f"[red]bad evaluation set:[/red] {error}", highlight=False)
        return EXIT_BAD_INPUT
    finally:
        printer.close()
    console.print(evaluation_table(result))
    if judge := result.get("judge"):
        console.print(f"LLM judge: {judge['reason']}", highlight=False)
    for gate in result["gates"]:
        console.print(f"{'PASS' if gate['passed'] else 'FAIL'} {gate['name']}: {gate['detail']}", highlight=False)
    console.print(f"report: {result['report']}", highlight=False)
    return 0


def _registry_change(service: JobService, console: Console, args: argparse.Namespace) -> int:
    if args.command == "promote":
        version = service.promote(args.model, force=args.force)
        console.print(f"{version.name} is now in production", highlight=False)
    elif args.command == "rollback":
        demoted, restored = service.rollback(args.family_or_model)
        console.print(f"{restored.name} is back in production; {demoted.name} archived", highlight=False)
    else:
        version = service.delete_model(args.model, force=args.force)
        console.print(f"deleted {version.name} ({version.status})", highlight=False)
    return 0


def _export(service: JobService, console: Console, args: argparse.Namespace) -> int:
    from tools.serving.export import ExportError

    try:
        path = service.export(args.model, args.export_format, args.dtype, args.out)
    except ExportError as error:
        console.print(f"[red]cannot export:[/red] {escape(str(error))}", highlight=False)
        return EXIT_BAD_INPUT
    console.print(f"exported {args.model} as {args.export_format}: {path}", highlight=False)
    return 0


def _push(service: JobService, console: Console, args: argparse.Namespace) -> int:
    from tools.serving.hub_push import BadRepoId, PushError

    try:
        result = service.push(args.model, args.repo, private=args.private, message=args.message)
    except PushError as error:
        console.print(f"[red]cannot push:[/red] {escape(str(error))}", highlight=False)
        return EXIT_BAD_INPUT if isinstance(error, BadRepoId) else EXIT_ENVIRONMENT
    console.print(f"pushed {args.model} to {result.url} ({len(result.files)} files: {', '.join(result.files)}; "
                  f"commit {result.commit})", highlight=False, soft_wrap=True)
    return 0


def _serve(service: JobService, console: Console, args: argparse.Namespace) -> int:
    from tools.serving.export import ExportError
    from tools.serving.llamacpp_engine import LlamaCppUnavailable
    from tools.serving.server import ServingError

    if args.engine == "vllm":
        return _serve_vllm(service, console, args)
    try:
        options = _serve_options(args)
    except ValueError as error:
        console.print(f"[red]bad serve option:[/red] {escape(str(error))}", highlight=False)
        return EXIT_BAD_INPUT
    try:
        app = service.serving_app(tuple(args.models or ()), **options)
    except (ServingError, LlamaCppUnavailable, ExportError) as error:
        label, code = _serving_refusal(error)
        console.print(f"[red]{label}:[/red] {escape(str(error))}", highlight=False)
        return code
    server = app.state.server
    for gguf in getattr(server, "gguf_files", ()):
        console.print(f"llama.cpp: {gguf.describe()}", highlight=False)
    console.print(f"serving {', '.join(server.available())} at http://{args.host}:{args.port}/v1"
                  + (" with llama.cpp" if args.engine == "llamacpp" else ""), highlight=False)
    service.serve(args.host, args.port, app=app)
    return 0


def _serving_refusal(error: Exception) -> tuple[str, int]:
    """(what could not be done, exit code) for a server that did not start: nothing to serve (404) or a bad
    setup, llama-cpp-python missing or broken (the environment), a version llama.cpp's GGUF cannot hold."""
    from tools.serving.llamacpp_engine import LlamaCppUnavailable
    from tools.serving.server import ServingError

    if isinstance(error, ServingError):
        return "cannot serve", EXIT_NOT_FOUND if error.status == 404 else EXIT_BAD_INPUT
    if isinstance(error, LlamaCppUnavailable):
        return "cannot serve with llama.cpp", EXIT_ENVIRONMENT
    return "cannot serve with llama.cpp", EXIT_BAD_INPUT


def _serve_vllm(service: JobService, console: Console, args: argparse.Namespace) -> int:
    """`serve --engine vllm`: vLLM's server over the registry's versions, its adapters kept in step."""
    import shlex

    from tools.serving.server import ServingError
    from tools.serving.vllm_engine import VllmUnavailable

    try:
        server = service.vllm_server(tuple(args.models or ()), args.host, args.port, args.reload_interval,
                                     shlex.split(args.vllm_args), check_installed=not args.print_command)
    except ServingError as error:
        console.print(f"[red]cannot serve:[/red] {escape(str(error))}", highlight=False)
        return EXIT_NOT_FOUND if error.status == 404 else EXIT_BAD_INPUT
    except VllmUnavailable as error:
        console.print(f"[red]cannot serve with vLLM:[/red] {escape(str(error))}", highlight=False)
        return EXIT_ENVIRONMENT
    if args.print_command:
        print(shlex.join(server.command()))
        return 0
    try:
        server.start()
        console.print(f"vLLM serving {', '.join(server.plan.lora_modules)} on {server.plan.base_name} at "
                      f"http://{args.host}:{args.port}/v1", highlight=False)
        return server.wait()
    except VllmUnavailable as error:
        console.print(f"[red]vLLM did not start:[/red] {escape(str(error))}", highlight=False)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()


def _serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """The serve command's options checked and shaped for the service; ValueError says what is wrong."""
    from tools.serving.from_registry import parse_ab_split

    splits: dict[str, dict[str, float]] = {}
    for text in args.ab_splits or ():
        name, arms = parse_ab_split(text)
        if name in splits:
            raise ValueError(f"--ab names the split {name!r} twice")
        splits[name] = arms
    if args.reload_interval < 0:
        raise ValueError(f"--reload-interval must be 0 (off) or a number of seconds, not {args.reload_interval}")
    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be 1 (no batching) or more, not {args.max_batch}")
    if args.batch_window_ms < 0:
        raise ValueError(f"--batch-window-ms cannot be negative ({args.batch_window_ms})")
    key = args.api_key or (Path(args.api_key_file).expanduser().read_text().strip() if args.api_key_file else None)
    common = {"ab_splits": splits, "reload_interval_s": args.reload_interval, "api_key": key}
    if args.engine == "llamacpp":
        if args.int8 or args.int4:
            raise ValueError("--int8/--int4 quantize this project's engine; llama.cpp takes --gguf-dtype q8_0")
        return {**common, "engine": "llamacpp", "gguf_dtype": args.gguf_dtype}
    return {**common, "max_batch_size": args.max_batch, "batch_window_ms": args.batch_window_ms,
            **({"precision": "int4"} if args.int4 else {"precision": "int8"} if args.int8 else {})}


def program() -> None:
    """The `ftagent` command. Its objects are frozen out of the interpreter's last garbage collection:
    with torch, transformers and a job's graph loaded, that collection alone took 3-15 s on a loaded
    machine, so a cancelled `ftagent run` (or any command) ended that much later than its job."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    program()
