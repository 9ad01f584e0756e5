"""Quality checks for text and examples.

Text filters (per chunk): too short, symbol-heavy, boilerplate, reference lists, OCR garbage, and the
language (py3langid, whose model ships inside the wheel: no download, works offline).

The example gate scores each question/answer pair against its source chunk:
coherence 0.3, factual consistency 0.3, complexity 0.2, format 0.2. An example is kept at a score of
`keep_score` or more, or at `review_score` or more when it also passes the extra checks (both support
signals clear their thresholds with margin, and the answer is a complete sentence). Hard failures
(unsupported answer, malformed question, answer repeating the question, lengths out of limits) drop an
example whatever its score."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from tools.data.dedup import find_duplicates
from tools.data.examples import Example
from tools.data.qa_extractive import RESTATING_FORMS
from tools.data.question_gate import question_problem
from tools.text import without_statistics, words

_STOPWORDS = frozenset([
    "a", "an", "the", "and", "or", "but", "of", "on", "in", "for", "to", "with", "about", "from",
    "by", "at", "as", "into", "is", "are", "was", "were", "be", "been", "being", "this", "that",
    "these", "those", "it", "its", "their", "there", "here", "which", "what", "who", "how", "why",
    "when", "where", "not", "no", "can", "could", "may", "might", "will", "would", "should", "must",
    "has", "have", "had", "do", "does", "did", "than", "then", "so", "such", "also"
])
_BOILERPLATE = re.compile(
    r"\b(?:cookies?|privacy policy|terms of (?:use|service)|all rights reserved|subscribe|sign (?:in|up)|"
    r"log ?in|newsletter|click here|share (?:this|on)|follow us|copyright ©?|skip to (?:main )?content|"
    r"advertisement|accept all)\b", re.IGNORECASE)
_REFERENCE_LINE = re.compile(
    r"(?:^\s*\[\d+\]|^\s*\d{1,3}\.\s+[A-Z][a-z]+,? [A-Z]\.|\bet al\.|\bdoi:|\barXiv:\d|\(\d{4}\)|"
    r"\b(?:Phys\. Rev|Nature|Science|Proc\.|J\. )\b)")
_QUESTION_START = re.compile(
    r"^(?:what|why|how|which|who|whom|whose|when|where|is|are|was|were|does|do|did|can|could|should|"
    r"would|will|has|have|in what|to what|explain|describe|compare|complete|fill in the blank)\b", re.IGNORECASE)


# -- text filters ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)  # the model inside the wheel


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the text's language."""
    language, probability = _identifier().classify(text)
    return str(language), float(probability)


def symbol_ratio(text: str) -> float:
    """Share of non-space characters that are neither letters nor common punctuation."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return 1.0
    return sum(not (c.isalpha() or c in ".,;:'\"()-?!") for c in visible) / len(visible)


def garbage_ratio(text: str) -> float:
    """Share of word-like tokens that look like OCR debris: no vowel, mixed case or digits inside
    letters, or a single letter other than 'a'/'I'."""
    tokens = re.findall(r"\S+", text)
    if not tokens:
        return 1.0
    bad = 0
    for token in tokens:
        core = token.strip(".,;:()[]\"'!?")
        if not core.isalpha():
            bad += bool(re.search(r"[A-Za-z]\d|\d[A-Za-z]", core)) and not re.fullmatch(r"[A-Z]+\d*", core)
            continue
        lower = core.lower()
        no_vowel = len(core) > 3 and not re.search(r"[aeiouy]", lower)
        mixed = re.search(r"[a-z][A-Z]", core) is not None and not core[0].isupper()
        bad += no_vowel or mixed or (len(core) == 1 and lower not in "ai")
    return bad / len(tokens)


def reference_share(text: str) -> float:
    """Share of the text's lines (or sentences, for one-line text) that look like citations."""
    parts = [p for p in text.splitlines() if p.strip()]
    if len(parts) < 3:
        parts = [p for p in re.split(r"(?<=[.;])\s+(?=\[?\d|[A-Z])", text) if p.strip()]
    if not parts:
        return 0.0
    return sum(bool(_REFERENCE_LINE.search(p)) for p in parts) / len(parts)


def text_problem(text: str, min_words: int = 25, max_symbol_ratio: float = 0.25,
                 max_garbage_ratio: float = 0.2, max_reference_share: float = 0.5) -> str | None:
    """The first reason a passage is not worth training on, or None when it is fine."""
    if len(text.split()) < min_words:
        return "too short"
    if reference_share(text) > max_reference_share:
        return "reference list"
    if symbol_ratio(text) > max_symbol_ratio:
        return "symbol-heavy"
    if len(_BOILERPLATE.findall(text)) >= 2:
        return "boilerplate"
    if garbage_ratio(text) > max_garbage_ratio:
        return "OCR garbage"
    return None


# -- the example gate -----------------------------------------------------------------------------
@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the example gate (from the job spec's generation section)."""

    min_lexical_support: float = 0.6
    min_semantic_support: float = 0.45
    keep_score: float = 0.75
    review_score: float = 0.6
    min_question_words: int = 3
    max_question_words: int = 40
    min_answer_words: int = 4
    max_answer_words: int = 150
    max_question_overlap: float = 0.8


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one example, with every part of its score."""

    kept: bool
    score: float
    reason: str  # "kept", "kept after review", or why it was dropped
    parts: dict[str, float]
    difficulty: str


def content(text: str) -> list[str]:
    """Lower-case words without stopwords."""
    return [w for w in words(text) if w not in _STOPWORDS]


def lexical_support(answer: str, source: str) -> float:
    """Share of the answer's content words that occur in the source."""
    answer_words = set(content(answer))
    return len(answer_words & set(content(source))) / len(answer_words) if answer_words else 0.0


def verbatim_span(answer: str, source: str) -> bool:
    """Whether the answer is passage text word for word (behind "Yes."/"No." for yes/no answers), or passage
    text with its statistical asides left out: such an answer is grounded by construction, whatever an
    embedding says of one sentence against a long chunk."""
    body = " ".join(re.sub(r"^(?:Yes|No)\.\s+", "", answer.strip()).split())
    return len(body.split()) >= 3 and (body in " ".join(source.split()) or body in without_statistics(source))


def question_overlap(question: str, answer: str) -> float:
    """Share of the answer's content words that the question already says."""
    answer_words = set(content(answer))
    return len(answer_words & set(content(question))) / len(answer_words) if answer_words else 1.0


def well_formed_question(question: str, config: GateConfig) -> bool:
    """A question (or an imperative like 'Explain …') of sensible length, ending in ? or ."""
    count = len(question.split())
    return (config.min_question_words <= count <= config.max_question_words
            and question.rstrip().endswith(("?", "."))
            and bool(_QUESTION_START.match(question.strip())))


def difficulty(kind: str, answer: str) -> str:
    """easy: cloze and short answers; hard: cause/comparison or long multi-sentence answers."""
    length = len(answer.split())
    if kind == "cloze" or length < 15:
        return "easy"
    if kind in {"cause", "comparison", "reasoning"} or length > 45:
        return "hard"
    return "medium"


def _hard_failure(question: str, answer: str, kind: str, lexical: float, semantic: float,
                  config: GateConfig, verbatim: bool = False) -> str | None:
    answer_words = len(answer.split())
    if not config.min_answer_words <= answer_words <= config.max_answer_words:
        return "answer length out of limits"
    if problem := question_problem(question, config.min_question_words, config.max_question_words):
        return f"question: {problem}"
    # cloze continues its quote; yes/no, subject, value and how-many answers restate their question by nature
    # ("Did X raise Y?" -> "Yes. X raised Y."): what they teach is the part the question leaves open
    if kind not in RESTATING_FORMS | {"cloze"} and question_overlap(question, answer) > config.max_question_overlap:
        return "answer repeats the question"
    if lexical < config.min_lexical_support or (semantic < config.min_semantic_support and not verbatim):
        return "answer not supported by its chunk"
    return None


def _parts(question: str, answer: str, kind: str, lexical: float, semantic: float,
           config: GateConfig, verbatim: bool = False) -> dict[str, float]:
    # a cloze answer continues a quoted opening, so it starts mid-sentence
    complete = (answer[:1].isupper() or kind == "cloze") and answer.rstrip().endswith((".", "!", "?"))
    coherence = (0.6 if complete else 0.2) + 0.4 * min(1.0, len(set(content(answer))) / 6)
    factual = 0.5 * min(1.0, lexical / max(config.min_lexical_support, 1e-6)) \
        + 0.5 * (1.0 if verbatim else min(1.0, semantic / max(config.min_semantic_support, 1e-6)))
    novelty = 0.7 if kind in RESTATING_FORMS else 1.0 - question_overlap(question, answer)
    length_fit = min(1.0, len(answer.split()) / 20)
    type_weight = {"cloze": 0.4}.get(kind, 1.0)
    complexity = type_weight * (0.5 * length_fit + 0.5 * novelty)
    format_score = 0.5 * float(question.rstrip().endswith("?") or kind in {"cause", "cloze"}) + 0.5 * float(
        config.min_answer_words <= len(answer.split()) <= config.max_answer_words)
    return {"coherence": round(coherence, 3), "factual_consistency": round(factual, 3),
            "complexity": round(complexity, 3), "format": round(format_score, 3),
            "lexical_support": round(lexical, 3), "semantic_support": round(semantic, 3),
            "verbatim": float(verbatim)}


WEIGHTS = {"coherence": 0.3, "factual_consistency": 0.3, "complexity": 0.2, "format": 0.2}


def judge_example(question: str, answer: str, kind: str, source: str, semantic: float | None,
                  config: GateConfig = GateConfig()) -> Verdict:
    """Score one example against its source chunk (`semantic`: cosine of answer and chunk embeddings; None
    when not measured: a verbatim answer needs none, any other then counts as unsupported)."""
    lexical, verbatim = lexical_support(answer, source), verbatim_span(answer, source)
    measured = 0.0 if semantic is None else semantic
    parts = _parts(question, answer, kind, lexical, measured, config, verbatim)
    if semantic is None:
        parts["semantic_support"] = None
    score = round(sum(parts[name] * weight for name, weight in WEIGHTS.items()), 3)
    level = difficulty(kind, answer)
    if failure := _hard_failure(question, answer, kind, lexical, measured, config, verbatim):
        return Verdict(False, score, failure, parts, level)
    if score >= config.keep_score:
        return Verdict(True, score, "kept", parts, level)
    if score >= config.review_score and _passes_review(answer, lexical, measured, config, verbatim):
        return Verdict(True, score, "kept after review", parts, level)
    return Verdict(False, score, "score below threshold", parts, level)


def _passes_review(answer: str, lexical: float, semantic: float, config: GateConfig,
                   verbatim: bool = False) -> bool:
    """Extra checks for a borderline score: support with margin and a complete sentence."""
    return (lexical >= min(1.0, config.min_lexical_support + 0.2)
            and (verbatim or semantic >= config.min_semantic_support + 0.1)
            and answer[:1].isupper() and answer.rstrip().endswith((".", "!", "?")))


# -- balance --------------------------------------------------------------------------------------
def balance(labels: Sequence[tuple[str, str]], scores: Sequence[float], max_share: float = 0.6,
            max_difficulty_share: float = 0.8) -> set[int]:
    """Indices to drop so that no question type holds more than `max_share` of the examples and no
    difficulty more than `max_difficulty_share` (the lowest-scoring of an over-represented group go
    first). Difficulty gets the looser cap: real prose has many short factual sentences, and dropping
    their questions loses facts. A single-group dataset is left alone: dropping would only lose data."""
    dropped: set[int] = set()
    for axis, share in ((0, max_share), (1, max(max_share, max_difficulty_share))):
        alive = [i for i in range(len(labels)) if i not in dropped]
        groups: dict[str, list[int]] = defaultdict(list)
        for index in alive:
            groups[labels[index][axis]].append(index)
        if len(groups) < 2:
            continue
        others = Counter({g: len(m) for g, m in groups.items()})
        for group, members in groups.items():
            rest = sum(others.values()) - others[group]
            # the largest count c with c <= max_share * (c + rest)
            cap = max(1, math.floor(share * rest / (1 - share))) if share < 1 else len(members)
            if len(members) > cap:
                dropped |= set(sorted(members, key=lambda i: scores[i])[: len(members) - cap])
    return dropped


def gate_examples(examples: Sequence[Example], sources: Mapping[str, str], semantic: Sequence[float | None],
                  config: GateConfig = GateConfig(), duplicate_threshold: float = 0.9,
                  max_share: float = 0.6) -> tuple[list[Example], Counter[str]]:
    """The examples that pass the gate (score, difficulty and verdict in their metadata), without
    near-duplicates, balanced by type and difficulty; and a count of every drop by reason.
    `sources` maps chunk_id -> chunk text; `semantic[i]` is example i's answer/chunk cosine (None: not
    measured, see `judge_example`)."""
    dropped: Counter[str] = Counter()
    passed: list[Example] = []
    for example, similarity in zip(examples, semantic, strict=True):
        verdict = judge_example(example.question, example.answer, example.type, sources[example.chunk_id],
                                None if similarity is None else float(similarity), config)
        if not verdict.kept:
            dropped[verdict.reason] += 1
            continue
        metadata = {**example.metadata, "difficulty": verdict.difficulty, "gate": verdict.reason,
                    "quality": verdict.parts}
        passed.append(replace(example, quality_score=verdict.score, metadata=metadata))
    duplicates = find_duplicates([f"{e.question} {e.answer}" for e in passed], duplicate_threshold)
    dropped["near-duplicate example"] += len(duplicates)
    passed = [e for i, e in enumerate(passed) if i not in duplicates]
    unbalanced = balance([(e.type, e.metadata["difficulty"]) for e in passed], [e.quality_score for e in passed],
                         max_share)
    dropped["balance (over-represented type or difficulty)"] += len(unbalanced)
    return [e for i, e in enumerate(passed) if i not in unbalanced], +dropped
