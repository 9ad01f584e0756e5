"""Rewrites of each chunk by a chat model, in the spirit of SPA: several texts that restate the
same facts in other words (key concepts, implications, a teacher's explanation) plus question/answer
pairs.

A fact is learned from many paraphrases of it, not from one copy (Ovadia et al. 2023), so each chunk
is sent once per style to any OpenAI-compatible endpoint (langchain-openai, JSON mode, replies
validated as pydantic objects). Requests run in parallel, at most `max_concurrency` at a time;
results come back in input order whatever order the replies arrive in.

Nothing the model writes is trusted. Every output is checked against its chunk (the chunk's text,
heading and document title), in input order, and dropped with a counted reason when it fails:
- "ungrounded: invented number": a number that the chunk does not state;
- "ungrounded: low support": too few of its content words occur in the chunk (stopwords and words
  of explanation such as "means" or "remember" do not count);
- "ungrounded: low similarity": with an embedder, its cosine similarity to the chunk is too low;
- "near-duplicate of its chunk": most of its word 4-grams are the chunk's own (a copy is no
  rewrite);
- "near-duplicate of another rewrite" / "near-duplicate question": too close to one already kept
  for the same document.
Request failures are counted by name too ("timeout", "API error (HTTP 500)", "API error
(connection)", "malformed output", "prose instead of JSON") and retried. After `give_up_after`
endpoint failures in a row (connection, timeout, HTTP 5xx/429/401/403/404), or twice as many
failures of any kind before the first usable reply, no further request is sent and
`endpoint_failed` is set: the caller then runs the offline generator (for `unanswered` chunks, or
all)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, Field, ValidationError

from tools.data.chunking import Chunk
from tools.data.examples import Example
from tools.data.generators import QAPair, QAPairs
from tools.data.quality import content
from tools.llm.prompt_files import render_prompt
from tools.text import words

if TYPE_CHECKING:
    from tools.llm.embeddings import Embedder

Style = Literal["key_concepts", "implications", "teacher", "qa"]
STYLES: tuple[Style, ...] = ("key_concepts", "implications", "teacher", "qa")
GENERATOR = "llm-rewrite"
ENDPOINT_FAILED = "endpoint failed"
NOT_SENT = "requests not sent (endpoint failed)"
# Statuses that say the endpoint cannot serve us now (down, overloaded, wrong key, URL or model).
_ENDPOINT_STATUSES = {401, 403, 404, 429}
# The calling thread waits for the workers in slices this long, so that an exception raised in it (a
# job's cancel, Ctrl-C) arrives within about this time even while every worker waits for a reply.
WAIT_SLICE_S = 0.25
# Words of explanation a rewrite adds without adding a fact; they do not count against its support.
_DISCOURSE_WORDS = (
    "means mean meaning example instance imagine think thinking remember key important "
    "importantly point points first second third finally next also therefore thus hence because "
    "since so however while whereas simply words plain put other passage text student students "
    "teacher explain explains explained explanation concept concepts idea ideas main summary "
    "summarise summarize short clear clearly follows follow following implies imply implication "
    "implications consequence consequences suggests suggest way ways turn result results why "
    "whether rather instead both each one ones another many much very more less well even just "
    "like about say says said called known refers refer"
)
_DISCOURSE = frozenset(_DISCOURSE_WORDS.split())
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?![\w])")
_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_SMALL_NUMBERS.split())} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
}


class RewriteTexts(BaseModel):
    """The structured reply of a prose style: the texts written for one passage."""

    rewrites: list[str] = Field(min_length=1, max_length=20)


@dataclass
class Rewrite:
    """One kept rewrite of a chunk: a document row for continued pretraining, with its grounding."""

    text: str
    style: str  # "key_concepts" | "implications" | "teacher"
    chunk_id: str
    doc_id: str
    source: str = ""
    support: float = 0.0  # share of its content words found in the chunk, 0..1
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RewriteResult:
    """What a run made and what went wrong. `endpoint_failed`: the run stopped asking (why in
    `endpoint_reason`); `unanswered`: chunk ids that got no valid reply for any style (in input
    order), for the offline generator."""

    rewrites: list[Rewrite]
    examples: list[Example]
    stats: Counter[str]
    endpoint_failed: bool = False
    unanswered: list[str] = field(default_factory=list)
    endpoint_reason: str = ""


@dataclass(frozen=True)
class RewriteChecks:
    """Thresholds of the grounding and near-duplicate checks."""

    min_support: float = 0.5  # prose rewrite: share of content words found in the chunk
    min_answer_support: float = 0.7  # QA answer: the same share, stricter (it restates the chunk)
    min_similarity: float = 0.5  # cosine to the chunk, when an embedder is given
    max_copy_share: float = 0.85  # share of the rewrite's word 4-grams that are the chunk's own
    max_duplicate: float = 0.8  # Jaccard of word 3-grams (rewrites) or content words (questions)
    min_words: int = 12  # a prose rewrite shorter than this says nothing


class _Task(NamedTuple):
    index: int
    chunk: Chunk
    source: str
    style: Style
    count: int


class _Failure(NamedTuple):
    reason: str
    endpoint: bool  # the endpoint itself failed (not the reply's content)


@dataclass
class _Reply:
    task: _Task
    value: RewriteTexts | QAPairs | None
    failures: list[str]
    sent: int


class _Candidate(NamedTuple):
    task: _Task
    text: str  # the rewrite, or the answer of a pair
    pair: QAPair | None


class _EndpointWatch:
    """Decides, across the workers, when to stop asking: after `give_up_after` endpoint failures in
    a row, or after twice as many failures of any kind before the first usable reply (an endpoint
    that answers but never with what was asked, e.g. a model that cannot write JSON)."""

    def __init__(self, give_up_after: int) -> None:
        self.give_up_after, self.in_a_row, self.before_first_reply = give_up_after, 0, 0
        self.answered, self.reason = False, ""
        self.gave_up = threading.Event()
        self.interrupted = threading.Event()  # the caller stopped waiting (a cancel): ask no more
        self._lock = threading.Lock()

    def record(self, outcome: BaseModel | _Failure) -> None:
        with self._lock:
            if not isinstance(outcome, _Failure):
                self.answered, self.in_a_row = True, 0
                return
            self.in_a_row = self.in_a_row + 1 if outcome.endpoint else 0
            self.before_first_reply += not self.answered
            if self.in_a_row >= self.give_up_after:
                self._give_up(
                    f"{self.in_a_row} endpoint failures in a row (last: {outcome.reason})")
            elif self.before_first_reply >= 2 * self.give_up_after:
                self._give_up(f"no usable reply in the first {self.before_first_reply} requests "
                              f"(last: {outcome.reason})")

    def _give_up(self, reason: str) -> None:
        if not self.gave_up.is_set():
            self.reason = reason
            self.gave_up.set()


_T = TypeVar("_T")
_R = TypeVar("_R")


def in_parallel(
    fn: Callable[[_T], _R], items: Sequence[_T], workers: int, stop: threading.Event
) -> list[_R]:
    """`fn` of every item, in input order, by up to `workers` daemon threads. The calling thread waits
    in short slices (it stays interruptible: a job's cancel arrives in it as an exception); when
    anything interrupts it, `stop` is set, no worker starts another item, and the calls still open
    are left to end on their own (their timeout) without holding up the caller or the process's exit.
    An exception raised by `fn` is raised here, after the other workers have stopped."""
    results: list[_R | None] = [None] * len(items)
    errors: list[BaseException] = []
    indices = iter(range(len(items)))
    take = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            with take:
                index = next(indices, None)
            if index is None:
                return
            try:
                results[index] = fn(items[index])
            except Exception as error:  # noqa: BLE001 - handed to the calling thread, which raises it
                errors.append(error)
                stop.set()

    threads = [threading.Thread(target=work, name=f"rewrite-{n}", daemon=True)
               for n in range(min(workers, len(items)))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(WAIT_SLICE_S)
    except BaseException:
        stop.set()
        raise
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every item ran: no worker stopped early


def style_counts(
    styles: Sequence[Style], rewrites_per_chunk: int, qa_pairs_per_chunk: int
) -> dict[Style, int]:
    """How many texts each style asks for: `rewrites_per_chunk` spread over the prose styles
    (4 over three styles: 2, 1, 1), `qa_pairs_per_chunk` for "qa"; styles with none are left out."""
    prose = [s for s in styles if s != "qa"]
    base, extra = divmod(rewrites_per_chunk, len(prose)) if prose else (0, 0)
    counts: dict[Style, int] = {s: base + (i < extra) for i, s in enumerate(prose)}
    if "qa" in styles:
        counts["qa"] = qa_pairs_per_chunk
    return {s: n for s, n in counts.items() if n > 0}


def rewrite_messages(
    chunk: Chunk, source: str, subject: str, style: Style, count: int
) -> list[tuple[str, str]]:
    """(role, content) messages for one chunk and style, from tools/llm/prompts/rewrite_system.txt and
    tools/llm/prompts/rewrite_<style>.txt."""
    system = render_prompt("rewrite_system", subject=subject)
    variables = {
        "title": source or "(untitled)",
        "heading": chunk.heading or "(none)",
        "passage": chunk.text,
        "count": str(count),
    }
    if style in ("teacher", "qa"):
        variables["subject"] = subject
    return [("system", system), ("user", render_prompt(f"rewrite_{style}", **variables))]


# -- checks ----------------------------------------------------------------------------------------


def numbers(text: str) -> set[str]:
    """The numbers a text states in digits, normalised ("1,000" -> "1000", "0.50" -> "0.5")."""
    found = set()
    for match in _NUMBER.finditer(text):
        value = match.group(0).replace(",", "")
        found.add(value.rstrip("0").rstrip(".") if "." in value else value.lstrip("0") or "0")
    return found


def invented_numbers(text: str, source: str) -> set[str]:
    """Numbers in `text` that `source` states neither in digits nor in words."""
    stated = numbers(source) | {_NUMBER_WORDS[w] for w in words(source) if w in _NUMBER_WORDS}
    return numbers(text) - stated


def support(text: str, source: str, ignore: frozenset[str] = frozenset()) -> float:
    """Share of the text's content words (stopwords and `ignore` left out) found in the source."""
    own = set(content(text)) - ignore
    return len(own & set(content(source))) / len(own) if own else 0.0


def shingles(text: str, size: int) -> set[str]:
    """The text's word n-grams (the whole text as one when it is shorter than `size`)."""
    tokens = words(text)
    return {" ".join(tokens[i : i + size]) for i in range(max(1, len(tokens) - size + 1))}


def copy_share(text: str, source: str, size: int = 4) -> float:
    """Share of the text's word 4-grams that occur in the source verbatim (1.0: a copy of it)."""
    own = shingles(text, size)
    return len(own & shingles(source, size)) / len(own) if own else 1.0


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def grounding_text(chunk: Chunk, source: str) -> str:
    """What an output may draw on: the chunk, its heading and its document's title."""
    return "\n".join(part for part in (source, chunk.heading, chunk.text) if part)


# -- the generator ---------------------------------------------------------------------------------


class RewriteGenerator:
    """Rewrites and QA pairs of chunks from an OpenAI-compatible chat model, checked, counted."""

    name = GENERATOR

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        subject: str,
        styles: Sequence[Style] = STYLES,
        rewrites_per_chunk: int = 3,
        qa_pairs_per_chunk: int = 4,
        max_concurrency: int = 4,
        timeout_s: float = 60.0,
        retries: int = 2,
        give_up_after: int = 6,
        backoff_s: float = 0.5,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        checks: RewriteChecks | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        from tools.llm.chat_model import StructuredOutput, build_chat

        unknown = set(styles) - set(STYLES)
        if unknown or not styles:
            raise ValueError(
                f"unknown rewrite styles {sorted(unknown)}; choose from {list(STYLES)}"
            )
        if max_concurrency < 1 or give_up_after < 1 or retries < 0:
            raise ValueError(
                "max_concurrency and give_up_after must be at least 1, retries at least 0"
            )
        # Retries are ours (counted per reason), not the client's silent ones (max_retries=0).
        chat = build_chat(
            model,
            base_url,
            api_key,
            timeout_s=timeout_s,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        self._structured = {
            schema: StructuredOutput(chat, schema, "json_mode")
            for schema in (RewriteTexts, QAPairs)
        }
        self.model, self.subject = model, subject
        self.counts = style_counts(styles, rewrites_per_chunk, qa_pairs_per_chunk)
        self.max_concurrency, self.retries, self.backoff_s = max_concurrency, retries, backoff_s
        self.give_up_after, self.embedder = give_up_after, embedder
        self.checks = checks or RewriteChecks()

    def run(self, items: Sequence[tuple[Chunk, str]]) -> RewriteResult:
        """Rewrites and QA examples for each (chunk, source title), in input order."""
        tasks = [
            _Task(i, chunk, source, style, count)
            for i, (chunk, source) in enumerate(items)
            for style, count in self.counts.items()
        ]
        watch = _EndpointWatch(self.give_up_after)
        replies = in_parallel(lambda task: self._fetch(task, watch), tasks, self.max_concurrency,
                              watch.interrupted)
        stats = Counter({"chunks": len(items)})
        for reply in replies:
            stats["requests"] += reply.sent
            stats[NOT_SENT] += reply.sent == 0
            stats.update(reply.failures)
            stats["replies"] += reply.value is not None
        stats[ENDPOINT_FAILED] += watch.gave_up.is_set()
        rewrites, examples = self._check(replies, stats)
        answered = {r.task.index for r in replies if r.value is not None}
        unanswered = [chunk.chunk_id for i, (chunk, _) in enumerate(items) if i not in answered]
        gave_up = watch.gave_up.is_set()
        return RewriteResult(rewrites, examples, +stats, gave_up, unanswered, watch.reason)

    # -- requests (in the worker threads) -------------------------------------------------------

    def _fetch(self, task: _Task, watch: _EndpointWatch) -> _Reply:
        """Up to 1 + retries requests for one task; none once the endpoint has been given up on."""
        schema = QAPairs if task.style == "qa" else RewriteTexts
        messages = rewrite_messages(task.chunk, task.source, self.subject, task.style, task.count)
        failures: list[str] = []
        for attempt in range(self.retries + 1):
            if watch.gave_up.is_set() or watch.interrupted.is_set():
                break
            outcome = self._ask(schema, messages)
            watch.record(outcome)
            if not isinstance(outcome, _Failure):
                return _Reply(task, outcome, failures, attempt + 1)
            failures.append(outcome.reason)
            if outcome.endpoint and outcome.reason != "timeout" and attempt < self.retries:
                # back off; the wait ends at once when the run gives up
                watch.gave_up.wait(self.backoff_s * 2**attempt)
        return _Reply(task, None, failures, len(failures))

    def _ask(
        self, schema: type[BaseModel], messages: list[tuple[str, str]]
    ) -> BaseModel | _Failure:
        """One request: the validated reply, or the failure's name and whether the endpoint
        caused it."""
        import openai

        try:
            reply: dict[str, Any] = self._structured[schema].invoke(messages)
        except openai.APITimeoutError:
            return _Failure("timeout", True)
        except openai.LengthFinishReasonError:
            return _Failure("truncated output", False)
        except openai.APIStatusError as error:
            status = error.status_code
            return _Failure(
                f"API error (HTTP {status})", status >= 500 or status in _ENDPOINT_STATUSES
            )
        except openai.APIConnectionError:
            return _Failure("API error (connection)", True)
        except (ValidationError, ValueError):
            return _Failure("malformed output", False)
        parsed = reply.get("parsed")
        if isinstance(parsed, schema):
            return parsed
        text = str(getattr(reply.get("raw"), "content", "")).lstrip()
        return _Failure(
            "malformed output" if text.startswith(("{", "[")) else "prose instead of JSON", False
        )

    # -- checks (in the calling thread, in input order) -----------------------------------------

    def _check(
        self, replies: Sequence[_Reply], stats: Counter[str]
    ) -> tuple[list[Rewrite], list[Example]]:
        candidates = [c for reply in replies for c in _candidates(reply, stats)]
        stats["outputs"] += len(candidates)
        similarities = self._similarities(candidates)
        rewrites: list[Rewrite] = []
        examples: list[Example] = []
        kept_shingles: dict[str, list[set[str]]] = {}
        kept_questions: dict[str, list[set[str]]] = {}
        for candidate, similarity in zip(candidates, similarities, strict=True):
            doc_id = candidate.task.chunk.doc_id
            if candidate.pair is None:
                verdict = self._judge_rewrite(
                    candidate, similarity, kept_shingles.setdefault(doc_id, [])
                )
                if isinstance(verdict, Rewrite):
                    rewrites.append(verdict)
            else:
                verdict = self._judge_pair(
                    candidate, similarity, kept_questions.setdefault(doc_id, [])
                )
                if isinstance(verdict, Example):
                    examples.append(verdict)
            if isinstance(verdict, str):
                stats[verdict] += 1
        stats["rewrites kept"], stats["qa pairs kept"] = len(rewrites), len(examples)
        return rewrites, examples

    def _similarities(self, candidates: Sequence[_Candidate]) -> list[float | None]:
        """Each candidate's cosine similarity to its chunk (None without an embedder)."""
        if self.embedder is None or not candidates:
            return [None] * len(candidates)
        chunks = {c.task.chunk.chunk_id: c.task.chunk.text for c in candidates}
        chunk_vectors = dict(zip(chunks, self.embedder.embed(list(chunks.values())), strict=True))
        vectors = self.embedder.embed([c.text for c in candidates])
        return [
            float(v @ chunk_vectors[c.task.chunk.chunk_id])
            for c, v in zip(candidates, vectors, strict=True)
        ]

    def _grounding_failure(
        self,
        text: str,
        source: str,
        minimum: float,
        ignore: frozenset[str],
        similarity: float | None,
    ) -> tuple[str | None, float]:
        """(why the text is not grounded in the source, or None; its support)."""
        share = support(text, source, ignore)
        if invented_numbers(text, source):
            return "ungrounded: invented number", share
        if share < minimum:
            return "ungrounded: low support", share
        if similarity is not None and similarity < self.checks.min_similarity:
            return "ungrounded: low similarity", share
        return None, share

    def _judge_rewrite(
        self, candidate: _Candidate, similarity: float | None, kept: list[set[str]]
    ) -> Rewrite | str:
        """The kept Rewrite, or why it was dropped; `kept`: 3-grams of the document's kept ones."""
        task, text, checks = candidate.task, candidate.text.strip(), self.checks
        if len(words(text)) < checks.min_words:
            return "too short"
        source = grounding_text(task.chunk, task.source)
        failure, share = self._grounding_failure(
            text, source, checks.min_support, _DISCOURSE, similarity
        )
        if failure:
            return failure
        copied = copy_share(text, task.chunk.text)
        if copied > checks.max_copy_share:
            return "near-duplicate of its chunk"
        grams = shingles(text, 3)
        if any(jaccard(grams, other) >= checks.max_duplicate for other in kept):
            return "near-duplicate of another rewrite"
        kept.append(grams)
        metadata = {
            "generator": GENERATOR,
            "style": task.style,
            "model": self.model,
            "copy_share": round(copied, 3),
        }
        if similarity is not None:
            metadata["similarity"] = round(similarity, 3)
        return Rewrite(
            text,
            task.style,
            task.chunk.chunk_id,
            task.chunk.doc_id,
            task.source,
            round(share, 3),
            metadata,
        )

    def _judge_pair(
        self, candidate: _Candidate, similarity: float | None, kept: list[set[str]]
    ) -> Example | str:
        """The kept Example, or why it was dropped; `kept`: words of the document's questions."""
        task, pair = candidate.task, candidate.pair
        assert pair is not None
        question, answer = pair.question.strip(), pair.answer.strip()
        source = grounding_text(task.chunk, task.source)
        if invented_numbers(question, source):
            return "ungrounded: invented number"
        failure, share = self._grounding_failure(
            answer, source, self.checks.min_answer_support, frozenset(), similarity
        )
        if failure:
            return failure
        asked = set(content(question))
        if any(jaccard(asked, other) >= self.checks.max_duplicate for other in kept):
            return "near-duplicate question"
        kept.append(asked)
        metadata = {
            "generator": GENERATOR,
            "style": "qa",
            "model": self.model,
            "support": round(share, 3),
        }
        return Example(
            question,
            answer,
            task.chunk.chunk_id,
            task.chunk.doc_id,
            pair.type,
            task.source,
            metadata=metadata,
        )


def _candidates(reply: _Reply, stats: Counter[str]) -> list[_Candidate]:
    """The outputs of one reply, at most as many as were asked for (the rest only counted)."""
    if isinstance(reply.value, QAPairs):
        made = [_Candidate(reply.task, p.answer, p) for p in reply.value.pairs]
    elif isinstance(reply.value, RewriteTexts):
        made = [_Candidate(reply.task, t, None) for t in reply.value.rewrites]
    else:
        return []
    stats["outputs beyond the count asked"] += max(0, len(made) - reply.task.count)
    return made[: reply.task.count]
