"""Questions a reader could ask about a fact, several forms per fact, with no LLM.

A knowledge-injection training set needs each fact asked about in several ways (Ovadia et al. 2023:
a fact is learned only after many paraphrases of it). From one sentence this module writes, where the
sentence allows it:
- a yes/no question by inverting its auxiliary or by do-support ("Did telephone counseling promote …?"
  -> "Yes. <sentence>"; a negated sentence gives a "No." answer),
- a subject question that keeps the predicate verbatim ("What promoted a higher proportion of …?"),
- a value question for a copula with a figure ("What was the mean age of …?"),
- "How many …" for a counted subject, "Why …" for a causal clause, "How does X compare with Y" for
  comparisons, "What is X?" for definitions,
- and, in structured abstracts, one question per section role naming the study ("What did <study>
  conclude?", "Who took part in <study>?").
List items are asked through the sentence that introduces them, table rows column by column.

Grammar comes from a part-of-speech lexicon (lemminflect, whose English lexicon ships in its wheel):
a word is taken for the main verb only when the lexicon says it can be one and its neighbours agree;
when the sentence cannot be read with confidence it gives fewer questions, never a broken one. Every
question still passes the question gate (tools/data/question_gate.py)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from tools.data.facts import Fact
from tools.data.parsing import parse, parsed_clause
from tools.text import without_statistics

AUXILIARIES = {"is", "are", "was", "were", "has", "have", "had", "can", "cannot", "could", "may", "might",
               "will", "would", "should", "must", "does", "do", "did"}
_DETERMINER_START = {"the", "a", "an", "this", "that", "these", "those", "its", "their", "each", "every",
                     "some", "any", "no", "all", "both", "more", "less", "most", "many", "several", "two", "three"}
# words that cannot follow 'What' before a noun: "What the basis states does …"; "What three parts" can
_ARTICLES_AND_POSSESSIVES = {"the", "a", "an", "this", "that", "these", "those", "its", "their", "our", "his", "her"}
_BE = {"is", "are", "was", "were"}
_PRONOUN_START = {"it", "this", "that", "these", "those", "they", "we", "our", "its", "their", "there",
                  "here", "he", "she", "his", "her", "such", "both", "each", "all", "one", "i", "you"}
_ANAPHORA = re.compile(r"\b(?:it|its|they|them|their|this|these|those|such|he|she|his|her|we|our|us|"
                       r"former|latter|aforementioned|above|following|corresponding|respective(?:ly)?)\b",
                       re.IGNORECASE)


def mentions_missing_context(text: str) -> bool:
    """Whether a text leans on something outside it ("this study", "their results", "the above factors")."""
    return bool(_ANAPHORA.search(text))


_INTRO = re.compile(
    r"^(?:(?:However|Furthermore|Moreover|In addition|Additionally|Finally|Thus|Therefore|Hence|Similarly|"
    r"Consequently|Importantly|Notably|Interestingly|Overall|In contrast|By contrast|In particular|"
    r"Conversely|Nevertheless|Nonetheless|Likewise|Also|First|Second|Third|Lastly|Accordingly|For this reason|"
    r"In this case|In practice|In general|As a result|In short|In other words|For example|For instance),\s+)",
    re.IGNORECASE)
_FRONTED = re.compile(r"^(?P<phrase>(?:In|At|During|After|Before|Among|Within|Across|Compared (?:to|with)|"
                      r"For|Of|Over|Under|Between|Following|Despite|Unlike|Like|With|Without|On|By|Using|"
                      r"When|Once|Although|While|Since|Through|From)\b[^,]{2,90}),\s+(?P<rest>.+)$")
_PEOPLE = {"patients", "women", "men", "children", "participants", "subjects", "people", "adults", "infants",
           "individuals", "respondents", "physicians", "nurses", "doctors", "surgeons", "residents",
           "students", "volunteers", "mothers", "workers", "users", "authors", "researchers", "girls", "boys",
           "survivors", "smokers", "athletes", "employees", "clinicians", "pharmacists", "parents", "cases",
           "controls", "donors", "recipients", "veterans", "elderly", "persons"}
_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                 "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
                 "hundred|thousand|million|a total of")
_COUNTED = re.compile(rf"^(?:(?:A total of|In total,|Overall,)\s+)?(?P<number>\d[\d,.]*|(?:(?:{_NUMBER_WORDS})"
                      rf"[\s-]+)+)\s*(?P<noun>(?:[a-z][\w-]*\s+){{0,3}}?[a-z][\w-]*s)\s+"
                      r"(?P<verb>were|was|are|is|had|have|received|underwent|completed|participated|met|"
                      r"took part|developed|died|reported|showed|required|agreed|responded)\b(?P<rest>.*)$",
                      re.IGNORECASE)
# "since 2008", "since then": time, not a cause
_CAUSE = re.compile(r"^(?P<effect>.{12,}?),? (?:because|since(?! (?:\d|then|the (?:start|beginning|end))|"
                    r"(?:January|February|March|April|May|June|July|August|September|October|November|"
                    r"December)\b)|as a result of|due to) (?P<cause>.{8,})$")
_THAN = re.compile(r"^(?P<term>.{3,80}?)\s+(?P<aux>is|are|was|were)\s+(?:\w+ly\s+)?(?:more|less|higher|lower|"
                   r"better|worse|greater|smaller|faster|slower|larger|shorter|longer|stronger|weaker)\b"
                   r"[\w\- ]{0,30}?\s+than\s+(?P<other>[^,;]{3,60}?)(?:[,;].*)?$")
_DEFINITION = re.compile(r"^(?P<term>[A-Za-z0-9][\w\-/()' ]{1,60}?)\s+(?P<verb>is|are|refers to|denotes|"
                         r"is defined as|are defined as)\s+(?P<rest>.+)$")
_ARTICLE = re.compile(r"^(?:a|an|the|one|any)\s")
_GENERIC_HEADINGS = {"introduction", "overview", "summary", "notes", "background", "contents", "abstract",
                     "references", "appendix", "discussion", "conclusion", "conclusions", "see also",
                     "further reading", "external links", "methods", "results", "details", "examples",
                     "significance", "relevance", "performance", "challenges", "advantages", "disadvantages",
                     "limitations", "applications", "motivation", "history", "outlook", "comparison", "evaluation",
                     "analysis", "implementation", "definitions", "terminology", "acknowledgements",
                     "acknowledgments", "funding", "keywords", "purpose", "objective", "objectives", "aims",
                     "findings", "experiments", "future work", "related work", "open problems", "key points",
                     "constructions", "origins", "variants", "properties"}
# words that leave a heading of section names still generic: "Advantages and disadvantages", "Relevance today"
_GENERIC_FILLERS = {"and", "&", "the", "of", "today", "main", "key", "general", "other", "further", "future",
                    "current", "practical", "some", "more"}


@dataclass(frozen=True)
class Question:
    """A question, its answer (verbatim passage text, or passage text behind "Yes."/"No."), its form."""

    question: str
    answer: str
    form: str  # "yes_no", "subject", "value", "how_many", "cause", "comparison", "definition", "section", ...


# -- the lexicon -------------------------------------------------------------------------------------
@lru_cache(maxsize=65536)
def parts_of_speech(word: str) -> frozenset[str]:
    """The universal POS tags the English lexicon allows for a word (empty when it does not know it)."""
    from lemminflect import getAllLemmas

    return frozenset(getAllLemmas(word.lower()) or ())


def base_form(verb: str) -> str | None:
    """'promoted' -> 'promote', 'underwent' -> 'undergo'; None when the lexicon knows no verb."""
    from lemminflect import getLemma

    lemmas = getLemma(verb.lower(), upos="VERB")
    return lemmas[0] if lemmas and lemmas[0] else None


def verb_tense(verb: str) -> str | None:
    """"past", "third person" or "plain" for a finite verb form; None when it is none of these."""
    from lemminflect import getInflection

    base = base_form(verb)
    if base is None:
        return None
    lower = verb.lower()
    if lower in getInflection(base, "VBD"):
        return "past"
    if lower in getInflection(base, "VBZ"):
        return "third person"
    return "plain" if lower == base else None


def _third_person(verb: str) -> str:
    from lemminflect import getInflection

    forms = getInflection(base_form(verb) or verb, "VBZ")
    return forms[0] if forms else verb


def core_word(token: str) -> str:
    """A token without the punctuation around it."""
    return token.strip(".,;:!?()[]\"'")


_core = core_word


def lower_first(text: str) -> str:
    """Lower-case a sentence-initial capital, unless the first word is an acronym ("QEC", "HbA1c") or a
    name in the possessive ("Shor's")."""
    first = _core(text.split(" ", 1)[0])
    if not first or sum(c.isupper() for c in first) > 1 or any(c.isdigit() for c in first) \
            or first.endswith(("'s", "’s")) or _a_name(text):
        return text
    return text[:1].lower() + text[1:]


def _names_only(text: str) -> bool:
    """Whether a subject is one or more proper names and nothing else ("Pavel Panteleev and Gleb Kalachev",
    "Kitaev"): asked for with "Who". Names the lexicon knows as words ("Google", "Shor codes") are not."""
    tokens = [t for t in parse(text) if not t.is_punct and t.pos_ not in ("CCONJ",)]
    return bool(tokens) and all(t.pos_ == "PROPN" and not parts_of_speech(t.text) for t in tokens)


def _a_name(text: str) -> bool:
    """Whether the text opens with a proper name ("Pavel Panteleev and …", "Kitaev"): the parse says so of
    a capitalized word the lexicon does not know in lower case."""
    first = _core(text.split(" ", 1)[0])
    return first[:1].isupper() and not parts_of_speech(first) and parse(text)[0].pos_ == "PROPN"


_COORDINATORS = {"and", "or", "but"}
_PREPOSITIONS = {"from", "in", "at", "on", "of", "for", "with", "without", "by", "during", "after", "before",
                 "between", "among", "to", "into", "through", "over", "under", "since", "until", "when", "if",
                 "while", "although", "because", "as", "than", "whether", "and", "or", "but", "out", "up",
                 "about", "against", "within", "upon", "per", "via", "along", "across", "around", "behind",
                 "beyond", "near", "throughout", "toward", "towards", "onto", "inside", "outside", "beneath",
                 "below", "above", "despite", "unlike", "like"}
# a second clause after the first ("…, and larger codes perform worse"): inverting one clause breaks the other
_COORDINATED = re.compile(r";|, (?:and|but|while|whereas|so|yet) |\b(?:and|but|while|whereas)\s+(?:\S+\s+){0,5}?"
                          r"(?:is|are|was|were|has|have|had)\b|, (?:although|though|even though|because|since|"
                          r"unless|as) (?:\S+\s+){0,6}?(?:is|are|was|were|has|have|had|remains?|remained)\b")


def _nounish(words: Sequence[str]) -> bool:
    """A noun phrase holds a noun (or a name, acronym or number) and no word that can only be a verb."""
    cores = [_core(w) for w in words if _core(w)]
    if not cores or cores[0].lower() in _PRONOUN_START | _PREPOSITIONS:
        return False
    has_noun = any("NOUN" in parts_of_speech(c) or "PROPN" in parts_of_speech(c) or c[:1].isupper() or
                   any(ch.isdigit() for ch in c) or not parts_of_speech(c) for c in cores)
    verb_only = any(parts_of_speech(c) == {"VERB"} and not c.lower().endswith(("ed", "ing")) for c in cores)
    return has_noun and not verb_only and not any(w.endswith(",") for w in words[:-1])


# -- reading a sentence ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    """A main clause read as subject + verb (an auxiliary or a finite verb) + the rest."""

    fronted: str  # a fronted adverbial moved out of the way ("Compared to usual care alone")
    subject: str
    verb: str
    rest: str
    has_object: bool | None = None  # from a parse: whether the verb takes a direct object (None: not known)


def _verb_candidate(tokens: Sequence[str], index: int) -> bool:
    word = _core(tokens[index]).lower()
    if word != tokens[index].lower().rstrip(",") or index == 0:
        return False
    if word in AUXILIARIES:
        return True
    if _core(tokens[index - 1]).lower() in _DETERMINER_START and word.endswith(("ed", "en")):
        return False  # "The trained model …": a participle after a determiner describes the noun
    tags = parts_of_speech(word)
    following = _core(tokens[index + 1]).lower() if index + 1 < len(tokens) else ""
    if "VERB" not in tags or verb_tense(word) not in {"past", "third person"}:
        return False
    if tags & {"NOUN", "ADJ"}:  # "uses", "results", "increased": a verb only before its object's determiner
        previous = _core(tokens[index - 1]).lower()
        return ((following in _DETERMINER_START - {"that"} or following.isdigit())
                and previous not in _DETERMINER_START)
    # an active verb is followed by its object, not by a bare noun ("tailored print") nor by a preposition
    # (then it is a participle: "self-reports obtained during 1995")
    tags = parts_of_speech(following)
    return bool(following) and following not in _PREPOSITIONS and not (tags and tags <= {"NOUN", "PROPN"})


def read_clause(sentence: str) -> Clause | None:
    """The sentence's main clause, or None when its subject cannot be found with confidence: read with the
    lexicon, else from the sentence's dependency parse (a clause coordinated with another, a fronted adverb,
    a clause before a semicolon)."""
    clause = _lexicon_clause(sentence)
    if clause is None or _second_clause(clause.rest):
        clause = _parsed_clause(sentence) or clause
    if clause is None or _BARE_NUMBER.match(clause.subject) or _THE_WORK_ITSELF.match(clause.subject):
        return None
    return None if _participle_before_finite_verb(sentence, clause) else clause


# words that end the clause a verb belongs to: a finite verb after one of them is another clause's
_CLAUSE_BOUNDARIES = {"and", "or", "but", "that", "which", "who", "whom", "whose", "when", "where", "while",
                      "whereas", "if", "because", "since", "although", "though", "as", "than", "so", "unless"}


def _participle_before_finite_verb(sentence: str, clause: Clause) -> bool:
    """Whether the clause's verb is a participle inside the subject, the finite verb coming later in the same
    clause: "the total overhead needed to reach a target rate grows …" read as "the total overhead" +
    "needed" would ask "What needed to reach a target rate?"."""
    verb = clause.verb.lower()
    if verb in AUXILIARIES or verb_tense(verb) != "past":
        return False
    _, found, after = sentence.partition(f"{clause.subject} {clause.verb} ")
    previous = ""
    for token in after.split() if found else ():
        word = _core(token).lower()
        if word in _CLAUSE_BOUNDARIES or word in _PRONOUN_START or token.startswith(("(", "[")):
            return False  # another clause, reported speech ("said they would …") or an aside begins
        if previous != "to" and _finite_verb(word, last=token.endswith(".")):
            return True
        if token.endswith((",", ";", ":", ".", ")")):
            return False
        previous = word
    return False


def _finite_verb(word: str, last: bool) -> bool:
    """An auxiliary, or a verb in the third person that does not end the sentence (the lexicon takes some
    sentence-final plural nouns, "questionnaires", for verbs)."""
    return word in AUXILIARIES - {"do"} or (not last and verb_tense(word) == "third person"
                                            and parts_of_speech(word) == {"VERB"})


# "The present study aims to …", "The purpose of this study was …": the text speaks of itself; a question
# about it ("What aims to evaluate …?") asks nothing a reader would
_THE_WORK_ITSELF = re.compile(r"^(?:the|this|our|the present|the current)\s+(?:present\s+|current\s+)?(?:study|"
                              r"work|paper|trial|analysis|investigation|article|report|review|research|survey|"
                              r"project)\b|^(?:the|our)\s+(?:main\s+|primary\s+)?(?:aims?|purposes?|objectives?|"
                              r"goals?)\b", re.IGNORECASE)


# "Seventeen underwent …", "90 of 100 …": a count with no noun names nothing a question can ask about
_BARE_NUMBER = re.compile(rf"^(?:(?:{_NUMBER_WORDS}|and|of|the|[\d,.%/-]+)(?:[\s-]+|$))+$", re.IGNORECASE)


def _parsed_clause(sentence: str) -> Clause | None:
    body = _INTRO.sub("", sentence.strip())
    if not (found := parsed_clause(body if body.endswith((".", "!")) else f"{body}.")):
        return None
    fronted, subject, verb, rest, has_object = found
    subject = subject.rstrip(" ,")
    words = subject.split()
    relative = any(w.lower() in {"that", "which", "who", "whom", "than"} for w in words)
    if _ANAPHORA.search(f"{fronted} {subject}") or relative or not _nounish(words) or len(words) > 12:
        return None
    return Clause(fronted, subject, verb, rest, has_object)


def _lexicon_clause(sentence: str) -> Clause | None:
    body = _INTRO.sub("", sentence.strip().rstrip(".!"))
    fronted = ""
    if match := _FRONTED.match(body):
        fronted, body = match["phrase"], match["rest"]
        if _ANAPHORA.search(fronted):  # "Of these, 4744 completed …": the question would lean on the passage
            return None
    tokens = body.split()
    if len(tokens) < 3:
        return None
    candidates = [i for i in range(1, min(len(tokens) - 1, 14)) if _verb_candidate(tokens, i)]
    if not candidates:
        return None
    index = candidates[0]
    if _core(tokens[index]).lower() not in AUXILIARIES and index + 1 < len(tokens) \
            and _core(tokens[index + 1]).lower() in _BE:
        index += 1  # "The patients involved were …": the participle describes the subject
    # "Patients treated with X had …": a participle modifies the subject when a finite verb follows soon
    after = _core(tokens[index + 1]).lower() if index + 1 < len(tokens) else ""
    later = [i for i in candidates[1:] if i - index <= 8 and "," not in " ".join(tokens[index:i])
             and _core(tokens[i]).lower() in AUXILIARIES and after in _PREPOSITIONS]
    if later and _core(tokens[index]).lower() not in AUXILIARIES:
        index = later[0]
    # "A distance-d rotated surface code uses …": a participle before a noun, then the finite verb
    finite = [i for i in range(index + 2, min(index + 6, len(tokens))) if "," not in " ".join(tokens[index:i])
              and (_core(tokens[i]).lower() in AUXILIARIES or verb_tense(_core(tokens[i]).lower()) == "third person")
              and "VERB" in parts_of_speech(_core(tokens[i]).lower()) | ({"AUX"} if _core(tokens[i]).lower()
                                                                          in AUXILIARIES else set())]
    if finite and _core(tokens[index]).lower().endswith("ed") and "NOUN" in parts_of_speech(after):
        index = finite[0]
    subject = tokens[:index]
    cores = [_core(t).lower() for t in subject]
    if any(parts_of_speech(a) == {"ADV"} and "VERB" in parts_of_speech(b) for a, b in itertools.pairwise(cores)):
        return None  # "sonography also increased …": an adverb before a verb inside the "subject" is a predicate
    if parts_of_speech(_core(subject[-1]).lower()) == {"ADV"} or tokens[index].endswith(","):
        return None  # "experiments soon followed, showing …": an adverb or an intransitive verb read as a clause
    relative = any(w.lower() in {"that", "which", "who", "whom", "than"} for w in subject)  # a clause inside
    if not _nounish(subject) or cores[-1] in _PREPOSITIONS or len(subject) > 12 or relative:
        return None
    return Clause(fronted, " ".join(subject), _core(tokens[index]), " ".join(tokens[index + 1:]))


def _second_clause(rest: str) -> bool:
    """Whether the rest of a clause holds another clause ("…; the stay was …", "…, and larger codes perform
    worse", "… and the contralateral neck received …"): inverting one clause would break the other."""
    if _COORDINATED.search(rest):
        return True
    tokens = rest.split()
    for position, token in enumerate(tokens):
        if token.lower() not in {"and", "but", "while", "whereas"}:
            continue
        for later in tokens[position + 2:position + 7]:
            word = _core(later).lower()
            if word in AUXILIARIES or (parts_of_speech(word) == {"VERB"} and verb_tense(word) == "past"):
                return True
    return False


def finish_question(text: str) -> str:
    """A question's text tidied (no space before punctuation, no trailing comma, no full stop: a clause that
    ends where the sentence splitter saw an abbreviation, "… amplitudes a and b.") and ended with '?'. An
    abbreviation's own stops stay ("the U.S.?")."""
    text = re.sub(r"\s+([,;?])", r"\1", text.strip().rstrip(",;:"))
    last = text.rsplit(maxsplit=1)[-1] if text else ""
    return (text[:-1] if last.endswith(".") and "." not in last[:-1] else text) + "?"


def _with_fronted(question: str, fronted: str) -> str:
    return f"{question} {lower_first(fronted)}" if fronted else question


_PERFECT_ADVERB = re.compile(r"^(?:\w+ly|also|already|long|since|now|just|yet|still|often|always|not)\s+")


def _perfect(rest: str) -> bool:
    """Whether 'has'/'have'/'had' before `rest` is the perfect's auxiliary ("have (also) been used", "have
    shown", "has become"): a past participle comes next, after any adverb. A word in -ed may be an adjective
    ("have increased risk"), but the perfect is the likelier reading, as the lexicon cannot tell them apart."""
    from lemminflect import getInflection

    word = core_word(_PERFECT_ADVERB.sub("", rest).split(" ", 1)[0]).lower()
    if word == "been" or re.fullmatch(r"\w+(?:ed|en)", word):
        return True
    base = base_form(word)  # "have become", "has found"; not "have cut": a noun that is also the base form
    return bool(base) and word in getInflection(base, "VBN") and not (word == base and "NOUN" in parts_of_speech(word))


def yes_no_question(clause: Clause) -> tuple[str, bool] | None:
    """(question, negated) by inverting the auxiliary, or by do-support for a finite main verb."""
    verb, rest, subject = clause.verb, clause.rest, lower_first(clause.subject)
    negated = bool(re.match(r"^(?:not|never)\b", rest)) or subject.lower().startswith(("no ", "none ")) \
        or verb.lower() == "cannot"
    verb = "can" if verb.lower() == "cannot" else verb
    rest = re.sub(r"^(?:not|never)\s+", "", rest)
    subject = re.sub(r"^(?:no|none of the)\s+", "any ", subject, flags=re.IGNORECASE)
    if len(subject.split()) + len(rest.split()) > 30 or _ANAPHORA.search(f"{subject} {rest}") \
            or _second_clause(rest):
        return None
    if verb.lower() in AUXILIARIES - {"has", "have", "had"} or (
            verb.lower() in {"has", "have", "had"} and _perfect(rest)):
        question = f"{verb.capitalize()} {subject} {rest}"
    else:
        base, tense = base_form(verb), verb_tense(verb)
        if base is None or tense is None:
            return None
        auxiliary = {"past": "Did", "third person": "Does", "plain": "Do"}[tense]
        question = f"{auxiliary} {subject} {base} {rest}"
    return finish_question(_with_fronted(question.rstrip(), clause.fronted)), negated


_SHARE = re.compile(r"^(?:(?:almost|nearly|about|approximately|roughly|over|more than|less than|only|just)\s+)?"
                    r"(?:half|a third|one third|two thirds|a quarter|one quarter|three quarters|a fifth|most|"
                    r"the majority|a minority|\d+(?:\.\d+)?\s?%|\S+ per ?cent)\s+of\s+(?P<group>.{3,})$",
                    re.IGNORECASE)
_COUNT = re.compile(rf"^(?:(?:a total of|only|all|about|approximately|nearly|over)\s+)?(?:\d[\d,.]*|(?:{_NUMBER_WORDS})"
                    rf"(?:[\s-]+(?:{_NUMBER_WORDS}|and))*)\s+(?P<noun>[a-z][\w-]*(?:\s+[\w-]+)*)$", re.IGNORECASE)
_UNITS = {"years", "months", "weeks", "days", "hours", "minutes", "seconds", "times", "percent", "%", "mg", "ml",
          "cm", "mm", "kg", "patients'"}


def quantity_question(clause: Clause) -> str | None:
    """A clause whose subject is a count or a share asks for it: '41 RUs showed X' -> 'How many RUs showed X?';
    'Almost half of the families with a smoker reported X' -> 'What share of the families with a smoker
    reported X?'. A fronted phrase leads ('Of the 79 RUs assessed, how many RUs showed X?')."""
    rest, subject = clause.rest, without_statistics(clause.subject)
    if not rest or _ANAPHORA.search(f"{subject} {rest}") or not 2 <= len(rest.split()) <= 30 \
            or _second_clause(rest):
        return None
    if share := _SHARE.match(subject):
        lead = f"What share of {share['group']}"
    elif (count := _COUNT.match(subject)) and count["noun"].split()[0].lower() not in _UNITS:
        lead = f"How many {count['noun']}"
    else:
        return None
    question = f"{lead} {clause.verb} {rest}"
    return finish_question(f"{clause.fronted}, {lower_first(question)}" if clause.fronted else question)


def _counted(subject: str) -> bool:
    """A count or a share as the subject ("A total of 316 patients", "Almost half of the families"): asked for
    by `quantity_question`; 'What did a total of 316 patients meet?' asks nothing."""
    return bool(_SHARE.match(subject) or _COUNT.match(subject) or re.match(r"(?:a total of|in total)\s", subject,
                                                                           re.IGNORECASE)) or subject[:1].isdigit()


# "Previous studies have shown X" -> "What has shown X?" asks for sources the text does not name
_UNNAMED_SOURCES = re.compile(r"^(?:(?:some|several|many|other|previous|prior|earlier|recent|few|various|numerous|"
                              r"most)\s+)*(?:\w+\s+)?(?:studies|authors|reports|investigators|researchers|trials|"
                              r"papers|articles)$", re.IGNORECASE)


def subject_question(clause: Clause) -> str | None:
    """'Telephone counseling promoted X' -> 'What promoted X?' (the predicate verbatim, nothing inverted).
    A count or a share is asked for by `quantity_question` instead ('What reported …?' would drop it); unnamed
    sources ("Recent studies have found X") give no question."""
    if _ANAPHORA.search(clause.rest) or not clause.rest or clause.verb.lower() in {"did", "does", "do"}:
        return None
    if _counted(clause.subject) or _UNNAMED_SOURCES.match(clause.subject):
        return None
    passive = _passive(clause.rest, after_be=clause.verb.lower() in _BE)
    if (clause.verb.lower() in _BE | {"has", "have", "had"} and not passive) or ":" in clause.rest \
            or _ANAPHORA.search(clause.subject) or not 3 <= len(clause.rest.split()) <= 30 \
            or _second_clause(clause.rest):
        return None
    people = {_core(w).lower() for w in clause.subject.split()} & _PEOPLE
    wh = "Who" if people or _names_only(clause.subject) else "What"
    verb = clause.verb
    # "What was performed …", "What has shown …": not "What were", "What have"
    if wh == "What" and passive and verb.lower() in {"are", "were", "have"}:
        verb = {"are": "is", "were": "was", "have": "has"}[verb.lower()]
    elif verb.lower() not in AUXILIARIES and verb_tense(verb) == "plain":  # "What protects …", not "What protect"
        verb = _third_person(verb)
    return finish_question(_with_fronted(f"{wh} {verb} {clause.rest}", clause.fronted))


_PARTICIPLE = re.compile(r"^(?:\w+ly\s+)?(?:been\s+|being\s+)?\w+(?:ed|en|wn|ung|ought|eld|ept|ound|ade)\b")


def _passive(rest: str, after_be: bool) -> bool:
    """Whether the words after the verb open with a participle: a passive after a form of "be" ("represented
    by edges", "encoded with the phase-flip code"), a perfect after "has". After "be", not a participle used
    as an adjective before its noun ("strongly biased noise": "What is strongly biased noise?" would ask for a
    definition the sentence does not give); a noun is a word the lexicon knows as a noun and not as an
    adjective ("noise", "data"; not "specific", "due")."""
    if not (match := _PARTICIPLE.match(rest)):
        return False
    following = [_core(w).lower() for w in rest[match.end():].split()[:1]]
    tags = parts_of_speech(following[0]) if following else frozenset()
    return not (after_be and "NOUN" in tags and "ADJ" not in tags and following[0] not in _PREPOSITIONS)


_MODALS = {"can", "could", "may", "might", "will", "would", "should", "must"}
_RESEARCHERS = re.compile(r"^(?:the )?(?:authors|investigators|researchers)$", re.IGNORECASE)
# what a study sets out to do ("to assess …", "the authors studied …"): the verbs of an aim
AIM_VERBS = r"(?:assess|evaluate|determine|investigate|examine|compare|describe|identify|explore|estimate|test|" \
    r"analy[sz]e|establish|characteri[sz]e|quantify|measure|study|review|clarify|elucidate|see|know|find out|learn|" \
    r"address|ask|define|develop|report|document|validate|verify|confirm|understand|discuss|calculate|observe|" \
    r"detect|predict|present|demonstrate|look for|look at|explain|highlight|summari[sz]e|appraise|ascertain|" \
    r"audit|track|monitor|gauge|probe)"


def object_question(clause: Clause) -> str | None:
    """'The decoder uses the syndrome history' -> 'What does the decoder use?'; 'A code of distance d can
    correct up to d - 1 erasures' -> 'What can a code of distance d correct?' (the object asked for)."""
    subject, words = lower_first(clause.subject), clause.rest.split()
    if not words or _ANAPHORA.search(clause.subject) or clause.has_object is False or _counted(clause.subject) \
            or clause.subject.rstrip().endswith(","):  # a list read as the subject ("Arthralgia, generalized …")
        return None
    verb = clause.verb.lower()
    if _RESEARCHERS.match(clause.subject) and re.fullmatch(AIM_VERBS, base_form(verb) or ""):
        return None  # 'What did the authors study?' asks the aim, which the study's own questions ask
    if verb in _MODALS | {"cannot"}:
        main = _core(words[0]).lower()
        particle = _core(words[1]).lower() if len(words) >= 2 else ""
        # "correct up to d - 1 erasures" has an object; "keep up with the hardware" is a phrasal verb
        quantity = particle == "up" and len(words) >= 3 and _core(words[2]).lower() == "to"
        if main != words[0].lower() or "VERB" not in parts_of_speech(main) or base_form(main) != main or main == "be" \
                or len(words) < 2 or (particle in _PREPOSITIONS | {"up", "out"} and not quantity):
            return None
        return finish_question(f"What {verb} {subject} {main}")
    if verb in AUXILIARIES:
        return None
    base, tense = base_form(verb), verb_tense(verb)
    first = _core(words[0]).lower()
    adverb = parts_of_speech(first) == {"ADV"}  # "acts exactly like a bit flip": no object to ask for
    if base is None or tense is None or first in _PREPOSITIONS or first == "that" or len(words) < 2 or adverb:
        return None
    auxiliary = {"past": "did", "third person": "does", "plain": "do"}[tense]
    return finish_question(f"What {auxiliary} {subject} {base}")


def value_question(clause: Clause) -> str | None:
    """'The mean age was 45 years' -> 'What was the mean age?' (a copula whose complement is a figure)."""
    figure = r"^(?:approximately |about |around |nearly |only |almost |over |under |less than |more than |" \
             r"a mean of |a median of |an average of |a total of |between |from |up to )?[\d(<>≤≥±]"
    if clause.verb.lower() not in _BE or not re.match(figure, clause.rest) or len(clause.rest.split()) > 16:
        return None
    return finish_question(_with_fronted(f"What {clause.verb.lower()} {lower_first(clause.subject)}", clause.fronted))


def how_many_question(sentence: str) -> str | None:
    match = _COUNTED.match(sentence.rstrip("."))
    if not match or _ANAPHORA.search(match["rest"]):
        return None
    return finish_question(f"How many {match['noun'].lower()} {match['verb'].lower()}{match['rest']}")


def cause_question(sentence: str) -> str | None:
    match = _CAUSE.match(sentence.rstrip("."))
    if not match:
        return None
    # "Dephasing is caused, for example, by …": the hedge belongs to the cause, not to the question
    effect = re.sub(r",?\s*(?:for example|for instance|e\.g\.|in part|partly|mainly|mostly|largely|primarily)"
                    r"\s*,?\s*$", "", match["effect"])
    clause = read_clause(effect)
    if clause is None or clause.verb.lower() not in AUXILIARIES - {"has", "have", "had"}:
        return None
    if _NEGATED.search(f"{clause.subject} {clause.rest}"):  # "No patients were admitted due to pain" gives
        return None  # no reason why none were: the cause belongs to the negated event
    return finish_question(f"Why {clause.verb.lower()} {lower_first(clause.subject)} {clause.rest}")


_NEGATED = re.compile(r"^(?:no|none|neither|nobody)\b|\b(?:not|never|cannot)\b|n't\b", re.IGNORECASE)


def comparison_question(sentence: str) -> str | None:
    match = _THAN.match(_INTRO.sub("", sentence.rstrip(".")))
    if not match or not _nounish(match["term"].split()) or _ANAPHORA.search(match["other"]) \
            or match["other"].split()[0].lower() in _PREPOSITIONS:  # "than in group I": no thing to compare with
        return None
    auxiliary = "does" if match["aux"] == "is" else "did" if match["aux"] == "was" else "do"
    return finish_question(f"How {auxiliary} {lower_first(match['term'].strip())} compare with "
                   f"{lower_first(match['other'].strip())}")


def definition_question(sentence: str) -> str | None:
    match = _DEFINITION.match(sentence.rstrip("."))
    if not match or not _nounish(match["term"].split()) or len(match["term"].split()) > 8:
        return None
    plural = match["verb"].startswith("are")
    first = _core(match["rest"].split()[0]).lower()
    # "X is a/the …" defines X; "X are <nouns> …" defines a plural; "X is important" does not
    noun = parts_of_speech(first) == {"NOUN"} or (not parts_of_speech(first) and not first.endswith(("ed", "ly")))
    if not (_ARTICLE.match(match["rest"]) or (plural and noun)):
        return None
    return finish_question(f"What {'are' if plural else 'is'} {lower_first(match['term'].strip())}")


# -- sections ------------------------------------------------------------------------------------------
def contiguous_facts(facts: Sequence[Fact], limit: int) -> list[Fact]:
    """The first facts that follow one another in the passage (so that their text is one span of it)."""
    run = list(facts[:1])
    for fact in facts[1:limit]:
        if fact.index != run[-1].index + 1:
            break
        run.append(fact)
    return run


def heading_phrase(heading: str) -> str:
    """A heading as a noun phrase inside a sentence: title case undone for common words ("Experimental
    Demonstrations of X" -> "experimental demonstrations of X"), and "the" before a common noun that an
    of-phrase names ("Construction of the Shor code" -> "the construction of the Shor code")."""
    words = heading.split()
    if len(words) >= 2 and heading.isupper():  # "QUANTUM LDPC CODES" -> "quantum LDPC codes"
        words = [w.lower() if _common_word(w) else w for w in words]
    title_case = len(words) >= 2 and all(w[:1].isupper() for w in words if len(w) > 3)
    if title_case:
        words = [w if i == 0 or sum(c.isupper() for c in w) > 1 or not _common_word(w) else w.lower()
                 for i, w in enumerate(words)]
    phrase = lower_first(" ".join(words))
    first = _core(phrase.split()[0])
    if first.islower() and " of " in f" {phrase} " and _common_word(first) and first not in _DETERMINER_START:
        phrase = f"the {phrase}"
    return phrase


def _names_an_activity(lowered: Sequence[str]) -> bool:
    """A heading that opens with a verb's -ing form and its object ("comparing the two codes", "choosing a
    decoder", "comparing matching and union-find": a word the lexicon knows only as a verb), not a noun
    ("decoding", "error correcting codes", "matching in practice")."""
    if len(lowered) < 2 or not lowered[0].endswith("ing") or "VERB" not in parts_of_speech(lowered[0]):
        return False
    return lowered[1] in _DETERMINER_START or parts_of_speech(lowered[0]) == {"VERB"}


def _generic_heading(words: Sequence[str]) -> bool:
    """A heading that names a kind of section, not a thing: "Summary", "Advantages and disadvantages",
    "Relevance today", "Historical background" (its last word)."""
    lowered = [_core(w).lower() for w in words if _core(w)]
    text = " ".join(lowered)
    if not lowered or text in _GENERIC_HEADINGS or lowered[-1] in _GENERIC_HEADINGS:
        return True
    named = [w for w in lowered if w not in _GENERIC_FILLERS]
    return bool(named) and all(w in _GENERIC_HEADINGS for w in named)


def _common_word(word: str) -> bool:
    tags = parts_of_speech(_core(word).lower())
    return bool(tags & {"NOUN", "ADJ", "VERB"}) and "PROPN" not in tags


_RUNNING_HEAD = re.compile(r"\b(?:page|p\.)\s*\d+\b|\b\d+\s*(?:of|/)\s*\d+\s*$", re.IGNORECASE)


def heading_question(heading: str, facts: Sequence[Fact]) -> tuple[Question, tuple[int, ...]] | None:
    """'What is magic state distillation?' for a section whose heading names a thing; answered by the
    section's first two sentences."""
    label, colon, named = heading.partition(": ")
    if colon and len(label.split()) <= 2:  # "Origins: the toric code" names the toric code
        heading = named
    elif colon:
        return None
    words = heading.split()
    sentences = [f for f in facts if f.kind == "sentence"]
    if not sentences or not 1 <= len(words) <= 6 or _generic_heading(words):
        return None
    if not _nounish(words) or heading.endswith("?") or re.search(r"\d+(?:\.\d+)+", heading):
        return None
    if _RUNNING_HEAD.search(heading):  # a PDF page's running head: "Fault-Tolerant Quantum Computing - page 2"
        return None
    lowered = [_core(w).lower() for w in words]
    if lowered[0] in _CLAUSE_OPENERS:  # "Why oscillators are attractive" is a clause, not a thing
        return None
    if _names_an_activity(lowered):  # "Comparing the two codes" names no thing to ask "what is" of
        return None
    # the head noun comes before the first preposition: "Uses of X", "Logical qubits in practice"; two joined
    # by "and" are plural ("The threshold and error suppression")
    before = next((i for i, w in enumerate(lowered[1:], start=1) if w in _PREPOSITIONS - _COORDINATORS),
                  len(words))
    head = _core(words[before - 1]).lower()
    plural = (head.endswith("s") and not head.endswith(("ss", "us", "sis"))) or "and" in lowered[:before]
    sentences = contiguous_facts(sentences, 2)
    answer = " ".join(f.text for f in sentences)
    return (Question(f"What {'are' if plural else 'is'} {heading_phrase(heading.strip(' :'))}?", answer, "heading"),
            tuple(f.index for f in sentences))


# -- lists and tables -----------------------------------------------------------------------------------
_CLAUSE_OPENERS = {"how", "what", "which", "why", "when", "where", "whether", "who", "that", "if"}


def list_question(fact: Fact) -> Question | None:
    """'The surface code has three parts:' + items -> 'What three parts does the surface code have?'."""
    lead = fact.key.rstrip(" :")
    answer = f"{fact.key.rstrip()} " + "; ".join(fact.items) + "."
    clause = read_clause(lead) if lead else None
    if clause is None:
        return None
    if clause.verb.lower() in _BE and not clause.rest:
        return Question(finish_question(f"What {clause.verb.lower()} {lower_first(clause.subject)}"), answer, "list")
    base, tense = base_form(clause.verb), verb_tense(clause.verb)
    if base and tense and clause.verb.lower() not in AUXILIARIES - {"has", "have", "had"} and clause.rest:
        auxiliary = {"past": "did", "third person": "does", "plain": "do"}[tense]
        rest = clause.rest.split()
        # "determines how many errors a code can handle:" names no noun to ask 'What <noun> …' of, and "maps the
        # basis states as follows:" none to put after 'What' ("What the basis states … does the encoding map?")
        opener = _core(rest[0]).lower()
        asked = "" if len(rest) > 6 or opener in _CLAUSE_OPENERS | _ARTICLES_AND_POSSESSIVES else f" {clause.rest}"
        return Question(finish_question(f"What{asked} {auxiliary} {lower_first(clause.subject)} {base}"),
                        answer, "list")
    return None


def table_questions(fact: Fact, table_name: str) -> list[Question]:
    """One question per cell of a table row: 'What is the distance of the Surface code?'."""
    found = []
    for column, value in fact.values:
        column_phrase = column if sum(c.isupper() for c in column) > 1 else column.lower()
        answer = f"The {column_phrase} of {fact.key} is {value}."
        where = f" in {table_name}" if table_name else ""
        found.append(Question(f"What is the {column_phrase} of {fact.key}{where}?", answer, "table"))
    return found


# -- one sentence, every form -----------------------------------------------------------------------------
def sentence_questions(sentence: str) -> list[Question]:
    """Every question form the sentence allows, each answered by the sentence (behind "Yes."/"No." for
    yes/no questions). The questions leave out the sentence's statistical asides ("(OR=1.63, 95% CI …)"):
    a reader asks about the finding, not its confidence interval."""
    return [Question(without_statistics(q.question), q.answer, q.form) for q in _sentence_questions(sentence)]


def _sentence_questions(sentence: str) -> list[Question]:
    found: list[Question] = []
    if question := definition_question(sentence):
        found.append(Question(question, sentence, "definition"))
    for make, form in ((how_many_question, "how_many"), (cause_question, "cause"),
                       (comparison_question, "comparison")):
        if question := make(sentence):
            found.append(Question(question, sentence, form))
    clause = read_clause(sentence)
    if clause is not None:
        if yes_no := yes_no_question(clause):
            question, negated = yes_no
            found.append(Question(question, f"{'No' if negated else 'Yes'}. {sentence}", "yes_no"))
        if question := value_question(clause):
            found.append(Question(question, sentence, "value"))
        if question := object_question(clause):
            found.append(Question(question, sentence, "object"))
        if question := subject_question(clause):
            found.append(Question(question, sentence, "subject"))
        if not any(q.form == "how_many" for q in found) and (question := quantity_question(clause)):
            found.append(Question(question, sentence, "how_many"))
    return found


def cloze_question(sentence: str) -> Question | None:
    """A continuation item for a sentence of 10+ words no other form fits: the question quotes its opening
    (a third of it, 3 to 10 words) and asks how it continues; the answer is the rest, verbatim."""
    tokens = sentence.split()
    if len(tokens) < 10:
        return None
    cut = min(max(3, len(tokens) // 3), 10)
    return Question(f'How does the sentence "{" ".join(tokens[:cut])} …" continue?', " ".join(tokens[cut:]),
                    "cloze")
