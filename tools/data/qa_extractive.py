"""Extractive question/answer synthesis with no LLM: every answer is text of its source passage.

A passage is read fact by fact (tools/data/facts.py: sentences with their section's role, lists, table rows);
each fact gives several questions of different forms (tools/data/questions.py), each of which must pass the
question gate (tools/data/question_gate.py). Structured abstracts also get one question per section naming
the study. A fact no form fits gives a continuation (cloze) item, which the generator node caps at a
small share of the QA rows."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tools.data.chunking import Chunk
from tools.data.examples import Example
from tools.data.facts import Fact, passage_facts
from tools.data.question_gate import question_problem
from tools.data.questions import (
    Question,
    cloze_question,
    contiguous_facts,
    heading_question,
    list_question,
    sentence_questions,
    table_questions,
)
from tools.data.study import inferred_role, section_questions, study_anchor, study_questions, without_enrolment
from tools.text import without_statistics, words

RESTATING_FORMS = frozenset({"yes_no", "subject", "value", "how_many"})  # answers restate their question


def quality_score(question: str, answer: str, form: str = "") -> float:
    """Weighted heuristic score: coherence 0.3, factual consistency 0.3, complexity 0.2, format 0.2."""
    answer_words, question_words = words(answer), words(question)
    coherence = 1.0 if answer[:1].isupper() and answer.rstrip().endswith((".", "!", "?")) else 0.5
    factual = 1.0  # extractive: the answer is source text by construction (checked by the caller)
    overlap = len(set(answer_words) & set(question_words)) / max(1, len(set(answer_words)))
    complexity = min(1.0, len(answer_words) / 20) * (1.0 if overlap < 0.8 or form in RESTATING_FORMS else 0.3)
    well_formed = question.endswith(("?", ".")) and 3 <= len(question_words) <= 30
    fits = 6 <= len(answer_words) <= 90
    format_score = (0.5 if well_formed else 0.0) + (0.5 if fits else 0.0)
    return round(0.3 * coherence + 0.3 * factual + 0.2 * complexity + 0.2 * format_score, 3)


def _fact_questions(fact: Fact, table_name: str) -> list[Question]:
    if fact.kind == "list":
        return [q for q in [list_question(fact)] if q]
    if fact.kind == "table":
        return table_questions(fact, table_name)
    return sentence_questions(fact.text)


_SITUATED = frozenset({"yes_no", "subject", "value", "how_many", "object", "cause"})
_GENERIC = re.compile(r"\b(?:the|both|each|all|either) (?:\w+ )?"
                      r"(?:patients?|groups?|participants?|subjects?|cohorts?|samples?|trend|arms?|cases?|"
                      r"controls?|period|population|women|men|children)\b|^What (?:was|were) "
                      r"(?:the )?(?:mean|median|overall|total)\b", re.IGNORECASE)


def situated(question: Question, study: str | None) -> Question:
    """A sentence question about a study names it when it is short, asks for a count (only one study knows
    "How many patients had radical surgery?") or speaks of "the patients", "both groups" (answerable without
    the passage: the reader knows which study is meant)."""
    if not study or question.form not in _SITUATED or study.lower() in question.question.lower():
        return question
    if len(question.question.split()) > 12 and question.form != "how_many" and not _GENERIC.search(question.question):
        return question
    return Question(f"{question.question.rstrip('?')} in {study}?", question.answer, question.form)


@dataclass(frozen=True)
class DocumentContext:
    """What a chunk's questions may know of its whole document: how to name the study (its aim may sit in
    another chunk than its results), the study's own questions ("Does X reduce Y?"), and the chunk that
    holds its findings (which answer those questions)."""

    study: str | None = None
    aim_questions: tuple[str, ...] = ()
    findings_chunk: str | None = None
    # the chunks known to open a section (see `_section_openers`): only they answer "What is <heading>?";
    # None when the document's other chunks are not known
    section_openers: frozenset[str] | None = None

    def opens_section(self, chunk: Chunk) -> bool:
        return self.section_openers is None or chunk.chunk_id in self.section_openers


def _section_openers(ordered: Sequence[Chunk]) -> frozenset[str]:
    """The first chunk of the document and each chunk whose predecessor has another heading (a chunk whose
    predecessor was not kept is not known to open its section)."""
    by_position = {c.position: c for c in ordered}
    return frozenset(c.chunk_id for c in ordered if c.position == 0 or (
        (before := by_position.get(c.position - 1)) is not None and before.heading != c.heading))


def document_context(chunks: Sequence[Chunk], source: str) -> DocumentContext:
    """The context of one document's chunks (any order); only the section openers for text that reports
    no study."""
    ordered = sorted(chunks, key=lambda c: c.position)
    by_chunk = [(c, passage_facts(c.text, c.heading)) for c in ordered]
    facts = [f for _, chunk_facts in by_chunk for f in chunk_facts]
    openers = _section_openers(ordered)
    if not any(inferred_role(f) for f in facts):
        return DocumentContext(section_openers=openers)
    findings = None
    for role in ("conclusion", "results"):
        holding = [c.chunk_id for c, chunk_facts in by_chunk if any(inferred_role(f) == role for f in chunk_facts)]
        if holding:
            findings = holding[-1]
            break
    return DocumentContext(study_anchor(source, facts), tuple(study_questions(facts)), findings, openers)


def findings_span(facts: Sequence[Fact]) -> list[Fact]:
    """The sentences that answer a study's own question, one span of the passage: its conclusion (first
    three sentences), else the last three sentences of its results, where the main comparison usually is,
    from the first that reports a finding ("We studied 122 patients …" is no finding)."""
    sentences = [f for f in facts if f.kind == "sentence"]
    conclusion = [f for f in sentences if inferred_role(f) == "conclusion"]
    if conclusion:
        return contiguous_facts(conclusion, 3)
    tail: list[Fact] = []
    for fact in reversed([f for f in sentences if inferred_role(f) == "results"]):
        if len(tail) == 3 or (tail and fact.index != tail[0].index - 1):
            break
        tail.insert(0, fact)
    return without_enrolment(tail)


def _findings_questions(chunk: Chunk, facts: Sequence[Fact],
                        context: DocumentContext | None) -> list[tuple[Question, tuple[int, ...]]]:
    """The study's own questions and "What were the main findings of <study>?", answered by its findings
    (several phrasings of the one thing a reader most wants to know of a study), worded as a conclusion
    words them: the span without its statistical asides (p-values, intervals, ranges in parentheses)."""
    if not context or context.findings_chunk != chunk.chunk_id:
        return []
    span = findings_span(facts)
    if not span:
        return []
    asked = list(context.aim_questions)
    if context.study:
        asked.append(f"What were the main findings of {context.study}?")
    answer, fact_ids = without_statistics(" ".join(f.text for f in span)), tuple(f.index for f in span)
    return [(Question(q, answer, "findings"), fact_ids) for q in asked]


def _heading_questions(chunk: Chunk, facts: Sequence[Fact],
                       context: DocumentContext | None) -> list[tuple[Question, tuple[int, ...]]]:
    """"What is <heading>?" answered by the opening sentences of its section: the chunk's own heading when
    the chunk opens its section (a later chunk starts mid-section), and each heading line inside it."""
    headings = list(dict.fromkeys(f.heading for f in facts if f.heading and f.heading != chunk.heading))
    if context is None or context.opens_section(chunk):
        headings.insert(0, chunk.heading)
    asked = (heading_question(heading, [f for f in facts if f.heading == heading]) for heading in headings)
    return [question for question in asked if question]


def candidate_questions(chunk: Chunk, source: str, max_per_fact: int = 3, allow_cloze: bool = True,
                        context: DocumentContext | None = None) -> list[tuple[Question, tuple[int, ...]]]:
    """Every question the passage gives, with the indices of the facts each answer holds. With the
    document's context, the study is named even when its aim is in another chunk, and the chunk with the
    findings answers the study's own questions."""
    facts = passage_facts(chunk.text, chunk.heading)
    research = any(inferred_role(f) for f in facts)
    study = context.study if context and context.study else (
        study_anchor(source, facts) if research or len(facts) > 2 else None)
    found: list[tuple[Question, tuple[int, ...]]] = _findings_questions(chunk, facts, context)
    found += section_questions(facts, study) if study and research else []
    if not research:
        found += _heading_questions(chunk, facts, context)
    table_name = chunk.heading if chunk.heading and len(chunk.heading.split()) <= 8 else ""
    for fact in facts:
        anchor = study if research else None
        made = [situated(q, anchor) for q in _fact_questions(fact, table_name) if q.question][:max_per_fact]
        if not made and allow_cloze and fact.kind == "sentence" and (cloze := cloze_question(fact.text)):
            made = [cloze]
        found += [with_next_sentence(q, fact, facts) for q in made]
    return found


MAX_SPAN_WORDS = 80  # an answer of two sentences stays a short answer


def with_next_sentence(question: Question, fact: Fact, facts: Sequence[Fact]) -> tuple[Question, tuple[int, ...]]:
    """A sentence question answered by its sentence and the next one of the same section (one span of the
    passage): the first restates what was asked ("Yes. Hippocampal atrophy predicts cognitive decline."), the
    second says what the passage adds. Trained on restatements alone, a model learns to echo any question it
    is asked. Continuations (cloze), the last sentence of a section and over-long spans keep one sentence."""
    following = next((f for f in facts if f.index == fact.index + 1), None)
    if question.form == "cloze" or fact.kind != "sentence" or following is None or following.kind != "sentence" \
            or following.role != fact.role or following.heading != fact.heading \
            or len(f"{question.answer} {following.text}".split()) > MAX_SPAN_WORDS:
        return question, (fact.index,)
    return Question(question.question, f"{question.answer} {following.text}", question.form), (fact.index,
                                                                                                following.index)


def generate_candidates(chunk: Chunk, source: str, max_per_chunk: int = 12, min_score: float = 0.6,
                        allow_cloze: bool = True, max_per_fact: int = 3,
                        context: DocumentContext | None = None) -> tuple[list[Example], Counter[str]]:
    """Examples from one chunk that pass the question gate, and the count of rejected questions by reason."""
    rejected: Counter[str] = Counter()
    examples: list[Example] = []
    for question, fact_ids in candidate_questions(chunk, source, max_per_fact, allow_cloze, context):
        if problem := question_problem(question.question):
            rejected[problem] += 1
            continue
        example = _example(question, chunk, source, fact_ids)
        if example.quality_score >= min_score:
            examples.append(example)
    return examples[:max_per_chunk], rejected


def generate_examples(chunk: Chunk, source: str, max_per_chunk: int = 12, min_score: float = 0.6,
                      allow_cloze: bool = True, max_per_fact: int = 3) -> list[Example]:
    """Examples from one chunk; each answer is passage text (behind "Yes."/"No." for yes/no questions)."""
    return generate_candidates(chunk, source, max_per_chunk, min_score, allow_cloze, max_per_fact)[0]


def _example(question: Question, chunk: Chunk, source: str, fact_ids: tuple[int, ...]) -> Example:
    return Example(
        question=question.question,
        answer=question.answer,
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        type=question.form,
        source=source,
        quality_score=quality_score(question.question, question.answer, question.form),
        metadata={"facts": [f"{chunk.chunk_id}:{i}" for i in fact_ids]},
    )
