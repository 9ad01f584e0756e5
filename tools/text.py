"""Plain-text helpers: whitespace, sentences, words, slugs."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")


def normalise_whitespace(text: str) -> str:
    """Collapse runs of whitespace to single spaces."""
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Sentences of prose, by sentencex (Wikimedia's rule-based segmenter, ~300 languages, no model to
    download): it knows abbreviations ("e.g.", "vs.", "et al."), decimals and initials, which a regex
    split got wrong on real papers and abstracts."""
    from sentencex import segment

    flat = normalise_whitespace(text)
    return [piece.strip() for piece in segment(language or "en", flat) if piece.strip()] if flat else []


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [match.group(0).lower() for match in _WORD.finditer(text)]


def slugify(text: str, max_length: int = 40) -> str:
    """A lowercase ASCII slug: 'Quantum error correction' -> 'quantum-error-correction'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "subject"


_STATISTIC = re.compile(r"%|\b[pP]\s*[<=>≤≥]|\b(?:CI|OR|HR|RR|SD|SE|IQR|AUC|n|N|range|vs?|mean|median)\b|±"
                        r"|\d\s*[-–]\s*\d|^\s*[\d.,;:\s/x×-]+\s*(?:[a-zA-Zµ%/]+\s*)?$")
_PARENTHETICAL = re.compile(r"\s*\(([^()]*)\)")
_BARE_P_VALUE = re.compile(r",?\s*[pP]\s*[<=>≤≥]\s*0?\.\d+")


def without_statistics(text: str) -> str:
    """The text with its statistical asides removed, as a conclusion words a result: "Median survival was
    21 weeks (range 6-26 weeks) in group A (p = 0.334)." -> "Median survival was 21 weeks in group A."
    Parentheses that hold a figure with a statistic (a p-value, a confidence interval, a range, a share,
    a count) go; parentheses that name something ("(IMRT)", "(MSH2, MSH6)") stay."""
    def aside(match: re.Match[str]) -> str:
        inside = match.group(1)
        return "" if re.search(r"\d", inside) and _STATISTIC.search(inside) else match.group(0)

    plain = _BARE_P_VALUE.sub("", _PARENTHETICAL.sub(aside, text))
    return re.sub(r"\s+([,.;:])", r"\1", normalise_whitespace(plain))
