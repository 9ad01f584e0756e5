"""The service every front door uses: submit, run, resume, status, models, ask.

CLI, chat, Slack and HTTP all go through this class, so they behave the same.

`run` is the one runner (CLI, queue worker, API, Slack, chat, Python API): it claims the job atomically
(a queued job is taken by exactly one process; `submit(claim=True)` creates it already claimed, so a
worker never takes a job that `ftagent run` is about to run), holds the home's training lock
(`<home>/training.lock`, one training at a time per home, released by the OS if the process dies) and
watches the job's cancel flag at every event it writes (`CancelWatch`), so a job is cancellable from any
door and process (`ftagent cancel JOB`) wherever it runs.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from agent import access
from agent.settings import Settings
from graphs.context import JobContext
from graphs.spec import RequestError, build_spec, understood_line
from graphs.state import DatasetSummary, JobState
from tools.events import EventListener, EventLog
from tools.intake.request_intake import read_with_chat_model
from tools.llm.chat_model import chat_model_from
from tools.private_files import private_file, private_folder
from tools.stores.api_tokens import Caller
from tools.stores.databases import open_job_store
from tools.stores.disk_space import DiskFull
from tools.stores.feedback import Feedback, FeedbackStore, corrections_as_examples, write_jsonl
from tools.stores.job_store import TERMINAL_STATUSES, JobRecord, JobStore, UnknownJob
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import is_postgres_url
from tools.text import slugify


class JobFailed(RuntimeError):
    """A job stopped on an error; its finished work is kept and `ftagent resume` continues it."""

    def __init__(self, job_id: str, error: BaseException) -> None:
        super().__init__(f"job {job_id} stopped: {error}")
        self.job_id = job_id
        self.error = error


class NotOwner(PermissionError):
    """Someone asked to change a job that another user submitted."""

    def __init__(self, job_id: str, user: str | None) -> None:
        super().__init__(f"job {job_id} belongs to another user; {user or 'an anonymous user'} cannot change it")
        self.job_id = job_id


class JobCancelled(BaseException):
    """Raised inside a running job when its cancel flag is set. A BaseException so that no node's
    `except Exception` (which records a failed source and carries on) can swallow it."""

    def __init__(self, job_id: str = "") -> None:  # no argument when raised asynchronously
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class JobBusy(RuntimeError):
    """Another live process is running this job."""

    def __init__(self, job_id: str, pid: int | None) -> None:
        super().__init__(f"job {job_id} is already running (process {pid}); follow it with "
                         f"`ftagent status {job_id}` or stop it with `ftagent cancel {job_id}`")
        self.job_id = job_id


class CancelWatch:
    """An event listener that stops the job when its cancel flag is set."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("kind") not in ("cancel", "cancelled") and self.store.get(self.job_id).cancel_requested:
            raise JobCancelled(self.job_id)


class CancelInterrupter:
    """Stops a running job within about a second of its cancel request even between events (a long
    training step, the evaluation's generations): a thread polls the flag and raises JobCancelled in
    the runner's thread with CPython's PyThreadState_SetAsyncExc. It arrives at the runner's next Python
    bytecode (a long C call, one torch op, finishes first), like a Ctrl-C; finished steps are kept as on
    any interruption (checkpoints are written to a staging folder and renamed). Leaving the block disarms
    it and clears an exception not yet delivered, so nothing fires after the job has ended."""

    def __init__(self, store: JobStore, job_id: str, poll_seconds: float = 0.5) -> None:
        self.store, self.job_id, self.poll_seconds = store, job_id, poll_seconds
        self._target = threading.get_ident()
        self._lock = threading.Lock()
        self._armed, self._fired = True, False
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        threading.Thread(target=self._watch, name=f"cancel-watch-{self.job_id}", daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                requested = self.store.get(self.job_id).cancel_requested
            except (sqlite3.Error, OSError):  # a locked or unreachable database: the next poll asks again
                continue
            if requested:
                with self._lock:
                    if self._armed:
                        self._raise_in_target(JobCancelled)
                        self._fired = True
                return

    def _raise_in_target(self, exception: type[BaseException] | None) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target),
                                                   ctypes.py_object(exception) if exception else None)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._armed = False
            if self._fired:
                self._raise_in_target(None)  # clear it if it has not arrived yet
        self._stop.set()


CANCELLED_OUTCOME = "cancelled on request; finished steps are kept (resume continues it)"
LOCK_POLL_SECONDS = 0.5


class JobService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        private_folder(settings.home)  # documents, tokens and the database: the owner's only
        if not is_postgres_url(settings.database):
            private_file(Path(settings.database))
        self.jobs = open_job_store(settings.database, settings.job_lease_s)
        self.registry = ModelRegistry(settings.database)
        self.feedback_store = FeedbackStore(settings.database)

    # -- jobs ------------------------------------------------------------------------------------
    def submit(self, sentence: str, options: dict[str, Any] | None = None, owner: str | None = None,
               remote: Caller | None = None, claim: bool = False, chat_reading: bool = True) -> JobRecord:
        """Validate the request now (a bad sentence fails here, before any work) and queue the job.
        `remote`: the caller of a remote door (the job's owner; see agent/access.py for what such a caller
        may ask). `claim`: create it already claimed by this process, for `run` here (no worker takes it).
        With a chat model configured it reads the request first (tools.intake.request_intake); what it adds
        is kept in the job's options (checked like the caller's own) and its disagreements with the offline
        reader in the job's events (`chat_reading=False`: a door whose chat model read the message already)."""
        intake = read_with_chat_model(sentence, chat_model_from(self.settings) if chat_reading else None)
        options = {**intake.options, **(options or {})}
        if remote is not None:
            options, owner = access.check_before_parsing(sentence, options, self.settings, remote), remote.user
        spec = build_spec(sentence, options)
        if remote is not None:
            access.check_spec(spec, remote)
        self._check_base_model(spec)
        for key in ("docs_path", "dataset"):  # a later worker may run in another folder
            if getattr(spec, key):
                options[key] = str(Path(getattr(spec, key)).expanduser().resolve())
        job_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{slugify(spec.subject, 24)}-{secrets.token_hex(2)}"
        record = self.jobs.create(job_id, sentence, options, owner=owner, claimed_by=os.getpid() if claim else None)
        if intake.how != "offline reader":  # a chat model was asked: say how it went
            EventLog(self.settings.job_paths(job_id).events).emit(
                "intake", "understood", understood_line(spec), read_by=intake.how,
                disagreements=list(intake.disagreements))
        return record

    def understood(self, record: JobRecord) -> str:
        """The one line of what the job's request was understood to ask; every door shows it."""
        return understood_line(build_spec(record.request, record.options))

    def _check_base_model(self, spec: Any) -> None:
        """The base model is found and checked now (config, causal LM, tokenizer, chat template; no
        weights loaded), so a bad one is refused before the job is queued; the embedded GGUF model, not
        yet converted, only needs its package."""
        from tools.models.catalogue import BaseModelError, check_base_model, locate_base_model

        try:
            path, checkable = locate_base_model(spec.base_model, self.settings.home, self.settings.hub_downloads)
            if checkable:
                check_base_model(path)
        except BaseModelError as error:
            raise RequestError(str(error), {"subject": spec.subject, "model": spec.base_model}) from error

    def run(self, job_id: str, listeners: tuple[EventListener, ...] = ()) -> JobState:
        """Run (or continue) a job to its end in this process and return its final state: claims it (JobBusy
        if another live process has it), waits for the home's training lock, and stops at the next event
        once cancelled (the state is then {"job_id", "status": "cancelled", "outcome"}). A job's own
        failure raises JobFailed with its finished work kept."""
        record = self._claim(job_id)
        if record.cancel_requested:
            return self._mark_cancelled(job_id)
        watch = CancelWatch(self.jobs, job_id)
        try:
            with self._training_lock(job_id, watch):
                return self._invoke(record, (*listeners, watch))
        except JobCancelled:
            return self._mark_cancelled(job_id)

    def _invoke(self, record: JobRecord, listeners: tuple[EventListener, ...]) -> JobState:
        from graphs.checkpointer import check_typed_state

        job_id = record.job_id
        inputs = {"job_id": job_id, "request": record.request, "options": record.options}
        self.jobs.update(job_id, error=None)
        try:
            with self._graph() as graph:
                config = {"configurable": {"thread_id": job_id}, "recursion_limit": 100}
                saved = graph.get_state(config)
                pending = bool(saved.next)  # a checkpoint to continue from
                if pending:
                    check_typed_state(saved.values)
                with CancelInterrupter(self.jobs, job_id):
                    state = graph.invoke(None if pending else inputs, config,
                                         context=JobContext(self.settings, listeners))
        except JobCancelled:
            raise
        except BaseException as error:
            try:
                self.jobs.update(job_id, status="failed", error=f"{type(error).__name__}: {error}", pid=None)
            except DiskFull:  # not even the failure fits: the job reads as interrupted once this process ends
                pass
            if isinstance(error, KeyboardInterrupt):
                raise
            raise JobFailed(job_id, error) from error
        model = state["model"].name if state.get("model") else None
        self.jobs.update(job_id, status=state.get("status", "failed"), outcome=state.get("outcome"),
                         model_name=model, pid=None)
        return state

    def _claim(self, job_id: str) -> JobRecord:
        """The job, marked running under this process; JobBusy when another live process runs it."""
        record = self.jobs.get(job_id)
        if record.status == "running" and self.jobs.held_here(record):
            return record
        if record.status == "running" or not self.jobs.claim(record, os.getpid()):
            raise JobBusy(job_id, self.jobs.get(job_id).pid)
        return self.jobs.get(job_id)

    @contextmanager
    def _training_lock(self, job_id: str, watch: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """Hold <home>/training.lock while the job runs; while another job holds it, wait (cancellable).
        Not on a shared store (PostgreSQL): there the home is the artifact root every host mounts, so the
        lock would run one job at a time across all of them; each worker runs one job at a time."""
        if self.jobs.shared:
            yield
            return
        handle = self.settings.layout.training_lock.open("a")
        try:
            announced = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not announced:
                        EventLog(self.settings.job_paths(job_id).events).emit(
                            "service", "waiting", "waiting: another job is training in this home")
                        announced = True
                    watch({"kind": "waiting"})
                    time.sleep(LOCK_POLL_SECONDS)
            yield
        finally:
            handle.close()  # closing releases the lock

    def _mark_cancelled(self, job_id: str) -> JobState:
        EventLog(self.settings.job_paths(job_id).events).emit("service", "cancelled", CANCELLED_OUTCOME)
        self.jobs.update(job_id, status="cancelled", outcome=CANCELLED_OUTCOME, error=None, pid=None)
        return {"job_id": job_id, "status": "cancelled", "outcome": CANCELLED_OUTCOME}

    def resume(self, job_id: str, listeners: tuple[EventListener, ...] = (),
               keep_cancel: bool = False) -> JobState:
        """Continue a job from its last checkpoint. An explicit resume clears an earlier cancel request;
        the worker's recovery of interrupted jobs keeps it (`keep_cancel`), closing them instead."""
        record = self.jobs.get(job_id)
        if record.status == "succeeded":
            return self.state(job_id)
        if record.status == "running":
            raise JobBusy(job_id, record.pid)
        if not keep_cancel and record.cancel_requested:
            self.jobs.update(job_id, cancel_requested=0)
        EventLog(self.settings.job_paths(job_id).events, listeners).emit(
            "service", "phase", f"resuming job {job_id} (was {record.status})")
        return self.run(job_id, listeners)

    def state(self, job_id: str) -> JobState:
        """The job's graph state at its last checkpoint (typed results, graphs/state.py)."""
        self.jobs.get(job_id)
        with self._graph() as graph:
            return dict(graph.get_state({"configurable": {"thread_id": job_id}}).values)

    def status(self, job_id: str) -> dict[str, Any]:
        record = self.jobs.get(job_id)
        events = EventLog(self.settings.job_paths(job_id).events).read()
        phase_events = [e for e in events if e["kind"] == "phase"]
        last_step = next((e for e in reversed(events) if e["kind"] == "step"), None)
        return {**record.to_dict(), "phase": phase_events[-1]["phase"] if phase_events else None,
                "last_event": phase_events[-1]["message"] if phase_events else None,
                "training_step": last_step["data"] if last_step else None,
                "report": str(self.settings.job_paths(job_id).report)}

    def list_jobs(self, caller: Caller | None = None) -> list[JobRecord]:
        """All jobs, newest first; for a caller who is not an admin, only their own."""
        records = self.jobs.list()
        return records if caller is None or caller.admin else [r for r in records if r.owner == caller.user]

    def job_for(self, job_id: str, caller: Caller | None = None) -> JobRecord:
        """The job when the caller may see it (an admin, or its owner); UnknownJob otherwise, the same
        answer as for a job that does not exist."""
        record = self.jobs.get(job_id)
        if caller is not None and not caller.admin and record.owner != caller.user:
            raise UnknownJob(job_id)
        return record

    # -- a job's artefacts, as the web console and the API show them ------------------------------
    def job_dataset(self, job_id: str, per_split: int = 6) -> dict[str, Any] | None:
        """The job's dataset once the generator wrote it (None before): its summary (counts, types,
        difficulty, what was dropped), the dataset card (Markdown) and up to `per_split` examples per split."""
        dataset = self.state(job_id).get("dataset")
        if not dataset or not dataset.paths:
            return None
        card = Path(dataset.card)
        card_text = card.read_text() if dataset.card and card.is_file() else None
        return {"summary": _dataset_view(dataset), "card": card_text,
                "examples": {split: _example_rows(Path(path), per_split)
                             for split, path in dataset.paths.items()}}

    def job_evaluation(self, job_id: str) -> dict[str, Any] | None:
        """The job's latest evaluation report (tuned vs base, gates, per-example answers); None before one."""
        self.jobs.get(job_id)
        report = self.settings.job_paths(job_id).eval / "report.json"
        return json.loads(report.read_text()) if report.is_file() else None

    def job_rounds(self, job_id: str) -> dict[str, Any]:
        """Every evaluated round (training config, metrics, gates) and every critic decision so far."""
        state = self.state(job_id)
        rounds = [record.model_dump(exclude={"config"}) | {"config": _training_settings(record.config)}
                  for record in state.get("rounds", [])]
        return {"rounds": rounds, "remedies": [remedy.model_dump() for remedy in state.get("remedies", [])],
                "max_rounds": state["spec"].max_rounds if state.get("spec") else None}

    # -- cancel, events, feedback ----------------------------------------------------------------
    def cancel(self, job_id: str, user: str | None = None, admin: bool = False) -> JobRecord:
        """Cancel a job: a queued one at once; a running one at its next event (the runner checks the flag).
        Only the job's owner (or an admin: the local CLI, an admin token) may cancel it; jobs without an
        owner can be cancelled by anyone."""
        record = self.jobs.get(job_id)
        if record.owner and user != record.owner and not admin:
            raise NotOwner(job_id, user)
        if record.status in TERMINAL_STATUSES:
            return record
        log = EventLog(self.settings.job_paths(job_id).events)
        if record.status == "queued":
            log.emit("service", "cancelled", f"job {job_id} cancelled before it started (by {user or 'anonymous'})")
            return self.jobs.update(job_id, status="cancelled", cancel_requested=1, outcome="cancelled before start")
        log.emit("service", "cancel", f"cancel requested by {user or 'anonymous'}; stopping at the next step")
        return self.jobs.update(job_id, cancel_requested=1)

    def read_events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The job's events after the first `after`, each with `seq` (its 1-based line number in events.jsonl)."""
        self.jobs.get(job_id)
        events = EventLog(self.settings.job_paths(job_id).events).read()
        return [{**event, "seq": seq} for seq, event in enumerate(events, start=1) if seq > after]

    def events(self, job_id: str, after: int = 0, follow: bool = False, poll_seconds: float = 0.25,
               timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The job's events after `after`; with `follow`, keep waiting for new ones until the job ends
        (succeeded, failed or cancelled) or `timeout` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            finished = self.jobs.get(job_id).status in TERMINAL_STATUSES  # read before the events: none is missed
            for event in self.read_events(job_id, after):
                after = event["seq"]
                yield event
            if not follow or finished or (deadline is not None and time.monotonic() > deadline):
                return
            time.sleep(poll_seconds)

    def feedback(self, model: str, question: str, answer: str, rating: int, correction: str | None = None,
                 user: str | None = None) -> Feedback:
        """Record feedback on a registered model's answer. Corrections become training examples for the
        model's next version (see `export_corrections`)."""
        self.registry.get(model)  # RegistryError for an unknown model
        return self.feedback_store.add(model, question, answer, rating, correction, user)

    def export_corrections(self, model: str, path: Path | None = None) -> Path:
        """Write the model's corrected answers as chat JSONL training examples (default
        <home>/feedback/<model>.jsonl) for the next version's training data."""
        from tools.llm.prompt_files import render_prompt

        version = self.registry.get(model)
        system = render_prompt("system_subject_expert", subject=version.subject)
        examples = corrections_as_examples(self.feedback_store.list(model), system)
        return write_jsonl(examples, path or self.settings.layout.feedback_export(model))

    # -- models ----------------------------------------------------------------------------------
    def models(self) -> list[ModelVersion]:
        return self.registry.list()

    def model(self, name: str) -> ModelVersion:
        return self.registry.get(name)

    def model_card(self, name: str) -> str:
        """The version's model card; a card that is missing or unreadable is said plainly, not raised
        (versions registered before cards were written first may lack one)."""
        path = Path(self.registry.get(name).card_path)
        try:
            return path.read_text()
        except OSError as error:
            return f"# {name}\n\n(no model card: {path} cannot be read: {error.strerror or error})\n"

    def ask(self, name: str, question: str, max_new_tokens: int = 128, precision: str | None = None) -> str:
        """An answer from a registered model (its adapter merged into a copy of its base's weights), in
        `precision` (default: the setting; "int8" as well, see tools.models.loading)."""
        from tools.evaluation.scoring import generate_answers
        from tools.llm.prompt_files import render_prompt
        from tools.models.loading import load_for_inference

        version = self.registry.get(name)
        model, tokenizer = load_for_inference(version.base_model_path, version.adapter_path, self.settings.threads,
                                              precision=precision or self.settings.precision, merge=True)
        messages = [{"role": "system", "content": render_prompt("system_subject_expert", subject=version.subject)},
                    {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        return generate_answers(model, tokenizer, [{"messages": messages}], max_new_tokens)[0]

    def ask_with_base(self, name: str, question: str, max_new_tokens: int = 128) -> dict[str, str | None]:
        """The version's answer and its base model's answer to the same question (same system prompt, the
        adapter switched off for the base); base is None for a version without an adapter."""
        from tools.evaluation.scoring import generate_answers
        from tools.llm.prompt_files import render_prompt
        from tools.models.loading import load_for_inference

        version = self.registry.get(name)
        model, tokenizer = load_for_inference(version.base_model_path, version.adapter_path, self.settings.threads)
        messages = [{"role": "system", "content": render_prompt("system_subject_expert", subject=version.subject)},
                    {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        tuned = generate_answers(model, tokenizer, [{"messages": messages}], max_new_tokens)[0]
        if not version.adapter_path:
            return {"tuned": tuned, "base": None}
        with model.disable_adapter():
            base = generate_answers(model, tokenizer, [{"messages": messages}], max_new_tokens)[0]
        return {"tuned": tuned, "base": base}

    # -- evaluation on any question/answer set ----------------------------------------------------
    def evaluate(self, model: str, set_path: Path | str | None = None, examples: list[dict] | None = None,
                 limit: int | None = None, evaluation: dict[str, Any] | None = None,
                 allow_folders: bool = True, progress: Any = None) -> dict[str, Any]:
        """Evaluate a registered model (its adapter vs its base), `base` (the default base model alone) or a
        local folder (an adapter folder vs its base, or a plain model alone) on a JSONL file of
        {"question","answer"} pairs or chat records, or on the same rows given inline as `examples`; at most
        `limit` examples. `evaluation` overrides spec.evaluation (generate_limit, max_new_tokens,
        general_texts, general_qa, judge); with a chat model configured the judge grades the generated answers.
        Writes <home>/evaluations/<id>/report.{json,md} + plots and returns the numbers. Unknown model:
        RegistryError; unreadable set: QASetError. Without `allow_folders` (the HTTP API) only registered
        names and `base` are accepted. `progress("tuned" | "base")`: a (done, total) callback for that
        model's answers (the CLI's bars)."""
        from graphs.nodes.evaluator import evaluate_on_set
        from graphs.spec import Evaluation, Gates
        from tools.evaluation.scoring import qa_records, read_qa_set
        from tools.llm.chat_model import chat_model_from
        from tools.llm.prompt_files import render_prompt

        base_path, adapter, subject = self._evaluation_target(model, allow_folders)
        system = (render_prompt("system_subject_expert", subject=subject) if subject
                  else render_prompt("system_general"))
        records = (read_qa_set(Path(set_path).expanduser(), system, limit) if set_path is not None
                   else qa_records(examples or [], system, limit))
        folder = self.settings.layout.evaluations / (
            f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{slugify(Path(model).name, 40)}-{secrets.token_hex(2)}")
        result = evaluate_on_set(str(base_path), adapter, records, folder, Evaluation(**(evaluation or {})),
                                 Gates(), self.settings.threads, f"Evaluation of {model} on "
                                 f"{Path(set_path).name if set_path is not None else 'inline examples'}",
                                 judge=chat_model_from(self.settings), precision=self.settings.precision,
                                 progress=progress)
        return {"model": model, "base_model_path": str(base_path), "adapter": adapter,
                "set": str(set_path) if set_path is not None else None, "examples": len(records), **result}

    def _evaluation_target(self, model: str, allow_folders: bool) -> tuple[Path, str | None, str | None]:
        """(base model folder, adapter folder or None, subject or None) for a model name or folder."""
        import json

        from tools.models.catalogue import DEFAULT_BASE_MODEL, resolve_base_model

        if model == "base":
            return resolve_base_model(DEFAULT_BASE_MODEL, self.settings.home), None, None
        folder = Path(model).expanduser()
        if not allow_folders:
            return self._registered_target(model)
        if folder.is_dir() and (folder / "adapter_config.json").exists():
            base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
            return resolve_base_model(base, self.settings.home), str(folder.resolve()), None
        if folder.is_dir() and (folder / "config.json").exists():
            return folder.resolve(), None, None
        return self._registered_target(model)

    def _registered_target(self, model: str) -> tuple[Path, str | None, str | None]:
        version = self.registry.get(model)  # RegistryError: neither registered nor a model folder
        return Path(version.base_model_path), version.adapter_path, version.subject

    # -- registry changes and serving ------------------------------------------------------------
    def promote(self, name: str, force: bool = False) -> ModelVersion:
        """Put a version in production, archiving the family's current one. A version that failed its
        gates raises RegistryRefusal unless forced."""
        return self.registry.set_status(name, "production", force=force)

    def rollback(self, family_or_model: str) -> tuple[ModelVersion, ModelVersion]:
        """Production goes back to the family's previous (archived) version; returns (demoted, restored)."""
        return self.registry.rollback(family_or_model)

    def delete_model(self, name: str, force: bool = False) -> ModelVersion:
        """Remove a version from the registry and its folder <home>/models/<name>; production is refused
        unless forced. Files outside <home>/models are never removed."""
        import shutil

        version = self.registry.delete(name, force=force)
        models = self.settings.layout.models.resolve()
        folder = (models / name).resolve()
        if folder.parent == models and folder.is_dir():
            shutil.rmtree(folder)
        return version

    def serving_app(self, names: tuple[str, ...] = (), ab_splits: dict[str, dict[str, float]] | None = None,
                    api_key: str | None = None, engine: str = "ftagent", **options: Any) -> Any:
        """The OpenAI-compatible app over the named versions (default: production and staging), following
        the registry while it serves. A/B splits: the config's `serving_ab_splits`, each overridden by
        an explicit split of the same name. `api_key`: explicit, else the `serving_api_key` setting.
        `engine` "ftagent" (options: reload_interval_s, max_batch_size, batch_window_ms, precision, default
        the setting; "int8" as well, see tools.serving.server) or "llamacpp" (options: reload_interval_s,
        gguf_dtype; GGUF files in <home>/gguf-cache, see tools.serving.llamacpp_engine; LlamaCppUnavailable
        without llama-cpp-python)."""
        from tools.serving.from_registry import app_for_registry

        splits = {**self.settings.serving_ab_splits, **(ab_splits or {})}
        if engine == "llamacpp":
            from tools.serving.llamacpp_engine import LlamaCppServer, load_llama_cpp

            load_llama_cpp()  # refuse before the registry is read or anything is exported
            options.update(engine=LlamaCppServer, cache_dir=self.settings.layout.gguf_cache)
        elif engine == "ftagent":
            options.setdefault("precision", self.settings.precision)
        else:
            raise ValueError(f"unknown serving engine {engine!r}: ftagent or llamacpp (vllm: vllm_server)")
        return app_for_registry(self.registry, self.settings.home, names, ab_splits=splits,
                                threads=self.settings.threads, api_key=api_key or self.settings.serving_api_key,
                                **options)

    def serve(self, host: str = "127.0.0.1", port: int = 8000, names: tuple[str, ...] = (),
              app: Any = None) -> None:
        """Serve registered models (or an app from `serving_app`) over HTTP until interrupted."""
        from tools.serving.server import serve_forever

        serve_forever(app if app is not None else self.serving_app(names), host, port)

    def vllm_server(self, names: tuple[str, ...] = (), host: str = "127.0.0.1", port: int = 8000,
                    reload_interval_s: float = 5.0, extra_args: list[str] | None = None,
                    program: tuple[str, ...] | None = None, check_installed: bool = True) -> Any:
        """A vLLM server (tools/serving/vllm_engine.py) for the named versions (default: production and staging),
        not started yet. VllmUnavailable when vLLM is not installed (unless `program` says what to run,
        or `check_installed` is off to only build the command); ServingError when nothing can be served."""
        from tools.serving.vllm_engine import VLLM_PROGRAM, VllmServer

        chosen = program or (None if check_installed else VLLM_PROGRAM)
        return VllmServer(self.registry, names, host, port, reload_interval_s, extra_args or (), chosen)

    # -- export ------------------------------------------------------------------------------------
    def push(self, name: str, repo_id: str, private: bool = False, message: str | None = None):
        """Upload a registered version's folder to the Hugging Face Hub repo `repo_id` (created when
        missing); tools.serving.hub_push.PushError says why not (offline, no token, a bad repo id, the Hub refused)."""
        from tools.serving.hub_push import check_can_push, hub_token, push_folder

        version = self.registry.get(name)
        endpoint = check_can_push(repo_id, self.settings.network)
        return push_folder(Path(version.adapter_path), repo_id, endpoint, hub_token(), private, message)

    def export(self, name: str, fmt: str = "safetensors", dtype: str | None = None,
               out: Path | str | None = None) -> Path:
        """Export a registered version for other runtimes and return where it went.

        "safetensors": a merged Hugging Face folder (vLLM, transformers, llama.cpp's converter) in f32
        (default), f16 or bf16, by default <home>/models/<name>/merged (f32) or merged-<dtype>.
        "gguf": one file for llama.cpp (Llama-architecture models) in f16 (default), f32 or q8_0, written
        from the f32 merged folder (made once and remembered as the version's merged_path), by default
        <home>/models/<name>/<name>-<dtype>.gguf; an existing folder as `out`, or one ending in "/", receives
        that file name. An export never deletes what it did not write: a non-empty `out` folder that is not
        an earlier export, or a file that is not an earlier GGUF, is refused (ExportError).
        Every export is listed on the model card. Bad format/dtype or architecture: ExportError;
        unknown model: RegistryError."""
        from tools.hub_cards import write_merged_card
        from tools.serving.export import export_merged, resolve_export_options

        chosen = resolve_export_options(fmt, dtype)
        version = self.registry.get(name)
        folder = self.settings.layout.model(name)
        target = Path(out).expanduser() if out is not None else None
        if fmt == "safetensors":
            default = folder / ("merged" if chosen == "f32" else f"merged-{chosen}")
            path = export_merged(version.base_model_path, version.adapter_path, target or default, chosen,
                                 replace_unmarked=target is None)
            write_merged_card(path, version)
            if path == folder / "merged":
                self.registry.set_merged_path(name, str(path))
        else:
            from tools.serving.gguf_export import write_gguf

            file_name = f"{name}-{chosen}.gguf"
            as_folder = target is not None and (target.is_dir() or str(out).endswith(("/", os.sep)))
            target = target / file_name if as_folder else target
            path = write_gguf(self._merged_folder(version), target or folder / file_name, chosen)
        _note_export_on_card(Path(version.card_path), fmt, chosen, path)
        return path

    def _merged_folder(self, version: ModelVersion) -> Path:
        """The version's f32 merged folder: the one recorded if it still passes the export check, else a new
        one at <home>/models/<name>/merged."""
        from tools.hub_cards import write_merged_card
        from tools.serving.export import export_merged, export_problems

        merged = Path(version.merged_path) if version.merged_path else None
        if merged and merged.is_dir() and not export_problems(merged):
            return merged
        merged = export_merged(version.base_model_path, version.adapter_path,
                               self.settings.layout.model(version.name) / "merged", replace_unmarked=True)
        write_merged_card(merged, version)
        self.registry.set_merged_path(version.name, str(merged))
        return merged

    # -- plumbing --------------------------------------------------------------------------------
    @contextmanager
    def _graph(self) -> Iterator[Any]:
        # imported here: the graph's imports cost seconds that `cancel` or `status` never need
        from graphs.checkpointer import StrictSerializer
        from graphs.graph import build_graph
        from tools.stores.checkpoints import open_checkpointer

        with open_checkpointer(self.settings.database, serde=StrictSerializer()) as checkpointer:
            yield build_graph(checkpointer)


TRAINING_SETTINGS = ("epochs", "max_steps", "learning_rate", "lora_r", "lora_alpha", "lora_dropout", "batch_size",
                     "max_seq_len", "precision", "backend", "nproc", "distributed")


def _dataset_view(dataset: DatasetSummary) -> dict[str, Any]:
    """What the console shows of a dataset; the generator's figures are None for the user's own dataset."""
    shown = dataset.model_dump(by_alias=True)
    always = ("counts", "types", "hash")
    return {key: shown[key] if dataset.generator is not None or key in always else None
            for key in ("generator", "counts", "documents_per_split", "types", "difficulty", "dropped_examples",
                        "yield", "hash")}


def _training_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a person compares between rounds (not the folders and anomaly knobs)."""
    return {key: config[key] for key in TRAINING_SETTINGS if key in config}


def _example_rows(path: Path, limit: int) -> list[dict[str, Any]]:
    """The first `limit` examples of a chat JSONL split as {question, answer, type, difficulty, source, score}."""
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if len(rows) >= limit:
                break
            if not line.strip():
                continue
            record = json.loads(line)
            turns = {m["role"]: m["content"] for m in record.get("messages", [])}
            meta = record.get("metadata") or {}
            rows.append({"question": turns.get("user", ""), "answer": turns.get("assistant", ""),
                         "type": meta.get("type"), "difficulty": meta.get("difficulty"),
                         "source": meta.get("source"), "score": meta.get("quality_score")})
    return rows

def _note_export_on_card(card: Path, fmt: str, dtype: str, path: Path) -> None:
    """List an export under "## Exports" on the model card (once per path)."""
    if not card.is_file():
        return
    text = card.read_text()
    line = f"- {fmt} {dtype}: `{path.resolve()}`"
    if line in text:
        return
    if "\n## Exports\n" not in text:
        text = text.rstrip("\n") + "\n\n## Exports\n"
    card.write_text(text.rstrip("\n") + "\n" + line + "\n")
