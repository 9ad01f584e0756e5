"""Deterministic query expansion and source choice for a subject, without any model.

`expand_queries` turns a subject ("fine-tune SmolLM2 on quantum error correction") into a
short, ordered, de-duplicated list of search queries: the cleaned subject, its key phrases,
simple variants (hyphenation, plural/singular, a small table of synonyms and acronyms), and,
when the caller passes them in, related Wikipedia titles and the MeSH terms PubMed mapped
the subject onto (`PubMedSource.translate(...).mesh_terms()`).

`choose_sources` picks sources by keyword: biomedical words put PubMed first, physics /
computer-science / maths words put arXiv first, anything else goes to Wikipedia. Both
functions are pure: the same subject always gives the same answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tools.intake.request_reader import ACTION_PATTERN

REQUEST_PREFIX = re.compile(r"^\s*(please\s+)?" + ACTION_PATTERN + r".*?\b(on|about|for|in)\s+", re.IGNORECASE)
STOPWORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "of", "on", "in", "for", "to", "with", "about", "from",
        "by", "at", "as", "into", "over", "under", "between", "its", "their", "this", "that",
        "these", "those", "is", "are", "be", "what", "how", "why", "which", "using", "use",
        "based", "via", "vs", "model", "models", "data", "dataset", "corpus", "documents",
        "papers", "history", "introduction", "overview", "basics", "fundamentals", "topics",
    }
)  # fmt: skip
# Both directions are used; keep entries lower case.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "cancer": ("neoplasms", "tumour"),
    "tumor": ("neoplasm", "tumour"),
    "heart attack": ("myocardial infarction",),
    "high blood pressure": ("hypertension",),
    "machine learning": ("statistical learning",),
    "deep learning": ("neural networks",),
    "quantum error correction": (
        "quantum error-correcting codes",
        "fault-tolerant quantum computing",
    ),
    "large language model": ("llm", "language model"),
    "covid-19": ("sars-cov-2",),
}
ACRONYMS: dict[str, str] = {
    "quantum error correction": "QEC",
    "large language model": "LLM",
    "natural language processing": "NLP",
    "machine learning": "ML",
    "reinforcement learning": "RL",
    "magnetic resonance imaging": "MRI",
    "chronic obstructive pulmonary disease": "COPD",
}
# Word prefixes, matched against the start of each subject word.
BIOMEDICAL = (
    "cancer",
    "tumo",
    "oncolog",
    "disease",
    "clinic",
    "patient",
    "drug",
    "pharma",
    "gene",
    "genom",
    "protein",
    "cell",
    "medic",
    "therap",
    "diabet",
    "covid",
    "sars",
    "virus",
    "viral",
    "vaccin",
    "neuro",
    "cardi",
    "heart",
    "biomed",
    "health",
    "infect",
    "immun",
    "antibod",
    "epidemi",
    "surg",
    "diagnos",
    "symptom",
    "psychiatr",
    "nutrition",
    "enzym",
    "bacteri",
    "hospital",
    "pathogen",
    "alzheimer",
    "obesity",
    "hypertens",
    "blood",
    "mesh",
    "pubmed",
)
PHYSICAL_CS_MATH = (
    "quantum",
    "physic",
    "particle",
    "cosmolog",
    "astro",
    "galax",
    "relativ",
    "gravit",
    "qubit",
    "algorithm",
    "neural",
    "learning",
    "machine",
    "comput",
    "software",
    "program",
    "language",
    "transformer",
    "graph",
    "theorem",
    "algebra",
    "topolog",
    "geometr",
    "calculus",
    "probabil",
    "statistic",
    "optimi",
    "cryptograph",
    "robot",
    "semiconductor",
    "superconduct",
    "laser",
    "optic",
    "mathemat",
    "equation",
    "combinator",
    "compiler",
    "database",
    "distributed",
    "llm",
    "nlp",
    "arxiv",
    "fermion",
    "boson",
    "plasma",
    "thermodynam",
)


def clean_subject(subject: str) -> str:
    """The subject without the request around it ("fine-tune X on …"), trimmed."""
    return REQUEST_PREFIX.sub("", subject).strip().strip(".?!").strip()


def content_words(text: str) -> list[str]:
    """Lower-case words of a text (letters, digits, inner hyphens)."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def key_phrases(subject: str, max_phrases: int = 5) -> list[str]:
    """Runs of content words between stopwords, the whole cleaned subject first."""
    cleaned = clean_subject(subject)
    phrases: list[str] = [cleaned.lower()] if cleaned else []
    run: list[str] = []
    for word in [*content_words(cleaned), ""]:
        if word and word not in STOPWORDS:
            run.append(word)
            continue
        if run:
            phrases.append(" ".join(run))
        run = []
    return _dedupe(phrases)[:max_phrases]


def variants(phrase: str) -> list[str]:
    """Spelling variants and synonyms of a phrase (hyphenation, number, table entries)."""
    lower = phrase.lower()
    found = [lower.replace("-", " ") if "-" in lower else lower]
    if not STOPWORDS.intersection(lower.split()):
        found.append(_toggle_plural(lower))
    found.extend(SYNONYMS.get(lower, ()))
    found.extend(k for k, values in SYNONYMS.items() if lower in values)
    if lower in ACRONYMS:
        found.append(ACRONYMS[lower])
    found.extend(k for k, v in ACRONYMS.items() if v.lower() == lower)
    return [v for v in _dedupe(found) if v.lower() != lower]


def expand_queries(
    subject: str,
    *,
    related_titles: Sequence[str] = (),
    mesh_terms: Sequence[str] = (),
    max_queries: int = 8,
) -> list[str]:
    """Ordered, de-duplicated queries: subject, key phrases, variants, MeSH terms, related titles."""
    phrases = key_phrases(subject)
    queries = list(phrases[:1])
    queries += [v for v in variants(phrases[0])] if phrases else []
    queries += list(mesh_terms)
    queries += phrases[1:]
    queries += [v for phrase in phrases[1:] for v in variants(phrase)]
    queries += list(related_titles)
    return _dedupe(q for q in queries if q.strip())[:max_queries]


def domain_hits(subject: str, prefixes: Sequence[str]) -> list[str]:
    """Words of the subject that start with one of the prefixes."""
    return [w for w in content_words(clean_subject(subject)) if w.startswith(tuple(prefixes))]


def choose_sources(subject: str) -> list[tuple[str, float, str]]:
    """(source name, share of the document budget, reason), best source first; shares sum to 1.

    - only biomedical words: PubMed 0.6, Wikipedia 0.25, arXiv 0.15;
    - only physics/CS/maths words: arXiv 0.6, Wikipedia 0.4;
    - both: PubMed and arXiv split 0.75 by their keyword counts, Wikipedia 0.25;
    - neither: Wikipedia 1.0.
    """
    bio = domain_hits(subject, BIOMEDICAL)
    tech = domain_hits(subject, PHYSICAL_CS_MATH)
    bio_why = f"biomedical terms: {', '.join(dict.fromkeys(bio))}"
    tech_why = f"physics/CS/maths terms: {', '.join(dict.fromkeys(tech))}"
    if bio and not tech:
        plan = [
            ("pubmed", 0.6, bio_why),
            ("wikipedia", 0.25, "background and definitions"),
            ("arxiv", 0.15, "quantitative/computational papers on the topic"),
        ]
    elif tech and not bio:
        plan = [("arxiv", 0.6, tech_why), ("wikipedia", 0.4, "background and definitions")]
    elif bio and tech:
        bio_share = round(0.75 * len(bio) / (len(bio) + len(tech)), 4)
        plan = [
            ("pubmed", bio_share, bio_why),
            ("arxiv", round(0.75 - bio_share, 4), tech_why),
            ("wikipedia", 0.25, "background and definitions"),
        ]
    else:
        plan = [("wikipedia", 1.0, "no biomedical or physics/CS/maths terms: general subject")]
    return sorted(plan, key=lambda item: -item[1])


def _toggle_plural(phrase: str) -> str:
    """The phrase with its last word made plural (or singular when it already is)."""
    head, _, last = phrase.rpartition(" ")
    if last.endswith(("ing", "is", "us", "ss", "ics")) or not last.isalpha():
        return phrase  # gerunds, -sis/-us nouns and -ics fields have no simple plural
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        last = last[:-1]
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}".strip()


def _dedupe(items: Iterable[str]) -> list[str]:
    """Keep the first of each case-insensitive duplicate, in order."""
    seen: set[str] = set()
    kept = []
    for item in items:
        key = item.lower().strip()
        if key and key not in seen:
            seen.add(key)
            kept.append(item.strip())
    return kept


def arrange_queries(subject: str, proposed: Sequence[str], *, mesh_terms: Sequence[str] = (),
                    max_queries: int = 8) -> list[str]:
    """Queries proposed elsewhere (the chat model's) in a fixed order: the cleaned subject, the first
    proposal, the MeSH terms, the other proposals; de-duplicated and capped like `expand_queries`."""
    head = [clean_subject(subject), *proposed[:1]]
    return _dedupe(q for q in [*head, *mesh_terms, *proposed[1:]] if q.strip())[:max_queries]
