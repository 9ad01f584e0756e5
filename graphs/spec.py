"""The job specification and the sentence parser that turns a request into one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tools.intake.request_reader import (
    MAX_REQUEST_CHARS,
    ReadRequest,
    RequestError,
    normalise,
    read_request,
)
from tools.models.catalogue import DEFAULT_BASE_MODEL, find_in_catalogue
from tools.sources.names import SOURCE_NAMES
from tools.training.config import LoraHyperparameters

__all__ = ["MAX_REQUEST_CHARS", "JobSpec", "RequestError", "build_spec", "parse_request", "understood_line"]


class _Section(BaseModel):
    """A part of the job spec: an unknown key (a typo like `trainig`, at any depth) is refused by name."""

    model_config = ConfigDict(extra="forbid")


class Budget(_Section):
    max_documents: int = Field(60, ge=1, le=10_000)
    max_examples: int = Field(600, ge=1, le=1_000_000)


class Gates(_Section):
    """Quality gates: tuned answer NLL at least `min_nll_improvement` below base; general perplexity
    at most `max_general_ppl_increase` above base; at least `min_train_examples` to train on; grounding:
    the tuned answers' ROUGE-L against the reference answers at most `max_rouge_l_drop` below the base
    model's (and at least `min_rouge_l`, when set), judged only with `min_rouge_l_answers` generated answers.

    The grounding gate is relative because absolute ROUGE-L depends on the subject and the reference style
    (0.19-0.56 for the base on the demo corpus and PubMedQA). Its margin comes from real jobs: tuned models
    gained +0.08 to +0.25 over base (demo 0.355 -> 0.554, 0.257 -> 0.507, 0.433 -> 0.554, and with
    continuation cloze examples 0.190 -> 0.273; PubMedQA 0.491 -> 0.642, 0.307 -> 0.441, 0.562 -> 0.673),
    mostly 3-5 standard errors above the fail line (paired per-answer differences: SD 0.15-0.24, SE
    0.03-0.06 at 15-27 answers). A model that only ties its base still fails now and then (about 5% of
    the time at SE 0.03, 20% at 0.06): a tie means the tuning did nothing for the answers, worth a round.
    Below 10 answers the SE exceeds the margin itself, so the gate is not judged."""

    min_nll_improvement: float = Field(0.05, ge=0, lt=1)
    max_general_ppl_increase: float = Field(0.05, ge=0, le=100)
    min_train_examples: int = Field(16, ge=2, le=1_000_000, description="training rows (QA and document rows)")
    # "too little data" only when the documents hold too little text to learn from
    min_kept_words: int = Field(1500, ge=0, le=10_000_000, description="words of curated text a job needs to train")
    # grounding (gate answer_rouge_l; the critic makes the generator stricter when it fails and NLL passes)
    max_rouge_l_drop: float = Field(0.05, ge=0, le=1, description="1 = no relative check")
    min_rouge_l: float = Field(0.0, ge=0, le=1, description="absolute floor; 0 = none")
    min_rouge_l_answers: int = Field(10, ge=1, le=10_000, description="generated answers needed to judge grounding")
    # LLM judge: tuned answers' win rate over base (ties count half) at least this; 0 = off. Applies only
    # when a chat model judged some examples; a failure is treated as weak grounding.
    min_judge_win_rate: float = Field(0.0, ge=0, le=1)


class Curation(_Section):
    """Chunk sizes are in the embedding model's tokens (its window is 256 for MiniLM)."""

    chunk_tokens: int = Field(200, ge=32, le=4000)
    overlap_tokens: int = Field(32, ge=0, le=1000)
    min_chunk_words: int = Field(25, ge=1, le=2000)
    language: str | None = Field(None, description="ISO 639-1 code to keep; None = the job's language")
    min_language_probability: float = Field(0.5, ge=0, le=1)
    doc_relevance_threshold: float = Field(0.30, ge=-1, le=1)
    chunk_relevance_threshold: float = Field(0.15, ge=-1, le=1)
    max_chunks: int = Field(5000, ge=1, le=100_000, description="top-k: the most relevant chunks kept")
    max_queries: int = Field(6, ge=1, le=20, description="expanded queries relevance is scored against")
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)
    max_symbol_ratio: float = Field(0.25, gt=0, le=1)
    max_garbage_ratio: float = Field(0.2, gt=0, le=1)


class Generation(_Section):
    """Which generator writes examples, and the quality gate every example passes."""

    generator: str = Field("extractive", pattern="^(extractive|llm|local)$")
    max_per_chunk: int = Field(12, ge=1, le=60)
    max_per_fact: int = Field(3, ge=1, le=10, description="question forms asked of one fact")
    # the training mix, measured on PubMedQA (bench/probe_recipe.py, one dataset, the experts' answer NLL):
    # 3 passes over every row gave 6.1%; the questions about a whole document or section twice, cloze and
    # yes/no items at 5%, each passage once as a document row gave 8.2% in three quarters of the steps
    max_cloze_share: float = Field(0.05, ge=0, le=1, description="cloze items, as a share of the QA rows")
    # yes/no items restate one sentence behind "Yes."; many of them pull every answer toward one short
    # sentence (measured on PubMedQA: expert-answer NLL fell 5.3% with 36% yes/no rows, 6.7% with none)
    max_yes_no_share: float = Field(0.05, ge=0, le=1, description="yes/no items, as a share of the QA rows")
    document_question_repeats: int = Field(2, ge=1, le=5, description="training passes of the questions about "
                                           "a whole document or section (a study's findings, its sections, a "
                                           "heading) per pass of the other rows")
    # a study's sentence questions beside its findings and section questions (probe_recipe --curve): with
    # all of them the experts' answer NLL on PubMedQA was best at 1.5-2 epochs and fell back after while
    # the validation loss still improved (hence 2 epochs); without them the NLL fell a little more (9.8%
    # against 9.4% on one group at 2 epochs) but the generated answers drifted to a study's methods and
    # their ROUGE-L fell below the base model's (0.115 against 0.194; base 0.160): all are kept by default
    sentence_questions_per_study: int | None = Field(None, ge=0, le=1000, description="sentence-level "
                                                     "training questions kept per document whose findings "
                                                     "are asked (a study); None = all")
    # the mix: document rows (the passages, loss on every token) beside the QA rows
    document_share: float = Field(0.5, ge=0, lt=1, description="share of training rows that are document "
                                  "rows (repeated up to max_document_repeats to reach it); 0 = QA rows only")
    max_document_repeats: int = Field(1, ge=1, le=10)
    # with a chat model configured: grounded rewrites of each passage (key concepts, implications, a
    # teacher's explanation) as more document rows, and its question/answer pairs as more QA rows
    rewrites: Literal["auto", "off"] = Field("auto", description="auto = when a chat model is configured")
    rewrites_per_chunk: int = Field(3, ge=1, le=12)
    rewrite_concurrency: int = Field(4, ge=1, le=32)
    documents_from: Literal["all", "train"] = Field("all", description="document rows of every kept document "
                                                    "(held-out ones too), or of the training split's only")
    max_chunks: int | None = Field(None, ge=1, le=100_000, description="chunks drawn (for coverage); None = all")
    min_quality: float = Field(0.6, ge=0, le=1, description="the gate's review score")
    keep_quality: float = Field(0.75, ge=0, le=1, description="kept without extra checks at this score")
    min_lexical_support: float = Field(0.6, ge=0, le=1)
    min_semantic_support: float = Field(0.45, ge=-1, le=1)
    max_answer_words: int = Field(150, ge=5, le=2000)
    max_type_share: float = Field(0.6, gt=0, le=1, description="cap on one question type / difficulty")
    allow_cloze: bool = True
    llm_retries: int = Field(2, ge=0, le=10)
    llm_timeout_s: float = Field(60.0, gt=0, le=600)
    local_max_new_tokens: int = Field(256, ge=16, le=2048)
    seed: int = 0


class Training(LoraHyperparameters):
    """The trainer's hyperparameters with this job's defaults (shorter sequences, denser checkpoints),
    each with a ceiling so that one request cannot hold the machine for days."""

    model_config = ConfigDict(extra="forbid")
    # knowledge from a few documents: a wide adapter for one pass. On PubMedQA's Treatment Outcome group the
    # experts' answer NLL fell 9.1% with rank 64 (alpha 128) in 1 epoch, ROUGE-L of the generated answers
    # above the base model's, in half the steps; rank 16 in 2 epochs: 8.0%, ROUGE-L below the base's.
    # Rank 64 in 2 epochs was best at 0.5-0.75 epochs (9.3%) and fell back to 7.0% while the validation
    # answers still improved; lower rates were worse (1.5e-4: 7.3%), higher too (6e-4: 7.2%, 1e-3: 3.5%).
    # The critic's underfit remedy adds passes when the answers are not learned.
    # What the pass teaches is the subject and the register, not the documents' own findings: on the same group
    # (AVX2 CPU, fp32, 1 epoch) the experts' NLL fell 9.25% on the 27 abstracts the job asked questions about and
    # 11.0% on the 8 it only read (bench_pubmedqa's by_split). With 3 epochs (probe_recipe --curve) both fell
    # back together: trained 9.8% at step 40 -> 4.4% at step 90, read-only 11.3% -> 5.6%.
    epochs: float = Field(1.0, gt=0, le=50)
    learning_rate: float = Field(3e-4, gt=0, lt=1)
    lora_r: int = Field(64, ge=1, le=512)
    # no LoRA dropout in one pass over the data: on a CPU its masks are a quarter of a training step (a
    # random number per input value of every adapted layer; 178 -> 243 tokens/s at rank 16, one thread,
    # bf16), and the experts' answer NLL did not suffer (PubMedQA Treatment Outcome, one split: 9.42% with
    # none, 9.19% with 0.05; Follow-Up Studies 8.55% / 8.50%). The critic's overfit remedy adds dropout.
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    max_steps: int | None = Field(None, ge=1, le=100_000)
    lora_alpha: int = Field(128, ge=1, le=1024)
    batch_size: int = Field(8, ge=1, le=256)
    max_seq_len: int = Field(320, ge=16, le=8192)
    checkpoint_every: int = Field(10, ge=1, le=100_000)
    replay_general: float = Field(0.0, ge=0, le=1, description="general examples mixed in, x train size")
    # a job trains on every visible GPU (one torchrun process each); one process without a GPU
    nproc: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    # a job validates twice an epoch: early stopping and the kept adapter then have more points to choose from
    validations_per_epoch: int = Field(2, ge=1, le=20, description="validation-loss checks per epoch")


class Evaluation(_Section):
    generate_limit: int = Field(40, ge=0, le=1000)
    max_new_tokens: int = Field(64, ge=1, le=1024)
    general_texts: int = Field(30, ge=0, le=1000)
    general_qa: int = Field(8, ge=0, le=200, description="general questions answered by base and tuned (regression)")
    judge: bool = Field(True, description="grade generated answers with the chat model when one is configured")


class Research(_Section):
    """How the researcher searches remote sources. The critic widens it (more queries, more sources)."""

    max_queries: int = Field(3, ge=1, le=20, description="queries per source, from expand_queries")
    extra_queries: list[str] = Field(default_factory=list, max_length=20)
    extra_sources: list[str] = Field(default_factory=list, max_length=10)
    arxiv_full_text: bool = False  # also download and extract arXiv PDFs (slow: arXiv asks 3 s between calls)


class JobSpec(_Section):
    """What to train, on what, within which limits. Missing pieces get these defaults."""

    subject: str = Field(min_length=2, max_length=200)
    base_model: str = DEFAULT_BASE_MODEL
    # empty: the researcher decides (local with docs_path, web with urls, else choose_sources(subject))
    sources: list[str] = Field(default_factory=list, max_length=10)
    docs_path: str | None = Field(None, max_length=4096)
    # the user's own dataset (chat/Alpaca/ShareGPT JSONL or a datasets folder): research and generation skip
    dataset: str | None = Field(None, max_length=4096)
    urls: list[Annotated[str, Field(max_length=2048)]] = Field(default_factory=list, max_length=100)
    # the local CLI and Python API may fetch loopback/private hosts; remote doors set this False
    allow_private_urls: bool = True
    language: str = "en"
    max_rounds: int = Field(2, ge=0, le=10, description="critic rounds allowed after the first")
    merge: bool = False
    budget: Budget = Field(default_factory=Budget)
    research: Research = Field(default_factory=Research)
    gates: Gates = Field(default_factory=Gates)
    curation: Curation = Field(default_factory=Curation)
    generation: Generation = Field(default_factory=Generation)
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation = Field(default_factory=Evaluation)

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SOURCE_NAMES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}; choose from {sorted(SOURCE_NAMES)}")
        return value


# --- the sentence, read -------------------------------------------------------------------------

def parse_request(sentence: str) -> dict[str, str | None]:
    """{"subject": ..., "base_model": ...} from one sentence (base_model None when the sentence names
    no model), or RequestError saying what is missing. `read_request` has the options said in words too."""
    read = read_request(sentence)
    return {"subject": read.subject, "base_model": read.base_model}


def _resolve_model(name: str) -> str:
    """The catalogue key for a model name given as an option; a folder or Hugging Face id as given."""
    if name.strip().startswith(("/", "./", "../", "~")):
        return name.strip()
    model = find_in_catalogue(name)
    if model is None and "/" in name:
        return name
    if model is None:
        raise RequestError(f"I don't know the model {name!r}", {"model": name})
    return model.key


def _read(sentence: str, options: dict[str, Any]) -> ReadRequest:
    """The sentence as read; when the options carry the subject (a chat model read it at intake) a
    sentence the offline reader cannot read is no error, but malformed or empty text still is."""
    normalise(sentence)
    try:
        return read_request(sentence)
    except RequestError:
        if not options.get("subject"):
            raise
        return ReadRequest(str(options["subject"]))


def _merged(said: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Options said in the sentence under the options given explicitly (those win, key by key)."""
    merged = dict(said)
    for key, value in given.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def build_spec(sentence: str, options: dict[str, Any] | None = None) -> JobSpec:
    """The job spec: the sentence as read (its options said in words included), explicit options on
    top, defaults for the rest. A model named in both the sentence and the options, differently, is a
    contradiction; any other option given explicitly wins over the sentence's."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    read = _read(sentence, options)
    parsed = {"subject": read.subject, "model": read.base_model}
    named, optional = read.base_model, options.get("base_model")
    if named and optional and _resolve_model(optional) != named:
        raise RequestError(f"the sentence names the model {named} but the options name {optional}", parsed)
    merged = {**_merged(read.options, options), "subject": options.get("subject") or read.subject,
              "base_model": named or (_resolve_model(optional) if optional else DEFAULT_BASE_MODEL)}
    try:
        spec = JobSpec.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RequestError(f"invalid option {where}: {first['msg']}", parsed) from error
    _check_paths(spec)
    return spec


def _check_paths(spec: JobSpec) -> None:
    """Folders the user named must exist now, not fail minutes into the job."""
    understood = {"subject": spec.subject, "model": spec.base_model}
    if spec.docs_path and not Path(spec.docs_path).expanduser().exists():
        raise RequestError(f"the documents folder {spec.docs_path} does not exist", understood)
    if spec.dataset:
        check_user_dataset(spec, understood)
    if spec.base_model.startswith(("/", "./", "../", "~")):
        folder = Path(spec.base_model).expanduser()
        if not (folder / "config.json").exists():
            raise RequestError(f"the base model folder {spec.base_model} "
                               f"{'has no config.json' if folder.exists() else 'does not exist'}", understood)


def check_user_dataset(spec: JobSpec, understood: dict[str, Any]) -> None:
    """The user's own dataset must read (every row in a known format) and leave enough to train on."""
    from tools.data.user_dataset import DatasetError, read_user_dataset

    try:
        dataset = read_user_dataset(spec.dataset or "", spec.generation.seed)
    except DatasetError as error:
        raise RequestError(str(error), understood) from error
    train, needed = len(dataset.splits["train"]), spec.gates.min_train_examples
    if train < needed:
        raise RequestError(f"the dataset {spec.dataset} leaves {train} training rows of {dataset.rows} and the "
                           f"gate needs {needed}: add rows, or lower it (--set gates.min_train_examples={train})",
                           understood)


_SOURCE_PHRASES = {"local": "local documents", "arxiv": "arXiv", "pubmed": "PubMed", "wikipedia": "Wikipedia",
                   "web": "the web"}


def understood_line(spec: JobSpec) -> str:
    """One line of what the request was understood to ask, shown by every door before work starts:
    "fine-tune smollm2-135m on 'organic chemistry' from local documents (2 epochs, LoRA rank 8)"."""
    where = [_SOURCE_PHRASES[s] for s in spec.sources]
    if spec.docs_path:
        where = [f"the documents in {spec.docs_path}", *[w for w in where if w != "local documents"]]
    if spec.urls:
        where.append(f"{len(spec.urls)} web page{'s' if len(spec.urls) > 1 else ''}")
    if spec.dataset:
        where = [f"your dataset {spec.dataset}"]
    line = f"fine-tune {spec.base_model} on {spec.subject!r}"
    line += f" from {' and '.join(where) if where else 'sources chosen for the subject'}"
    defaults = Training()
    said = [f"{spec.training.epochs:g} epochs" if spec.training.epochs != defaults.epochs else "",
            f"LoRA rank {spec.training.lora_r}" if spec.training.lora_r != defaults.lora_r else "",
            f"learning rate {spec.training.learning_rate:g}"
            if spec.training.learning_rate != defaults.learning_rate else "",
            f"at most {spec.training.max_steps} steps" if spec.training.max_steps else "",
            f"at most {spec.max_rounds} extra rounds" if spec.max_rounds != 2 else "",
            "merged into the base" if spec.merge else ""]
    said = [s for s in said if s]
    return line + (f" ({', '.join(said)})" if said else "")
