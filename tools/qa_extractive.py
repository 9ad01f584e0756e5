"""Extractive question/answer synthesis with no LLM: every answer is text of its source chunk.

Questions come from sentence patterns (definitions, cause/effect, comparisons, what a thing
does); a sentence that fits no pattern gives no question (cloze questions are a last resort
for chunks that would otherwise give nothing)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from tools.chunking import Chunk
from tools.text import split_sentences, words

_DETERMINER = r"(?P<det>The |A |An )?"
_DEFINITION = re.compile(
    rf"^{_DETERMINER}(?P<term>[A-Za-z0-9][\w\-/() ]{{1,60}}?)\s+(?P<verb>is|are|refers to|describes|denotes)\s+"
    r"(?P<rest>.+)$"
)
_ARTICLE = re.compile(r"^(?:a|an|the|one|any)\s")
_NOT_A_NOUN = re.compile(r"^(?:\w+ed|\w+ly|not|also|very|more|less|often|usually|able|used|important|"
                         r"essential|necessary|possible|difficult|easy|common|rare|typically)\b")
_CAUSE = re.compile(r"^(?P<effect>.{12,}?),? because (?P<cause>.{8,})$")
_UNLIKE = re.compile(r"^(?:Unlike|In contrast to|Compared with|Compared to) (?P<other>[^,]{3,60}), (?P<term>.{3,60}?)\s+(?:is|are|does|do|can|cannot|must|has|have|uses|use|requires|require|needs|need|protects|protect|encodes|encode)\b")
_ACTION = re.compile(
    rf"^{_DETERMINER}(?P<term>[A-Za-z0-9][\w\-/ ]{{1,50}}?)\s+(?P<verb>uses|use|requires|require|protects|protect|"
    r"encodes|encode|corrects|correct|detects|detect|measures|measure|allows|allow|provides|provide|"
    r"consists of|consist of|relies on|rely on|combines|combine|reduces|reduce|increases|increase|"
    r"prevents|prevent|produces|produce|replaces|replace|enables|enable)\s+(?P<rest>.+)$"
)
_LEADS_TO = re.compile(
    rf"^{_DETERMINER}(?P<term>[A-Za-z0-9][\w\-/() ]{{1,60}}?)\s+(?:leads? to|led to|results? in|resulted in|causes|"
    r"caused|induces|induced|triggers|triggered)\s+(?P<rest>.{8,})$")
_ASSOCIATED = re.compile(
    rf"^{_DETERMINER}(?P<term>[A-Za-z0-9][\w\-/() ]{{1,60}}?)\s+(?P<aux>is|are|was|were)\s+(?:\w+ly\s+)?"
    r"(?:associated|correlated|linked)\s+with\s+(?P<rest>.{5,})$")
_THAN = re.compile(
    rf"^{_DETERMINER}(?P<term>[A-Za-z0-9][\w\-/() ]{{1,60}}?)\s+(?P<aux>is|are|was|were)\s+(?:\w+ly\s+)?"
    r"(?:more|less|higher|lower|better|worse|greater|smaller|faster|slower)\b[\w\- ]{0,30}?\s+than\s+"
    r"(?P<other>[^,;]{3,60}?)(?:[,;].*)?$")
_AUX = ("is", "are", "was", "were", "can", "cannot", "must", "should", "will", "would", "has", "have")
_MODALS = {"can", "cannot", "must", "may", "might", "will", "would", "should", "could"}
# A noun phrase never holds these; a "term" that does is a clause the pattern cut in the wrong place.
_NOT_IN_TERM = _MODALS | {"is", "are", "was", "were", "be", "been", "being", "to", "when", "if", "while",
                          "although", "since", "as", "because", "where", "whereas", "so", "than", "and", "but"}
_BAD_TERM_START = {"this", "that", "these", "those", "it", "they", "there", "here", "such", "each", "which", "what", "one"}


# Research abstracts: aims, methods and conclusions read as sentences about "the study"; the question
# names the study by its title so it can be answered without the text.
_STUDY_AIM = re.compile(
    r"^(?:(?:The|Our) (?:main |primary )?(?:aims?|purposes?|objectives?|goals?) of (?:this|the|our|the present|the current) "
    r"(?:study|paper|work|trial|review|analysis|survey|investigation) (?:was|were|is|are) to|"
    r"(?:This|The present|The current|Our) (?:study|paper|work|trial|review|analysis) (?:aimed|aims|sought|seeks) to|"
    r"We (?:aimed|sought|set out) to|To (?:assess|evaluate|determine|investigate|examine|compare|describe|"
    r"identify|explore|estimate|test|analy[sz]e)\b)", re.IGNORECASE)
_STUDY_CONCLUSION = re.compile(
    r"^(?:In conclusion|To conclude|Overall|Taken together|In summary)\b|^(?:These|Our|The|This) (?:results?|findings?|"
    r"data|study|analysis|observations?) (?:suggests?|indicates?|shows?|demonstrates?|supports?|confirms?|imply|implies)\b|"
    r"^We conclude\b", re.IGNORECASE)
_STUDY_METHOD = re.compile(
    r"^We (?:retrospectively |prospectively )?(?:performed|conducted|analy[sz]ed|reviewed|studied|enrolled|recruited|"
    r"surveyed|compared|measured|used|included|examined|evaluated)\b|^(?:A|This) (?:retrospective|prospective|"
    r"randomi[sz]ed|cross-sectional|cohort|case-control|population-based)\b", re.IGNORECASE)


def names_a_study(title: str) -> bool:
    """Whether a title can name a study in a question: 2 to 30 words, at least two of them words of three
    or more letters. Identifiers and bare file stems ("pubmed 23774337", "2301.12345", "notes") cannot:
    a question naming the study by them teaches nothing a reader could ask."""
    words = title.split()
    return 2 <= len(words) <= 30 and sum(1 for w in words if re.fullmatch(r"[^\W\d_]{3,}\W*", w)) >= 2


def study_name(title: str, sentences: Sequence[str]) -> str | None:
    """How questions name the study a passage comes from: its title in quotes when the title names a
    study, else by its aim when the passage states one ("the study that set out to assess whether …"),
    else None (the passage's study sentences give no questions)."""
    title = title.strip().rstrip(".?")
    if names_a_study(title):
        return f'the study "{title}"'
    for sentence in sentences:
        if _STUDY_AIM.match(sentence):
            aim = re.sub(r"^.*?\bto\s+", "", sentence, count=1, flags=re.IGNORECASE).rstrip(" .")
            if 3 <= len(aim.split()) <= 25 and aim != sentence.rstrip(" ."):
                return f"the study that set out to {aim[:1].lower()}{aim[1:]}"
    return None


def study_question_for(sentence: str, study: str | None) -> tuple[str, str] | None:
    """(question, "study") for an aim, method or conclusion sentence of a research abstract, naming the
    study as `study_name` does; no aim question when the study is named by that aim."""
    if study is None:
        return None
    if _STUDY_AIM.match(sentence):
        return (f"What was the aim of {study}?", "study") if study.startswith('the study "') else None
    if _STUDY_CONCLUSION.match(sentence):
        return f"What did {study} conclude?", "study"
    if _STUDY_METHOD.match(sentence):
        return f"How was {study} carried out?", "study"
    return None


@dataclass(frozen=True)
class Example:
    """One question/answer pair with where it came from."""

    question: str
    answer: str
    chunk_id: str
    doc_id: str
    type: str  # "definition", "cause", "comparison", "function", "cloze"
    source: str = ""
    quality_score: float = 0.0
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _term_ok(term: str) -> bool:
    tokens = [t.lower() for t in term.split()]
    return 1 <= len(tokens) <= 8 and tokens[0] not in _BAD_TERM_START and not _NOT_IN_TERM & set(tokens)


def _phrase(match: re.Match[str]) -> str:
    """The matched term as it reads mid-sentence: its determiner kept ("a code of distance d",
    "the Shor code"), a sentence-initial capital dropped when there was none ("magic state distillation")."""
    term, determiner = match["term"].strip(), (match["det"] or "").strip().lower()
    return f"{determiner} {term}" if determiner else _lower_first(term)


def _base_verb(verb: str) -> str:
    head, *tail = verb.split()
    if head.endswith("ies"):
        head = head[:-3] + "y"
    elif head.endswith(("sses", "shes", "ches", "xes")):
        head = head[:-2]
    elif head.endswith("s") and not head.endswith("ss"):
        head = head[:-1]
    return " ".join([head, *tail])


def _lower_first(text: str) -> str:
    """Lower-case a sentence-initial capital, unless the first word is an acronym ("QEC") or a
    name in the possessive ("Shor's algorithm")."""
    first = text.split(" ", 1)[0]
    if text[:2].isupper() or first.endswith(("'s", "’s")):
        return text
    return text[:1].lower() + text[1:]


def question_for(sentence: str) -> tuple[str, str] | None:
    """(question, type) for a sentence that fits a pattern, else None."""
    body = sentence.rstrip(".!")
    if match := _CAUSE.match(body):
        effect = match["effect"].strip()
        subject_words = effect.split()
        for position, word in enumerate(subject_words[:8]):
            if word in _AUX and position > 0:
                subject = " ".join(subject_words[:position])
                remainder = " ".join(subject_words[position + 1 :])
                if remainder:
                    return f"Why {word} {_lower_first(subject)} {remainder}?", "cause"
        return f"Explain why {_lower_first(effect)}.", "cause"
    if match := _DEFINITION.match(body):
        term = match["term"].strip()
        # "X is a/the ..." defines X; "X are <anything>" defines a plural; "X is important" does not.
        plural = match["verb"] == "are" and not _NOT_A_NOUN.match(match["rest"])
        if _term_ok(term) and (plural or _ARTICLE.match(match["rest"])):
            return f"What {'are' if plural else 'is'} {_phrase(match)}?", "definition"
    if (match := _LEADS_TO.match(body)) and _term_ok(match["term"].strip()):
        return f"What does {_phrase(match)} lead to?", "cause"
    if (match := _ASSOCIATED.match(body)) and _term_ok(match["term"].strip()):
        return f"What {match['aux']} {_phrase(match)} associated with?", "function"
    if (match := _THAN.match(body)) and _term_ok(match["term"].strip()):
        return (f"How {'does' if match['aux'] in ('is', 'was') else 'do'} {_phrase(match)} "
                f"compare with {_lower_first(match['other'].strip())}?"), "comparison"
    if match := _UNLIKE.match(body):
        term, other = match["term"].strip(), match["other"].strip()
        if _term_ok(term):
            return f"What distinguishes {_lower_first(term)} from {_lower_first(other)}?", "comparison"
    if match := _ACTION.match(body):
        return _action_question(match)
    return None


def _action_question(match: re.Match[str]) -> tuple[str, str] | None:
    """'The decoder uses X' -> 'What does the decoder use?'; 'A code of distance d can correct X'
    -> 'What can a code of distance d correct?'."""
    term, verb = match["term"].strip(), match["verb"]
    *head, last = term.split()
    if last.lower() in _MODALS and head and _term_ok(" ".join(head)):
        determiner = (match["det"] or "").strip().lower()
        subject = " ".join(head) if determiner else _lower_first(" ".join(head))
        return f"What {last.lower()} {(determiner + ' ') if determiner else ''}{subject} {verb}?", "function"
    if not _term_ok(term):
        return None
    auxiliary = "does" if verb.split()[0].endswith("s") else "do"
    return f"What {auxiliary} {_phrase(match)} {_base_verb(verb)}?", "function"


def _cloze(sentence: str) -> tuple[str, str, str] | None:
    """(question, "cloze", answer) for a sentence of 10+ words no pattern fits: the question quotes its
    opening (a third of it, 3 to 10 words: enough to say what it is about) and asks how it continues;
    the answer is the rest, verbatim. Never the whole sentence back: a model trained to answer with the
    text of its question learns to echo questions (seen on PubMedQA: 14 of 16 tuned answers repeated
    the question when cloze answers did)."""
    tokens = sentence.split()
    if len(tokens) < 10:
        return None
    cut = min(max(3, len(tokens) // 3), 10)
    prefix, rest = " ".join(tokens[:cut]), " ".join(tokens[cut:])
    return f'How does the sentence "{prefix} …" continue?', "cloze", rest


def quality_score(question: str, answer: str) -> float:
    """Weighted heuristic score: coherence 0.3, factual consistency 0.3, complexity 0.2, format 0.2."""
    answer_words, question_words = words(answer), words(question)
    coherence = 1.0 if answer[:1].isupper() and answer.rstrip().endswith((".", "!", "?")) else 0.5
    factual = 1.0  # extractive: the answer is source text by construction (checked by the caller)
    overlap = len(set(answer_words) & set(question_words)) / max(1, len(set(answer_words)))
    complexity = min(1.0, len(answer_words) / 20) * (1.0 if overlap < 0.8 else 0.3)
    well_formed = question.endswith(("?", ".")) and 3 <= len(question_words) <= 30
    fits = 6 <= len(answer_words) <= 90
    format_score = (0.5 if well_formed else 0.0) + (0.5 if fits else 0.0)
    return round(0.3 * coherence + 0.3 * factual + 0.2 * complexity + 0.2 * format_score, 3)


def generate_examples(
    chunk: Chunk, source: str, max_per_chunk: int = 4, min_score: float = 0.6, allow_cloze: bool = True
) -> list[Example]:
    """Examples from one chunk; each answer is a sentence (or two) of the chunk, verbatim."""
    sentences = split_sentences(chunk.text)
    study = study_name(source, sentences)
    examples: list[Example] = []
    for index, sentence in enumerate(sentences):
        found = question_for(sentence) or study_question_for(sentence, study)
        if found is None:
            continue
        question, kind = found
        answer = sentence
        # A short definition reads better with the sentence that follows it.
        if len(sentence.split()) < 14 and index + 1 < len(sentences):
            answer = f"{sentence} {sentences[index + 1]}"
        examples.append(_example(question, answer, chunk, kind, source))
    if not examples and allow_cloze:
        for sentence in sentences:
            if found := _cloze(sentence):
                examples.append(_example(found[0], found[2], chunk, found[1], source))
                break
    kept = [e for e in examples if e.quality_score >= min_score and e.answer in chunk.text]
    return kept[:max_per_chunk]


def _example(question: str, answer: str, chunk: Chunk, kind: str, source: str) -> Example:
    return Example(
        question=question,
        answer=answer,
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        type=kind,
        source=source,
        quality_score=quality_score(question, answer),
    )
