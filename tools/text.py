"""Plain-text helpers: whitespace, sentences, words, slugs."""

from __future__ import annotations

import re
import unicodedata

_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "etc.", "vs.", "Fig.", "Eq.", "approx.", "Dr.", "Prof.", "cf.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[])")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")


def normalise_whitespace(text: str) -> str:
    """Collapse runs of whitespace to single spaces."""
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences without breaking on common abbreviations."""
    protected = normalise_whitespace(text)
    for index, abbreviation in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbreviation, f"\x00{index}\x00")
    sentences = []
    for piece in _SENTENCE_END.split(protected):
        for index, abbreviation in enumerate(_ABBREVIATIONS):
            piece = piece.replace(f"\x00{index}\x00", abbreviation)
        if piece.strip():
            sentences.append(piece.strip())
    return sentences


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [match.group(0).lower() for match in _WORD.finditer(text)]


def slugify(text: str, max_length: int = 40) -> str:
    """A lowercase ASCII slug: 'Quantum error correction' -> 'quantum-error-correction'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "subject"
