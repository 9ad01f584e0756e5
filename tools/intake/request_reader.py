"""The offline request reader: one sentence, worded as people word it, becomes an action, a base model,
a subject and options (`ReadRequest`), or a `RequestError` that says what was understood.

Decision: no NLP library. spaCy and stanza read nothing until a language model is downloaded, NLTK's
tokenisers and taggers need their data downloaded, and none of them knows model names like
"SmolLM-2 135m"; a request is a small grammar (an action, a model, a subject, a few options), so the
reader is a slot filler on the standard library (`re`, `unicodedata`, `difflib` for misspelt model
names). It reads in five steps, each taking what it recognises out of the text:
1. normalise: Unicode NFKC, curly quotes, whitespace; malformed text (a lone surrogate) is refused;
2. options said in words, from the `OPTION_RULES` table ("in 2 epochs", "with a rank of 8",
   "from PubMed and Wikipedia", "using the files in ./docs", "learning rate 1e-4");
3. the base model: every run of up to four words is looked up among the catalogue's names
   (tools.models.catalogue), exactly after squashing case and punctuation, then with difflib for typos;
   a bare family name ("qwen") or a fuzzy match counts only next to a model cue (after a verb, in
   parentheses, before "model"), so "the phi coefficient" stays a subject; or a local folder path;
4. the rest is cut at the removed parts and at strong separators (: — ( ) ; and sentence ends) into
   segments; each segment's intro is read word-list by word-list in a fixed order of phases:
   filler (politeness, hedges), action ("fine-tune", "teach"), object ("a model"), goal
   ("to know", "get good at", "an expert"), a preposition ("on", "about") that ends the intro;
5. the subject: the segment with the strongest intro, with trailing filler and questions removed,
   and at least two letters in any script.
Adding a phrasing means adding words to a list in `Vocabulary`, not a pattern. The action is read
in English; a sentence in another language gets a message naming the subject that was understood.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.models.catalogue import catalogue_aliases, find_in_catalogue, squash_name
from tools.sources.names import SOURCE_WORDS

MAX_REQUEST_CHARS = 2000
EXAMPLE = "fine-tune SmolLM2 on quantum error correction"
CUT = "\x1f"  # stands where a recognised part was taken out of the text


class RequestError(ValueError):
    """A request the agent cannot act on; `understood` says what it did make out."""

    def __init__(self, message: str, understood: dict[str, Any] | None = None) -> None:
        self.understood = understood or {}
        detail = ", ".join(f"{k}={v!r}" for k, v in self.understood.items() if v)
        super().__init__(f"{message}" + (f" (understood: {detail})" if detail else ""))


@dataclass(frozen=True)
class ReadRequest:
    """What the reader made of a sentence. `options` are JobSpec options said in words, nested as the
    spec nests them ({"training": {"epochs": 2}, "sources": ["pubmed"]})."""

    subject: str
    base_model: str | None = None
    action: str | None = None  # the action words read ("fine-tune", "get good at"); None: implied by the form
    options: dict[str, Any] = field(default_factory=dict)


# -- vocabulary (lower case; phrases match whole words, the longest first) ---------------------------

ACTION_WORDS: tuple[str, ...] = (
    "fine-tune", "fine tune", "finetune", "fine-tuning", "fine tuning", "finetuning", "fine-tuned",
    "fintune", "fine-tne", "fine tun", "funetune", "ft", "train", "training", "trained", "retrain", "tune",
    "tuned", "teach", "adapt",
    "specialise", "specialize", "customise", "customize", "tailor", "educate", "upskill", "school",
)
ACTION_PATTERN = r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"[\s-]?") for w in ACTION_WORDS) + r")\b"


@dataclass(frozen=True)
class Vocabulary:
    """The word lists a segment's intro is read with, in the order the phases come."""

    filler: tuple[str, ...] = (
        "hey", "hi", "hello", "hiya", "yo", "ok", "okay", "so", "um", "uh", "hmm", "alright", "please", "pls",
        "plz", "kindly", "basically", "also", "then", "maybe", "perhaps", "i think", "i guess", "i was wondering",
        "i'd like", "i would like", "i'd love", "i would love", "i want", "i wanna", "i need", "we need",
        "we want", "we'd like", "i'm looking", "i am looking", "looking", "can you", "could you", "would you",
        "will you", "can u", "could u", "can we", "could we", "could i", "can i", "is it possible to",
        "would it be possible to", "is there any way", "is there a way to", "you could", "if you could",
        "how do i", "how can i", "i'm trying to", "i am trying to", "trying to",
        "let's", "lets", "let us", "go ahead and", "help me", "help us", "you to", "u to", "for me", "for us",
        "want to", "wanna", "need to", "needs to", "has to", "have to", "got to", "gotta", "should", "must",
        "try to", "try and", "be able to", "quickly", "use", "using", "with", "based on", "on top of",
        "starting from", "via", "and", "me", "i", "we", "you", "u", "to", "it", "do", "some",
    )
    action: tuple[str, ...] = ACTION_WORDS
    # an action only together with an object or a goal ("make ... an expert", "build me a model that")
    weak_action: tuple[str, ...] = ("make", "build", "create", "get", "give me", "get me", "turn", "set up",
                                    "help", "need", "want", "have", "produce")
    obj: tuple[str, ...] = (
        "a model", "an llm", "a small model", "small model", "the model", "my model", "our model",
        "this model", "model", "llm", "a", "an", "it", "one", "a version of", "a copy of", "an assistant",
        "something", "a thing", "someone", "a language model", "language model", "an expert model",
        "assistant", "a chatbot", "chatbot", "a bot", "bot", "an ai", "ai", "me", "into", "up",
    )
    goal: tuple[str, ...] = (
        "to know", "know", "knows", "knowing", "to learn", "learn", "learns", "to understand", "understand",
        "understands", "to get good at", "get good at", "good at", "be good at", "better at", "to be better at",
        "get better at", "an expert", "expert", "be an expert", "become an expert", "into an expert",
        "that knows", "which knows", "who knows", "that understands", "that is an expert", "that's an expert",
        "that is good at", "to master", "master", "to be fluent", "fluent", "to specialise", "to specialize",
        "to answer questions", "answer questions", "answers questions", "that answers questions",
        "answering questions", "that can answer questions", "can answer questions", "that can", "can",
        "to be able to answer questions", "model", "llm", "a model",
        "to handle", "handle", "to help with", "help with", "to cover", "covering", "more", "everything",
        "a lot", "stuff", "things", "all", "really well", "well", "deeply", "properly",
        "to talk", "talk", "to chat", "chat", "up to speed", "get up to speed", "to get up to speed",
    )
    cue: tuple[str, ...] = (
        "on", "about", "in", "for", "at", "regarding", "around", "re", "concerning", "of", "with data on",
        "with data about", "on the topic of", "the topic of", "on the subject of", "the subject of",
        "the topic", "topic", "subject", "related to", "when it comes to", "in the field of", "the field of",
        "in the area of", "the area of", "in the domain of", "the domain of", "domain", "documents about",
        "documents on", "docs about", "papers about", "papers on", "data about", "data on", "texts about",
        "articles about", "questions about", "questions on", "anything about", "anything to do with",
    )


VOCABULARY = Vocabulary()
_PHASES = ("filler", "action", "obj", "goal", "cue")  # weak_action reads as phase "action"

_TRAILING_FILLER = (
    "please", "pls", "plz", "thanks", "thank you", "thanks a lot", "thank you very much", "thx", "ty", "cheers",
    "for me", "for us", "if possible", "if you can", "asap", "now", "quickly", "inside out", "inside and out",
    "really well", "very well", "well", "properly", "thoroughly", "in detail", "in depth", "deeply", "a bit",
    "better", "kthx", "kthxbye", "ok", "okay", "using", "use", "with", "based on", "on top of", "starting from",
    "via", "from", "on", "for", "and", "model", "the model", "llm", "or so", "etc", "stuff", "too", "as well",
    "please and thank you", "first", "today", "tonight", "real quick", "then", "i guess", "maybe", "lol",
    "base model", "base", "as the base", "as base", "as the base model", "thanks in advance", "also",
    "and also", "plus", "but",
)
_TRAILING_QUESTION = re.compile(
    r"(?:[,;.!—–-]\s*|\s+)(?:(?:can|could|would|will|is|are|do|does|shall|may)\s+(?:you|u|we|i|that|this|it)"
    r"(?:\s+[^\s,;.!?]+){0,4}|(?:ok|okay|right|yeah|possible|doable)|is that (?:ok|okay|possible|doable))"
    r"\s*\?+\s*$", re.IGNORECASE)
_VAGUE = {"it", "this", "that", "something", "stuff", "anything", "data", "things", "everything", "there",
          "them", "these", "those", "topic", "subject", "a topic", "some topic", "my data", "my topic"}


def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted(phrases, key=len, reverse=True)
    alternatives = "|".join(re.escape(p).replace(r"\ ", r"\s+").replace("'", "['’]?") for p in ordered)
    return re.compile(rf"(?:{alternatives})(?![\w'-])", re.IGNORECASE)


_PHASE_PATTERNS = {name: _phrase_pattern(getattr(VOCABULARY, name)) for name in (*_PHASES, "weak_action")}
_TRAILING_PATTERN = re.compile(rf"(?<![\w'-])(?:{_phrase_pattern(_TRAILING_FILLER).pattern})[\s,.;:!?)]*$",
                               re.IGNORECASE)


# -- step 1: normalise --------------------------------------------------------------------------------

def normalise(sentence: str) -> str:
    """NFKC text with plain quotes and single spaces; RequestError for empty or malformed text."""
    try:
        sentence.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RequestError(f"the request holds malformed text (a lone surrogate at character {error.start}); "
                           "send it as valid UTF-8") from None
    if not sentence or not sentence.strip():
        raise RequestError(f"the request is empty: say what to fine-tune on, e.g. '{EXAMPLE}'")
    if len(sentence) > MAX_REQUEST_CHARS:
        raise RequestError(f"the request is {len(sentence)} characters long; keep it under {MAX_REQUEST_CHARS}")
    text = unicodedata.normalize("NFKC", sentence)
    text = text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "«": '"', "»": '"',
                                         "、": ",", "，": ",", "：": ":", "；": ";", CUT: " "}))
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    return re.sub(r"\s+", " ", text).strip().strip("\"'`").strip()


# -- step 2: options said in words --------------------------------------------------------------------

_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10, "a single": 1, "a couple of": 2, "a few": 3, "zero": 0, "no": 0}
_NUMBER = r"(?P<value>\d+(?:\.\d+)?|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_FLOAT = r"(?P<value>\d*\.?\d+(?:e[-+]?\d+)?)"
_LEAD = r"(?:(?:^|(?<=[\s,(]))(?:,\s*)?(?:(?:and|with|using|at|in|for|over|of|then|but|only|just|,)\s+)*)"
_PATH = r"(?P<value>(?:~|\.{1,2})?/[^\s,;()\"']*|\.{1,2}(?=[\s,;)]|$))"
_SOURCE = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(SOURCE_WORDS, key=len, reverse=True))
_SOURCE_LIST = (rf"(?P<value>(?:the\s+)?(?:{_SOURCE})(?:\s+(?:papers|articles|abstracts|pages|search))?"
                rf"(?:\s*(?:,|and|&|/|\+|or|plus)\s*(?:the\s+)?(?:{_SOURCE})"
                r"(?:\s+(?:papers|articles|abstracts|pages|search))?)*)")


def _number(match: re.Match[str]) -> float:
    value = match["value"].lower()
    return float(_NUMBER_WORDS[value]) if value in _NUMBER_WORDS else float(value)


def _whole(match: re.Match[str]) -> int:
    return int(_number(match))


def _sources(match: re.Match[str]) -> list[str]:
    names = re.split(r"\s*(?:,|\band\b|&|/|\+|\bor\b|\bplus\b)\s*", match["value"].lower())
    found = []
    for name in names:
        name = re.sub(r"^the\s+|\s+(?:papers|articles|abstracts|pages|search)$", "", re.sub(r"\s+", " ", name))
        if name in SOURCE_WORDS or f"the {name}" in SOURCE_WORDS:
            found.append(SOURCE_WORDS.get(name) or SOURCE_WORDS[f"the {name}"])
    return list(dict.fromkeys(found))


def _path(match: re.Match[str]) -> str:
    value = match["value"]
    return value.rstrip(".") if len(value.rstrip(".")) > 1 else value


@dataclass(frozen=True)
class OptionRule:
    """One option said in words: where it goes in the spec, the words, and how to read the value."""

    target: str  # dotted JobSpec path: "training.epochs"; "sources" and "urls" collect lists
    patterns: tuple[re.Pattern[str], ...]
    read: Callable[[re.Match[str]], Any]


def _rule(target: str, read: Callable[[re.Match[str]], Any], *patterns: str) -> OptionRule:
    return OptionRule(target, tuple(re.compile(rf"{_LEAD}(?:{p})(?![\w/-])", re.IGNORECASE) for p in patterns),
                      read)


OPTION_RULES: tuple[OptionRule, ...] = (
    _rule("urls", lambda m: [m["value"].rstrip(".,;)")], r"(?:(?:from|the)\s+)?(?:(?:the\s+)?pages?\s+(?:at\s+)?)?"
          r"(?P<value>https?://[^\s,;()]+)"),
    _rule("docs_path", _path,
          r"(?:(?:from|on|in|use)\s+)?(?:the\s+|my\s+|our\s+)?(?:local\s+)?(?:files?|documents?|docs|papers|pdfs|"
          r"notes|texts?|data)\s+(?:(?:that\s+are|i\s+put|i\s+have)\s+)?(?:in|at|from|under|inside)\s+"
          r"(?:the\s+)?(?:(?:folder|directory|dir)\s+)?" + _PATH,
          r"(?:from|in|use)\s+(?:the\s+|my\s+)?(?:folder|directory|dir)\s+" + _PATH,
          r"(?:from\s+)" + _PATH,
          r"(?:docs?_path|docs|documents|folder)\s*[=:]\s*" + _PATH),
    _rule("sources", _sources,
          r"(?:(?:from|use|using|via|with|search(?:ing)?|sources?\s*[:=]?|with\s+data\s+from|pulling\s+from|"
          r"drawing\s+on)"
          r"\s+)(?:only\s+)?" + _SOURCE_LIST + r"(?:\s+only)?",
          _SOURCE_LIST + r"\s+only"),
    _rule("training.epochs", _number,
          r"(?:only\s+|just\s+)?" + _NUMBER + r"\s+(?:training\s+|full\s+)?(?:epochs?|passes)",
          r"epochs?\s*(?:=|:|of)?\s*" + _FLOAT,
          r"(?:one|a\s+single)\s+epoch"),
    _rule("training.lora_r", _whole,
          r"(?:a\s+)?(?:lora\s+)?rank\s*(?:of|=|:)?\s*" + _NUMBER,
          r"(?:lora_r|lora\s+r|r)\s*=\s*" + _NUMBER,
          _NUMBER + r"\s+(?:as\s+(?:the\s+)?)?(?:lora\s+)?rank"),
    _rule("training.lora_alpha", _whole, r"(?:a\s+)?(?:lora\s+)?alpha\s*(?:of|=|:)?\s*" + _NUMBER),
    _rule("training.learning_rate", _number,
          r"(?:a\s+|the\s+)?(?:learning[\s_-]?rate|lr)\s*(?:of|=|:|at|to)?\s*" + _FLOAT,
          _FLOAT + r"\s+(?:as\s+(?:the\s+)?)?(?:learning[\s_-]?rate|lr)"),
    _rule("training.batch_size", _whole,
          r"(?:a\s+)?batch(?:[\s_-]?size)?\s*(?:of|=|:)?\s*" + _NUMBER,
          _NUMBER + r"\s+examples\s+per\s+(?:batch|step)"),
    _rule("training.max_steps", _whole,
          r"(?:at\s+most|max(?:imum)?|up\s+to|no\s+more\s+than)?\s*" + _NUMBER + r"\s+(?:training\s+)?steps",
          r"max_steps\s*=\s*" + _NUMBER),
    _rule("max_rounds", _whole,
          r"(?:at\s+most|max(?:imum)?|up\s+to|no\s+more\s+than)\s+" + _NUMBER +
          r"\s+(?:critic\s+|improvement\s+|extra\s+|more\s+)?rounds?",
          _NUMBER + r"\s+(?:critic|improvement|extra|retry|more)\s+rounds?",
          r"(?P<value>no)\s+(?:critic|improvement|extra|retry)\s+rounds?"),
    _rule("budget.max_documents", _whole,
          r"(?:(?:from|using|read(?:ing)?)\s+)?(?:at\s+most|max(?:imum)?|up\s+to|no\s+more\s+than)\s+" + _NUMBER +
          r"\s+(?:documents|docs|papers|articles|abstracts|pages)"),
    _rule("budget.max_examples", _whole,
          r"(?:(?:at\s+most|max(?:imum)?|up\s+to|no\s+more\s+than)\s+)?" + _NUMBER +
          r"\s+(?:training\s+)?(?:examples|q&a\s+pairs|question[\s-]answer\s+pairs|questions)"),
    _rule("merge", lambda m: True,
          r"(?:then\s+)?merge(?:\s+(?:it|the\s+(?:adapter|lora|weights)))?(?:\s+into\s+the\s+base(?:\s+model)?)?"
          r"(?=\s*(?:$|[,.;!?)]))",
          r"(?:with\s+)?(?:the\s+)?(?:adapter|lora|weights)\s+merged"),
)


def _set_option(options: dict[str, Any], target: str, value: Any) -> None:
    *parents, leaf = target.split(".")
    node = options
    for parent in parents:
        node = node.setdefault(parent, {})
    if isinstance(value, list):
        node[leaf] = list(dict.fromkeys([*node.get(leaf, []), *value]))
    else:
        node[leaf] = value


def take_options(text: str) -> tuple[str, dict[str, Any]]:
    """The options said in words, and the text with each taken out (a CUT marks where)."""
    options: dict[str, Any] = {}
    for rule in OPTION_RULES:
        def take(match: re.Match[str], rule: OptionRule = rule) -> str:
            value = rule.read(match)
            if value in ([], None):
                return match.group(0)
            _set_option(options, rule.target, value)
            return f" {CUT} "
        for pattern in rule.patterns:
            text = pattern.sub(take, text)
    return text, options


# -- step 3: the base model ---------------------------------------------------------------------------

_ALIASES = catalogue_aliases()
# family names that are also ordinary words: a model only next to a model cue ("the phi coefficient")
COMMON_WORD_FAMILIES = frozenset({"phi", "gemma", "mistral", "llama"})
_TOKEN = re.compile(r"[^\s()\[\]{},;:!?\"'`" + CUT + r"]+")
_PATH_TOKEN = re.compile(r"(?<![\w/.~-])(?:~|\.{1,2})?/[^\s,;()\"'" + CUT + r"]+")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z][\w.-]*$")
_CUE_BEFORE = re.compile(
    r"(?:^|[(:—–,;" + CUT + r"]|\s-|" + ACTION_PATTERN + r"|\b(?:using|use|with|from|via|try|need|needs|want|make|get|"
    r"teach|have|let|model|llm|base|turn|prefer|pick|choose|take)\b)\s*$",
    re.IGNORECASE)
_CUE_AFTER = re.compile(r"^\s*(?:$|[):—–,;.!?" + CUT + r"]|-\s|(?:model|llm|base|please|pls|needs?|should|"
                        r"must|has|to|is|would|could|can|will|instruct)\b)", re.IGNORECASE)


@dataclass(frozen=True)
class ModelMention:
    start: int
    end: int
    model: str  # a catalogue key, a folder path or a Hugging Face id
    certain: bool  # a full name (not a bare family name or a guess at a typo)
    by_cue: bool  # next to words that name a model


_PLAIN_WORDS = {w for name in ("filler", "obj", "cue", "goal") for w in getattr(VOCABULARY, name) if " " not in w}


def _lookup(words: list[str], fuzzy: bool) -> tuple[str, bool] | None:
    """(catalogue key, certain) for a run of words: exact after squashing, or (fuzzy) a close match."""
    if any(not re.fullmatch(r"[\w./-]+", w, re.ASCII) for w in words):
        return None  # a word in another script is never part of a model's name
    squashed = squash_name("".join(words))
    if not fuzzy:
        key, _ = _ALIASES.get(squashed, (None, True))
        return (key, squashed not in COMMON_WORD_FAMILIES) if key else None
    if len(squashed) < 5 or not re.search(r"[a-z]", squashed) or any(w.lower() in _PLAIN_WORDS for w in words):
        return None
    close = [c for c in difflib.get_close_matches(squashed, _ALIASES, n=3, cutoff=0.84) if c[:2] == squashed[:2]]
    return (_ALIASES[close[0]][0], False) if close else None


def find_models(text: str) -> list[ModelMention]:
    """Every mention of a catalogue model, left to right: the longest exact run of words at each place,
    else the longest close match (a typo)."""
    tokens = [(m.start(), m.end(), m.group(0).rstrip(".")) for m in _TOKEN.finditer(text)]
    mentions, index = [], 0
    while index < len(tokens):
        runs = [tokens[index:index + n] for n in range(min(4, len(tokens) - index), 0, -1)
                if re.search(r"[A-Za-z0-9]", tokens[index][2]) and re.search(r"[A-Za-z0-9]", tokens[index + n - 1][2])]
        hit = next(((run, found) for fuzzy in (False, True) for run in runs
                    if (found := _lookup([t[2] for t in run], fuzzy))), None)
        if hit is None:
            index += 1
            continue
        run, (key, certain) = hit
        start = run[0][0]
        end = start + len(text[start:run[-1][1]].rstrip("."))
        by_cue = bool(_CUE_BEFORE.search(text[:start]) or _CUE_AFTER.match(text[end:]))
        mentions.append(ModelMention(start, end, key, certain, by_cue))
        index += len(run)
    return mentions


def _model_folders(text: str, have_model: bool, options: dict[str, Any]) -> list[ModelMention]:
    """Folder paths left in the text: the base model, unless a model is named already (then documents)."""
    found = []
    for match in _PATH_TOKEN.finditer(text):
        path = match.group(0).rstrip(".")
        if have_model or "docs_path" in options and not path.endswith(("model", "models")):
            options.setdefault("docs_path", path)
            found.append(ModelMention(match.start(), match.start() + len(path), "", True, True))
        else:
            found.append(ModelMention(match.start(), match.start() + len(path), path, True, True))
            have_model = True
    return found


def take_model(text: str, options: dict[str, Any]) -> tuple[str, str | None]:
    """The base model named in the text (a catalogue key or a folder), and the text without it."""
    mentions = [m for m in find_models(text) if m.certain or m.by_cue]
    best = sorted(mentions, key=lambda m: (not m.by_cue, m.start))[:1]
    for mention in best:
        text = f"{text[:mention.start]} {CUT} {text[mention.end:]}"
    folders = _model_folders(text, bool(best), options)
    for folder in sorted(folders, key=lambda m: -m.start):
        text = f"{text[:folder.start]} {CUT} {text[folder.end:]}"
    model = best[0].model if best else next((f.model for f in folders if f.model), None)
    return text, model


# -- steps 4 and 5: segments, intros, the subject -----------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """A piece of the text between cuts and separators, with what its intro held."""

    rest: str
    phases: frozenset[str]
    raw: str

    @property
    def strength(self) -> int:
        """How surely the rest is the subject: after a preposition or goal 3, after an action 2, else 1."""
        if self.phases & {"cue", "goal"}:
            return 3
        return 2 if "action" in self.phases else 1


def read_intro(segment: str) -> Segment:
    """Take the segment's intro (filler, action, object, goal, preposition, in that order) off its front.
    A preface before the action ("Good morning, please train ...", "I was wondering if you could
    fine-tune ...") is dropped when the front has no action of its own or a comma ends the preface."""
    read = _read_intro_at(segment, 0)
    action = re.search(ACTION_PATTERN, segment, re.IGNORECASE)
    if action and action.start() > 0 and (not read.phases & {"action", "goal", "cue"} or re.search(
            r"[,;]\s*(?:\w+\s+){0,4}$", segment[:action.start()])):
        later = _read_intro_at(segment, action.start())
        return Segment(later.rest, later.phases, segment)
    return read


def _read_intro_at(segment: str, start: int) -> Segment:
    position, phase, seen = start, 0, set()
    while True:
        position += len(segment[position:]) - len(segment[position:].lstrip(" ,.!-—–"))
        best: tuple[int, int, str] | None = None
        for index, name in enumerate((*_PHASES, "weak_action")):
            order = 1 if name == "weak_action" else index
            if order < phase and name != "filler":
                continue
            match = _PHASE_PATTERNS[name].match(segment, position)
            if match and (best is None or match.end() > best[0]):
                best = (match.end(), order, name)
        if best is None:
            break
        position, seen_name = best[0], best[2]
        phase = max(phase, best[1])
        seen.add(seen_name)
        if seen_name == "cue":
            break
    if "weak_action" in seen:
        seen.discard("weak_action")
        if seen & {"obj", "goal"}:
            seen.add("action")
    rest = segment[position:].strip()
    if not (seen - {"filler", "obj"}) and not _fully_filler(segment[start:position]):
        rest = segment[start:].strip(" ,.!-—–")  # no action, goal or preposition: the intro was part of the subject
        seen = set()
    return Segment(rest, frozenset(seen), segment)


def _fully_filler(intro: str) -> bool:
    return bool(intro.strip()) and not re.search(r"[^\W\d_]", _PHASE_PATTERNS["filler"].sub("", intro))


def clean_subject(subject: str) -> str:
    """The subject without trailing filler, questions, model cues and wrapping quotes."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _TRAILING_QUESTION.sub("", subject)
        subject = _TRAILING_PATTERN.sub("", subject).strip()
        subject = subject.strip(" ,.;:!?-—–\"'`").strip()
        subject = re.sub(r"[\s\u200d\ufe0f]*[\U0001F300-\U0001FAFF\u2600-\u27BF]+$", "", subject)
        subject = re.sub(r"^(?:the\s+topic\s+of|topic\s+of|the\s+subject\s+of|everything\s+about|all\s+about|"
                         r"stuff\s+about|things\s+about|questions\s+about|(?:documents|docs|papers|data|articles|texts)\s+(?:about|on)|"
                         r"about|on)\s+", "", subject,
                         flags=re.IGNORECASE)
    if subject.count("(") != subject.count(")"):
        subject = subject.replace("(", " ").replace(")", " ")
    return re.sub(r"\s+", " ", subject).strip(" ,.;:")


_SEPARATORS = re.compile(r"\s*(?:" + CUT + r"|[:;\[\]]|\s[—–]\s?|[—–]|\s--?\s|\s[-=]>\s|"
                         r"(?<=[.!?])(?<!\b[A-Z]\.)\s+(?=[A-Z]))\s*")
_PARENTHESIS = re.compile(r"\(([^()]*)\)")


def segments(text: str) -> list[Segment]:
    """The text cut at removed parts and separators, each piece's intro read."""
    text = _PARENTHESIS.sub(_parenthesis, text)
    return [read_intro(piece) for piece in _SEPARATORS.split(text) if piece and piece.strip(" ,.!?-")]


def _parenthesis(match: re.Match[str]) -> str:
    """A remark in parentheses is a segment of its own when it held a model or only filler
    ("(SmolLM2 please)"); else it stays part of the subject ("Python packaging (pip, wheels)")."""
    inside = match.group(1)
    if CUT in inside or not inside.strip() or _fully_filler(inside) or _TRAILING_PATTERN.fullmatch(inside.strip()):
        return f" {CUT} {inside} {CUT} "
    return match.group(0)


def has_action(text: str) -> bool:
    """Whether the text asks for fine-tuning in words (the one test every door uses): an action word,
    or a goal ("to know", "get good at") said of a model or followed by a subject."""
    if re.search(ACTION_PATTERN, text, re.IGNORECASE):
        return True
    try:
        text, options = take_options(normalise(text))
    except RequestError:
        return False
    text, model = take_model(text, options)
    return any("action" in s.phases or "goal" in s.phases and (model or s.phases & {"obj", "cue"})
               for s in segments(text))


# -- the reader ---------------------------------------------------------------------------------------

def read_request(sentence: str) -> ReadRequest:
    """What the sentence asks for; RequestError (with what was understood) when it cannot be acted on."""
    text = normalise(sentence)
    text, options = take_options(text)
    text, model = take_model(text, options)
    if model is None:
        model = _unknown_model(text)
    parts = [s for s in segments(text) if clean_subject(s.rest)]
    acted = [s for s in segments(text) if s.phases & {"action", "goal"}]
    understood = {"model": model, **({"options": options} if options else {})}
    if not parts:
        raise RequestError(f"no subject: say what the model should learn, e.g. '{EXAMPLE}'", understood)
    best = max(parts, key=lambda s: s.strength)
    subject = clean_subject(best.rest)
    action = _action_words(acted)
    if action is None and not _implied_by_form(text, model, parts):
        _refuse_without_action(" ".join(clean_subject(p.rest) for p in parts), model, understood)
    check_subject(subject, understood)
    return ReadRequest(subject, model, action, options)


def _action_words(acted: list[Segment]) -> str | None:
    for segment in acted:
        match = re.search(ACTION_PATTERN, segment.raw, re.IGNORECASE)
        return match.group(0).lower() if match else "learn"
    return None


def _implied_by_form(text: str, model: str | None, parts: list[Segment]) -> bool:
    """A model and one topic side by side with a separator ("smollm2: chemistry", "chemistry — use qwen",
    "chemistry (qwen)") ask for fine-tuning without a verb."""
    if model is None or len(parts) != 1:
        return False
    return bool(re.search(r"[:;(\[—–,]\s*(?:(?:using|use|with|on|based on)\s+)?" + CUT + "|" + CUT +
                          r"\s*(?:[:;)\]—–,-]|[-=]>)|\b(?:using|use|with|on|based on)\s+" + CUT + "|^\\s*" + CUT +
                          r"\s+(?:on|about)\s", text, re.IGNORECASE))


def _refuse_without_action(words: str, model: str | None, understood: dict[str, Any]) -> None:
    if re.search(r"[^\W\d_]", words) and (len(words.split()) >= 2 or re.search(r"[^\x00-\x7f]", words)):
        raise RequestError(f"I understood the subject {words!r} but not what to do (I read the action in "
                           f"English); say 'fine-tune {model or '<model>'} on {words}'",
                           {**understood, "subject": words})
    raise RequestError("I could not read a fine-tuning request in that; try "
                       "'fine-tune <model> on <subject>'", {**understood, "text": words[:80]})


_UNKNOWN_NAME = re.compile(ACTION_PATTERN + r"\s+(?P<name>[^\s" + CUT + r"]+(?:\s+[^\s" + CUT + r"]+){0,2}?)"
                           r"\s+(?:on|about|for|in|with\s+data)\s", re.IGNORECASE)


def _unknown_model(text: str) -> str | None:
    """A Hugging Face id right after the verb (kept: checked when loaded); RequestError for another name
    there that looks like a model's ("GPT-7") but is none we know."""
    match = _UNKNOWN_NAME.search(text)
    if not match:
        return None
    name = match["name"].strip()
    if _HF_ID.match(name):
        return name
    looks_like_model = re.search(r"\d|[A-Z].*[A-Z]|-", name) and not _PHASE_PATTERNS["obj"].fullmatch(name)
    if looks_like_model and not re.fullmatch(r"(?:the|my|our|a|an)\s.*", name, re.IGNORECASE):
        raise RequestError(f"I don't know the model {name!r}", {"model": name})
    return None


def check_subject(subject: str, understood: dict[str, Any]) -> None:
    """A subject has two letters (any script), is not a placeholder word, and is not a model's name."""
    letters = [c for c in subject if c.isalpha()]
    if len(letters) < 2 or subject.lower() in _VAGUE:
        raise RequestError(f"no subject: say what the model should learn, e.g. '{EXAMPLE}'", understood)
    if find_in_catalogue(subject):
        raise RequestError(f"the subject {subject!r} looks like a model name, not a topic",
                           {**understood, "subject": subject})
