"""The study a structured abstract or paper reports: what it set out to do, how a question names it, and the
questions a reader asks of it.

- **Its aim**, as its text words it: "The purpose of this study was to determine …", "This study was
  undertaken to examine …", "We sought to …", an objective in the imperative ("To compare …", "Examine
  whether …"), or a stated act ("This study tests …", "We evaluated whether …").
- **Its open question**, where the background states one: "It is unclear whether X", "controversy exists
  as to whether X" (the question the study takes up).
- **Its name in a question**: its title when it has one, else "the study that set out to <aim>" or "the
  study that asked whether <question>".
- **Its own question**, as a reader would ask it ("Does exercise during pregnancy reduce the risk of
  postnatal depression?"), answered by the study's findings (tools/data/qa_extractive.py).
- **One question per section role** ("How was <study> carried out?", "Who took part in <study>?").

A sentence that cannot be read with confidence gives no aim; a question is never guessed."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tools.data.facts import Fact
from tools.data.questions import (
    AIM_VERBS,
    Question,
    base_form,
    contiguous_facts,
    core_word,
    finish_question,
    lower_first,
    parts_of_speech,
    read_clause,
    verb_tense,
    yes_no_question,
)

_WORK = r"(?:study|paper|article|work|trial|review|analysis|survey|investigation|report|research|project|audit|" \
    r"experiment)"
# the words before an aim ("The purpose of this study was to …"); the aim's first word must be a verb
_AIM_FRAME_PATTERNS = (
    (rf"\b(?:aims?|purposes?|objectives?|goals?|intent|intention|focus)\s+(?:of|in)\s+(?:this|the|our)\s+"
     rf"(?:[\w-]+\s+){{0,3}}?{_WORK}(?:\s+now)?\s+(?:was|were|is|are)\s+(?:to|at)\s+"),
    (r"^(?:(?:The|Our)\s+)(?:(?:main|primary|principal|overall|specific|study|present)\s+)*(?:aims?|purposes?|"
     r"objectives?|goals?)\s+(?:was|were|is|are)\s+to\s+"),
    (rf"\b(?:this|the|our|the present|the current)\s+(?:[\w,-]+\s+){{0,4}}?{_WORK}\s+"
     r"(?:(?:was|is|were|has been)\s+)?(?:aimed|aims|aim|sought|seeks|designed|undertaken|conducted|performed|"
     r"done|carried out|initiated|intended|planned|set out)\s+(?:at|to)\s+"),
    (r"\bwe\s+(?:therefore\s+|thus\s+|then\s+)?(?:aimed|aim|sought|seek|set out|wanted|intended|wished|tried|"
     r"attempted|proposed|decided|hypothesi[sz]ed)\s+to\s+"),
    (r"\bwe\s+(?:therefore\s+|thus\s+)?(?:conducted|performed|designed|undertook|carried out|initiated)\s+"
     rf"(?:this|a|the|an|our)\s+(?:[\w-]+\s+){{0,4}}?{_WORK}\s+(?:in order\s+)?to\s+"),
    r"^To\s+(?=[a-z])",
)
_AIM_FRAMES = [re.compile(pattern, re.IGNORECASE) for pattern in _AIM_FRAME_PATTERNS]
# "This study tests …", "We evaluated whether …": an act of the study stated in its objective or background
_STATED_AIM = re.compile(
    rf"^(?:(?:However|Therefore|Thus|Hence|Accordingly|Here|Herein),\s+)?(?:In (?:a|an|this|the|our) "
    rf"(?:[\w,-]+ ){{0,5}}{_WORK},?\s+(?i:we)\s+|(?:This|The present|The current|Our) (?:[\w-]+ ){{0,3}}{_WORK}\s+"
    r"(?:therefore\s+)?|(?i:we)\s+(?:therefore\s+|thus\s+|then\s+)?)(?:have\s+)?(?:\w+ly\s+)?"
    r"(?P<verb>[a-z]+(?:ed|es|s)|sought)\s+(?P<rest>.+)$")
# "In this study, parotid function was assessed in patients …": the aim in the passive
_PASSIVE_AIM = re.compile(rf"^In (?:this|the present|the current) {_WORK},?\s+(?P<what>[^,]{{3,120}}?)\s+"
                          r"(?:was|were)\s+(?:\w+ly\s+)?(?P<verb>\w+ed)\b\s*(?P<rest>.*)$")
_LOCAL_EXPERIENCE = re.compile(r"\s+(?:in|at) our (?:experience|institution|hospital|cent(?:er|re)|department|"
                               r"unit|practice|clinic|population)\b")
# the background's open question: "It is unclear whether …", "controversy exists as to whether …"
_OPEN_QUESTION = re.compile(
    r"\b(?:unclear|not clear|unknown|not known|uncertain|controversial|debated|debate|controversy|unresolved|"
    r"remains to be (?:determined|established|seen|elucidated|clarified)|(?:the )?question|no data|"
    r"little is known|(?:is|are|was|were) (?:not )?(?:yet )?(?:established|determined))\b"
    r"[^,;.]{0,40}?\b(?:whether|if)\s+(?P<clause>.+)$", re.IGNORECASE)
_PRONOUN_SUBJECTS = {"some", "any", "many", "few", "others", "both", "either", "neither", "one", "it", "each", "all"}
_OPEN_QUESTION_FIRST = re.compile(  # "Whether X is a biomarker of Y is unclear."
    r"^(?:However,\s+)?whether\s+(?P<clause>.+?)\s+(?:is|remains|was|has been)\s+(?:still\s+|as yet\s+)?"
    r"(?:unclear|unknown|uncertain|controversial|debated|not (?:clear|known|established)|an? (?:open|important)"
    r" (?:question|issue))\b", re.IGNORECASE)
_AIM_WHETHER = re.compile(rf"^(?:{AIM_VERBS}(?:,? and {AIM_VERBS})?\s+)?(?:whether|if)\s+"
                          r"(?:or not\s+)?(?P<clause>.+)$", re.IGNORECASE)
_AIM_NOUNS = ("effects?|impacts?|influences?|associations?|relationships?|relations?|roles?|values?|efficacy|"
              "effectiveness|safety|feasibility|accuracy|reliability|validity|utility|usefulness|performance|"
              "outcomes?|prevalence|incidence|frequency|rates?|risks?|risk factors|predictors|determinants|"
              "causes|consequences|benefits?|costs?|correlations?|differences?|characteristics|patterns|"
              "trends|prognosis|prognostic value|diagnostic value|predictive value|mechanisms?|results|extent")
_AIM_NOUN = re.compile(rf"^{AIM_VERBS}(?:,? and {AIM_VERBS})?\s+(?:the\s+)?(?P<what>(?:(?:short|long)-term\s+|"
                       rf"possible\s+|potential\s+|clinical\s+|overall\s+)?(?:{_AIM_NOUNS}))\s+"
                       rf"(?P<prep>of|between|in|among|for|associated with|to which)\s+(?P<rest>.+)$", re.IGNORECASE)
_AIM_END = re.compile(r"(?:,|;|:| and to | and (?:whether|if) | as well as | in order to | so as to | "
                      r"by (?:means|using|comparing|measuring|analy[sz]ing)\b)")
_UNFINISHED = {"a", "an", "the", "its", "their", "his", "her", "any", "each", "every", "some", "no", "of", "and",
               "or", "in", "with", "for", "to", "on", "at", "by", "from", "between", "than"}


def ends_unfinished(text: str) -> bool:
    """Whether a cut leaves its phrase unfinished: it ends in a determiner, a preposition, a conjunction or an
    adjective with no noun after it ("… recurrent spontaneous abortion in a large")."""
    last = text.rstrip(" ,;:").rsplit(" ", 1)[-1].strip("()[]\"'").lower()
    return not last or last in _UNFINISHED or parts_of_speech(last) == {"ADJ"}


_PREPOSITION = {"in", "among", "during", "with", "for", "at", "from", "on", "of", "within", "after", "before"}


def finished(text: str) -> str | None:
    """The text, or when it ends unfinished the text before its last prepositional phrase ("… abortion in a
    large" -> "… abortion"); None when that leaves fewer than three words or is unfinished too."""
    text = text.rstrip(" ,;:")
    if not ends_unfinished(text):
        return text
    tokens = text.split()
    at = max((i for i, t in enumerate(tokens) if t.lower() in _PREPOSITION), default=0)
    head = " ".join(tokens[:at])
    return head if at >= 3 and not ends_unfinished(head) else None


def before_aim_end(text: str) -> str:
    """The text up to where an aim or a question ends (a comma, "in order to" …), at the first such place
    that leaves the phrase finished ("in a large, well-defined sample" is cut before "in a large")."""
    for end in _AIM_END.finditer(text):
        if head := finished(text[:end.start()]):
            return head.strip()
    return text.strip()


_MODAL_WORD = re.compile(r"\b(?:can|could|will|would|should|may|might|must|cannot)\b", re.IGNORECASE)
_STUDY_QUESTION = re.compile(r"(?:addressed|asked|examined|investigated|explored) the question[s]?:?\s+(?P<q>.+)$",
                             re.IGNORECASE)
# punctuation ends a clause only before a space ("holmium:YAG", "1,000" go on) and never before a year
# ("January 1, 2005")
_ANCHOR_CUT = re.compile(r"[,;:](?=\s|$)(?!\s\d{4}\b)| in order to | by means of | so as to | and to | and also | "
                         r"while |\s\(\d")
# an aim or question that leans on what is outside it ("in this population", "the above factors", "our
# experience"); within an aim "its" and "their" point inside it ("the aorta and its branches")
_LEANS_OUTSIDE = re.compile(r"\b(?:this|these|such|above|aforementioned|former|latter|he|she|they|them|"
                            r"we|our|(?-i:us)|the following)\b", re.IGNORECASE)


# -- its aim ------------------------------------------------------------------------------------------------
def _verb_phrase(text: str) -> str | None:
    """'evaluating the safety of X' -> 'evaluate the safety of X'; None unless the text starts with a verb."""
    first, _, rest = text.partition(" ")
    word = first.strip(",:").lower()
    if not rest or "VERB" not in parts_of_speech(word) or word in {"be", "is", "are", "was", "were", "have"}:
        return None
    base = base_form(word) if word.endswith("ing") or verb_tense(word) else word
    return f"{base} {rest}" if base else None


def _framed_aim(sentence: str) -> str | None:
    for frame in _AIM_FRAMES:
        if match := frame.search(sentence):
            return _verb_phrase(sentence[match.end():])
    return None


def aim_in(fact: Fact) -> str | None:
    """The aim one sentence states, beginning with its verb in the base form ("determine whether …"), or None."""
    text = re.sub(r"^[•\-–*]\s*", "", fact.text.strip())
    if fact.role in ("results", "conclusion", "methods"):
        return None
    if aim := _framed_aim(text):
        return aim
    if fact.role == "objective" and re.match(rf"^{AIM_VERBS}\s", text, re.IGNORECASE):
        return text  # an objective section in the imperative: "Examine whether …"
    if (passive := _PASSIVE_AIM.match(text)) and re.fullmatch(AIM_VERBS, base := base_form(passive["verb"]) or ""):
        return f"{base} {lower_first(passive['what'])} {passive['rest']}".strip()
    match = _STATED_AIM.match(text)
    stated = match and (fact.role in ("objective", "background") or match["rest"].startswith(("whether", "if ")))
    aim = f"{base_form(match['verb']) or ''} {match['rest']}" if match else ""
    return aim if stated and re.match(rf"{AIM_VERBS}\b", aim) else None


def _first_aim(aim: str) -> str:
    aim = aim.rstrip(" .")
    aim = re.sub(r"^(\w+):\s*\(?(?:1|i|a)\)\s*", r"\1 ", aim)  # "determine: (1) the incidence …"
    aim = re.sub(r"(?:^|\s)\(?(?:1|i)\)\s*", " ", aim, count=1).strip()  # "to (1) assess …"
    aim = _LOCAL_EXPERIENCE.sub("", aim)
    return re.split(r",? and (?:to|secondly|second) \w+|;", aim)[0].strip()


def study_aim(facts: Sequence[Fact]) -> str | None:
    """What the study set out to do, as its text words it ("determine whether X reduces Y"), or None."""
    for fact in facts:
        if fact.kind != "sentence" or not (aim := aim_in(fact)):
            continue
        if len(aim := _first_aim(aim).split()) >= 3:
            return lower_first(" ".join(aim))
    return None


def open_question(facts: Sequence[Fact]) -> str | None:
    """The question the background leaves open ("whether BDD can present with psychotic features"), or None."""
    for fact in facts:
        if fact.kind != "sentence" or fact.role not in ("background", "objective", ""):
            continue
        if match := _OPEN_QUESTION_FIRST.match(fact.text) or _OPEN_QUESTION.search(fact.text):
            clause = before_aim_end(match["clause"].rstrip(" .?"))
            pronoun_subject = clause.split()[0].lower() in _PRONOUN_SUBJECTS
            if 3 <= len(clause.split()) <= 25 and not _LEANS_OUTSIDE.search(clause) and not pronoun_subject:
                return clause
    return None


# -- its name in a question -------------------------------------------------------------------------------
def names_a_study(title: str) -> bool:
    """Whether a title can name a document in a question: 2 to 30 words, at least two of them words of
    three or more letters. Identifiers and file stems ("pubmed 23774337", "2301.12345") cannot."""
    words = title.split()
    return 2 <= len(words) <= 30 and sum(1 for w in words if re.fullmatch(r"[^\W\d_]{3,}\W*", w)) >= 2


def _balanced(text: str) -> bool:
    return text.count("(") == text.count(")") and text.count("[") == text.count("]")


_PHRASE_START = {"in", "among", "during", "with", "by", "for", "at", "from", "using", "after", "before", "within",
                 "on", "through", "via", "following", "when", "who", "which", "that", "whose", "where", "while"}


# a wh-clause right after the aim's verb ("determine to what extent X …", "assess how X …") is one clause too
_WH_WORDS = {"what", "how", "which", "why"}


def short_phrase(text: str, limit: int = 20, whole_limit: int = 30) -> str | None:
    """A long aim or question cut where a phrase ends, to name the study in a question: at its first clause
    boundary (a comma, "in order to" …) that leaves 4 or more words, then, past `limit` words, before the
    last preposition or relative word that leaves 6 or more (never inside a that/whether clause, which
    would be left unfinished). An aim with no such cut names the study whole up to `whole_limit` words
    ("determine whether bone scans can be avoided if the pelvis is included in CT …"). None when no cut
    leaves a clean phrase."""
    for boundary in _ANCHOR_CUT.finditer(text):
        head = text[:boundary.start()]
        open_list = " between " in f" {head} " and " and " not in head.split(" between ", 1)[-1]
        head = finished(head) or ""
        if len(head.split()) >= 4 and _balanced(head) and not open_list:
            text = head
            break
    tokens = text.split()
    if len(tokens) > limit:
        clause_at = next((i for i, t in enumerate(tokens) if t.lower() in {"that", "whether", "if"}
                          or (i <= 3 and t.lower() in _WH_WORDS)), len(tokens))
        cuts = [i for i in range(6, min(limit, clause_at) + 1) if tokens[i].lower() in _PHRASE_START
                and not tokens[i - 1].lower().endswith(("ed", "ing", "en"))  # not after a participle
                and _balanced(" ".join(tokens[:i]))]
        if not cuts and len(tokens) > whole_limit:
            return None
        tokens = tokens[:cuts[-1]] if cuts else tokens
    phrase = " ".join(tokens).strip(" ,;:")
    return phrase if len(tokens) >= 3 and _balanced(phrase) and not _LEANS_OUTSIDE.search(phrase) else None


def study_anchor(title: str, facts: Sequence[Fact]) -> str | None:
    """How questions name the study: by its title when the title names one, else by the question or aim its
    text states ("the study that set out to assess whether …"), else None (then no section question is
    asked: "the study" alone names nothing)."""
    title = title.strip().rstrip(".?")
    if names_a_study(title):
        return f'the study "{title}"'
    for fact in facts:
        if match := _STUDY_QUESTION.search(fact.text):
            asked = re.sub(r"^(?:Compared (?:to|with) [^,]+,\s*)", "", match["q"].rstrip(" ?."))
            if 3 <= len(asked.split()) <= 20 and not _LEANS_OUTSIDE.search(asked):
                return f'the study that asked "{asked}"'
    if (aim := study_aim(facts)) and (short := short_phrase(aim)):
        return f"the study that set out to {short}"
    if (asked := open_question(facts)) and (short := short_phrase(asked)):
        return f"the study that asked whether {lower_first(short)}"
    if asked := objective_question(facts):
        return f'the study that asked "{asked}"'
    if (act := method_act(facts)) and (short := short_phrase(act)):
        return f"the study that {short}"
    return None


_ASKS = re.compile(r"^(?:Do|Does|Did|Is|Are|Was|Were|Can|Could|Should|Has|Have|Will|Would|What|Which|How|Why)\s")


def objective_question(facts: Sequence[Fact]) -> str | None:
    """An objective stated as a question ("OBJECTIVE: Do endometrial polyps … have similar …?", its mark at
    times a full stop), without its mark, or None."""
    for fact in facts:
        text = fact.text.strip()
        if fact.kind == "sentence" and fact.role in ("objective", "background", "") and _ASKS.match(text) \
                and text.endswith(("?", ".")) and 4 <= len(text.split()) <= 30 and _balanced(text) \
                and not _LEANS_OUTSIDE.search(text):
            return text.rstrip(" ?.")
    return None


# "We examined 680 unrelated FAP families for …": what the study did, said in its methods in the past tense
_METHOD_ACT = re.compile(r"^(?:In (?:this|the present|the current) \w+,\s*)?We\s+(?:(?:first|then|retrospectively|"
                         r"prospectively|also)\s+)?(?P<verb>[a-z]+)\s+(?P<rest>.{10,})$")


def method_act(facts: Sequence[Fact]) -> str | None:
    """What the study did, as the first sentence of its methods says it ("examined 680 unrelated FAP families
    for germline mutations in the APC gene"): a name for a study that states no aim; None without one."""
    for fact in facts:
        if fact.kind != "sentence" or inferred_role(fact) != "methods":
            continue
        match = _METHOD_ACT.match(_LOCAL_EXPERIENCE.sub("", fact.text.strip()).rstrip(" ."))
        return f"{match['verb']} {match['rest']}" if match and verb_tense(match["verb"]) == "past" else None
    return None


# -- its own question -------------------------------------------------------------------------------------
_RELATIVE = {"that", "which", "who", "whom", "whose", "when", "where", "if", "whether", "than"}


def _finite_verb_after_do_support(question: str) -> bool:
    """'Did a well develop collateral circulation predisposes to …?', 'Did the K/DOQI recommend doses … are
    adequate?', 'Did X differ … and correlated …?': a second finite verb after do-support means the clause was
    misread (a participle taken for the verb)."""
    if not question.startswith(("Do ", "Does ", "Did ")):
        return False
    later = [core_word(w).lower() for w in question.split()[3:]]
    for position, word in enumerate(later):
        if word in _RELATIVE:
            return False
        third_person = parts_of_speech(word) == {"VERB"} and verb_tense(word) == "third person"
        past_after_and = position > 0 and later[position - 1] == "and" and word.endswith("ed")
        if third_person or word in {"is", "are", "was", "were"} or past_after_and:
            return True
    return False


def whether_question(clause_text: str) -> str | None:
    """'there is a relationship between X and Y' -> 'Is there a relationship between X and Y?'; 'X reduces
    Y' -> 'Does X reduce Y?'; None when the clause cannot be read with confidence."""
    clause_text = re.sub(r"\s+or not$", "", before_aim_end(clause_text).rstrip(" .?"))
    if there := re.match(r"^there (is|are|was|were) (.+)$", clause_text):
        return finish_question(f"{there[1].capitalize()} there {there[2]}")
    clause = read_clause(clause_text)
    if clause is None or not (yes_no := yes_no_question(clause)) or _finite_verb_after_do_support(yes_no[0]):
        return None
    return yes_no[0]


def aim_questions(aim: str) -> list[str]:
    """The study's own question, as a reader would ask it: 'determine whether X reduces Y' -> 'Does X reduce
    Y?'; 'assess the impact of X on Y' -> 'What is the impact of X on Y?'. Empty when the aim cannot be
    read as a question with confidence."""
    found: list[str] = []
    if match := _AIM_WHETHER.match(aim):
        if question := whether_question(match["clause"]):
            found.append(question)
    elif match := _AIM_NOUN.match(aim):
        rest = before_aim_end(match["rest"])
        what, prep = match["what"].lower(), match["prep"].lower()
        plural = what.endswith("s") and not what.endswith(("ss", "sis", "us"))
        if prep == "between":  # "between A, B and C": the list is the question
            rest = re.split(r";|:| and to | in order to ", match["rest"])[0].strip().rstrip(",")
        if 2 <= len(rest.split()) <= 20 and (prep != "between" or " and " in rest) and " that of " not in rest \
                and prep != "to which":
            found.append(finish_question(f"What {'are' if plural else 'is'} the {what} {prep} {rest}"))
    return [q for q in found if _well_formed_study_question(q) and not _LEANS_OUTSIDE.search(q)]


def _well_formed_study_question(question: str) -> bool:
    # do-support over a modal ("Did the sensitivity … could be increased?") is a misread clause
    return 5 <= len(question.split()) <= 30 and _balanced(question) and not (
        question.startswith(("Do ", "Does ", "Did ")) and _MODAL_WORD.search(question))


def study_questions(facts: Sequence[Fact]) -> list[str]:
    """The study's own questions: from its aim, else from the question its background leaves open."""
    if (aim := study_aim(facts)) and (found := aim_questions(aim)):
        return found
    asked = open_question(facts)
    question = whether_question(asked) if asked else None
    well_formed = question and _well_formed_study_question(question) and not _LEANS_OUTSIDE.search(question)
    return [question] if well_formed else []


# -- its sections -----------------------------------------------------------------------------------------
# "The purpose of this study …", "Our aim was to …"; not "The purpose of the encoding is to …" (a tutorial's
# sentence, which made a study of it: "What was the objective of the study 'Logical Qubits and Code Distance'?")
_STUDY_AIM_START = re.compile(rf"^(?:(?:The|Our) (?:main |primary )?(?:aims?|purposes?|objectives?|goals?) "
                              rf"(?:of (?:this|the|our|the present|the current) (?:[\w,-]+ ){{0,4}}?{_WORK}\b|"
                              r"(?:was|were|is|are) to\b)|"
                              rf"(?:This|The present|The current|Our) {_WORK} (?:aimed|aims|sought|seeks|was "
                              r"designed|is designed) to|We (?:aimed|sought|set out|wanted|intended) to|To "
                              rf"{AIM_VERBS}\b)", re.IGNORECASE)
_STUDY_METHOD = re.compile(
    r"^(?:We (?:retrospectively |prospectively )?(?:performed|conducted|analy[sz]ed|reviewed|studied|enrolled|"
    r"recruited|surveyed|compared|measured|used|included|examined|evaluated|randomi[sz]ed)\b|(?:A|This) "
    r"(?:retrospective|prospective|randomi[sz]ed|cross-sectional|cohort|case-control|population-based)\b)",
    re.IGNORECASE)
_STUDY_CONCLUSION = re.compile(
    r"^(?:In conclusion|To conclude|Taken together|In summary)\b|^(?:These|Our|The|This) (?:results?|findings?|"
    r"data|study|analysis|observations?) (?:suggests?|indicates?|shows?|demonstrates?|supports?|confirms?|imply|"
    r"implies)\b|^We conclude\b", re.IGNORECASE)


def inferred_role(fact: Fact) -> str:
    """A sentence's section role: its label's, or for unlabelled abstracts what the sentence itself says
    it is (an aim, a method, a conclusion)."""
    if fact.role or fact.kind != "sentence":
        return fact.role
    if _STUDY_AIM_START.match(fact.text):
        return "objective"
    if _STUDY_METHOD.match(fact.text):
        return "methods"
    return "conclusion" if _STUDY_CONCLUSION.match(fact.text) else ""


# a results sentence that says who was studied or for how long ("We studied 122 patients who underwent …",
# "Mean follow up was 25 months"), not what was found: it does not answer "What did the study find?"
_ENROLMENT = re.compile(
    r"\b(?:were|was) (?:\w+ly )?(?:included|enrolled|recruited|identified|studied|analy[sz]ed|available|eligible|"
    r"evaluated|reviewed|examined|interviewed|surveyed|randomi[sz]ed|followed|screened|assessed|obtained)\b|"
    r"\b(?:underwent|participated|took part|completed the|met the inclusion|proved suitable)\b|"
    r"^(?:Overall, |In total, )?We (?:studied|included|enrolled|recruited|identified|reviewed|analy[sz]ed|examined)\b|"
    r"\b(?:mean|median|minimum|maximum|average) (?:age|follow[- ]?up|duration)\b", re.IGNORECASE)
_FINDING = re.compile(
    r"\b(?:signific\w*|differ\w*|higher|lower|greater|less|more|fewer|increas\w*|decreas\w*|reduc\w*|improv\w*|"
    r"associat\w*|correlat\w*|predict\w*|odds|hazard|than|compared|versus|vs|superior|inferior|better|worse|"
    r"effective\w*|success\w*|fail\w*|surviv\w*|mortality|remission|recurren\w*|complications?)\b", re.IGNORECASE)


def reports_a_finding(fact: Fact) -> bool:
    """Whether a results sentence says what was found, not only who was studied or for how long."""
    return not _ENROLMENT.search(fact.text) or bool(_FINDING.search(fact.text))


def without_enrolment(facts: Sequence[Fact]) -> list[Fact]:
    """Results sentences from the first one that reports a finding (all of them when none does)."""
    first = next((i for i, f in enumerate(facts) if reports_a_finding(f)), 0)
    return list(facts[first:])


_SECTION_QUESTIONS = {
    "background": "What is the background of {study}?",
    "objective": "What was the objective of {study}?",
    "methods": "How was {study} carried out?",
    "setting": "Where was {study} carried out?",
    "participants": "Who took part in {study}?",
    "intervention": "Which interventions did {study} compare?",
    "outcome": "What were the main outcome measures of {study}?",
    "results": "What did {study} find?",
    "conclusion": "What did {study} conclude?",
}


def section_questions(facts: Sequence[Fact], study: str) -> list[tuple[Question, tuple[int, ...]]]:
    """One question per section role of a structured abstract, answered by the section's first
    sentences (at most three); with the indices of the facts the answer holds."""
    found: list[tuple[Question, tuple[int, ...]]] = []
    for role, template in _SECTION_QUESTIONS.items():
        members = [f for f in facts if inferred_role(f) == role and f.kind == "sentence"]
        if not members or (role == "objective" and " set out to " in study):  # the name gives the aim away
            continue
        members = contiguous_facts(without_enrolment(members) if role == "results" else members, 3)
        answer = " ".join(f.text for f in members)
        found.append((Question(template.format(study=study), answer, "section"), tuple(f.index for f in members)))
    return found
