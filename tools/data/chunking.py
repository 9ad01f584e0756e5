"""Structure-aware chunking by tokens: paragraphs and lists kept whole where they fit, headings carried
with their section, a few sentences of overlap between consecutive chunks of one section.

Token counts come from a `TokenCounter`. The curator passes the embedding model's own tokenizer, so a
chunk never exceeds the embedder's window; without one, `approximate_tokens` counts words × 1.3 (the
usual English word-piece ratio), which is what `chunk_document` (the word-sized API) relies on."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tools.sources.documents import Document
from tools.text import normalise_whitespace, split_sentences

TokenCounter = Callable[[str], int]
_HEADING = re.compile(r"^#{1,6}\s")
# a setext heading's underline ("Overview" over "--------" or "======"), or a thematic break when nothing is above it
_UNDERLINE = re.compile(r"^(?:=+|-+)$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?:.*\n)*?---[ \t]*(?:\n|\Z)")
_LIST_ITEM = re.compile(r"^(?:[-*•+]|\d{1,3}[.)])\s+")
_TABLE_LINE = re.compile(r"^\|.*\|$")


@dataclass(frozen=True)
class Chunk:
    """A passage of one document, the unit that is scored, stored and turned into examples."""

    chunk_id: str
    doc_id: str
    text: str
    heading: str
    position: int

    def to_dict(self) -> dict:
        return asdict(self)


def approximate_tokens(text: str) -> int:
    """Word-piece tokens ≈ 1.3 × words (English prose); used when no tokenizer is given."""
    return math.ceil(len(text.split()) * 1.3)


def word_count(text: str) -> int:
    """Whitespace words: the unit of the word-sized API."""
    return len(text.split())


def _join_block(lines: list[str]) -> str:
    """A list or a table keeps one item (row) per line, so it still reads as one; prose is joined into
    one line."""
    structured = sum(bool(_LIST_ITEM.match(line) or _TABLE_LINE.match(line)) for line in lines)
    if len(lines) > 1 and structured >= len(lines) / 2:
        return "\n".join(normalise_whitespace(line) for line in lines)
    return normalise_whitespace(" ".join(lines))


def blocks(text: str) -> list[tuple[str, str]]:
    """(heading, block) pairs: blank-line separated blocks (paragraphs, lists), each tagged with its
    nearest Markdown heading: an ATX one ("## Overview") or a setext one ("Overview" over a line of "-" or
    "="; one line of text, the block's first, over the underline). Another underline (a thematic break) is
    dropped, and so is YAML front matter at the top."""
    heading = ""
    found: list[tuple[str, str]] = []
    for raw_block in re.split(r"\n\s*\n", _FRONT_MATTER.sub("", text, count=1)):
        body: list[str] = []
        for line in (line.strip() for line in raw_block.strip().splitlines() if line.strip()):
            underlined = _UNDERLINE.match(line)
            if underlined and len(body) == 1 and not _is_structured(body[0]):
                title = body.pop()
            elif _HEADING.match(line):
                title = line.lstrip("#").strip()
            elif underlined:  # a thematic break
                continue
            else:
                body.append(line)
                continue
            if body:
                found.append((heading, _join_block(body)))
                body = []
            heading = title
        if body:
            found.append((heading, _join_block(body)))
    return found


def _is_structured(line: str) -> bool:
    """A list item or a table row: a line under it of "-" is no setext underline."""
    return bool(_LIST_ITEM.match(line) or _TABLE_LINE.match(line))


def join_units(units: list[str]) -> str:
    """Prose units join with a space; a list or a table (a unit of several lines) stays on lines of its own."""
    text = units[0] if units else ""
    for previous, unit in itertools.pairwise(units):
        # a list, a table or a line with no sentence end (a title) stays on a line of its own
        ends = (".", "!", "?", ";", ":", ")")
        separate = "\n" in unit or "\n" in previous or not previous.rstrip().endswith(ends) \
            or not unit.rstrip().endswith((*ends, '"', "”"))
        text += ("\n" if separate else " ") + unit
    return text


def _units(block: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """A block that fits stays whole; a longer one is split at list items, then sentences."""
    if count(block) <= max_tokens:
        return [block]
    pieces = block.split("\n") if "\n" in block else split_sentences(block)
    units, current = [], []
    for piece in pieces:
        if current and count(" ".join([*current, piece])) > max_tokens:
            units.append(" ".join(current))
            current = []
        current.append(piece)
    if current:
        units.append(" ".join(current))
    return units


def _overlap_tail(text: str, overlap_tokens: int, count: TokenCounter) -> str:
    """The last whole sentences of a chunk totalling at most `overlap_tokens` (empty when none fit)."""
    if overlap_tokens <= 0:
        return ""
    tail: list[str] = []
    for sentence in reversed(split_sentences(text)):
        if count(" ".join([sentence, *tail])) > overlap_tokens:
            break
        tail.insert(0, sentence)
    return " ".join(tail) if len(tail) < len(split_sentences(text)) else ""


def chunk_by_tokens(document: Document, max_tokens: int = 200, overlap_tokens: int = 32,
                    min_tokens: int = 32, count: TokenCounter = approximate_tokens) -> list[Chunk]:
    """Pack consecutive blocks of one section into chunks of at most `max_tokens` tokens; each chunk
    after the first of a section starts with the last sentences (≤ `overlap_tokens`) of the one before.
    A short tail of a section is joined to the next section rather than left as a fragment."""
    chunks: list[Chunk] = []
    current: list[str] = []
    state = {"heading": "", "fresh": 0}  # fresh: units added since the overlap was carried in

    def flush(carry: bool) -> None:
        if not current or not state["fresh"]:
            current.clear()
            return
        text = join_units(current)
        chunks.append(Chunk(f"{document.doc_id}-{len(chunks):04d}", document.doc_id, text,
                            state["heading"], len(chunks)))
        current.clear()
        state["fresh"] = 0
        if carry and (tail := _overlap_tail(text, overlap_tokens, count)):
            current.append(tail)

    for heading, block in blocks(document.text):
        for unit in _units(block, max_tokens, count):
            new_section = heading != state["heading"]
            if new_section and not state["fresh"]:
                current.clear()  # overlap never crosses a section boundary
            too_big = count(" ".join([*current, unit])) > max_tokens
            # A short tail of a section is joined to the next section rather than left as a fragment.
            fragment = new_section and count(" ".join(current)) < min_tokens
            if current and (new_section or too_big) and not fragment:
                flush(carry=not new_section)
            if not current:
                state["heading"] = heading
            current.append(unit)
            state["fresh"] += 1
    flush(carry=False)
    return chunks


def chunk_document(document: Document, max_words: int = 160, min_words: int = 25) -> list[Chunk]:
    """Word-sized chunks without overlap (chunks of at most `max_words` words)."""
    return chunk_by_tokens(document, max_words, 0, min_words, word_count)


def tokenizer_counter(model_path: str) -> TokenCounter:
    """Counts tokens with the tokenizer in a local model folder (e.g. the embedding model's), so that
    chunks fit the embedder's window exactly."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    return lambda text: len(tokenizer.tokenize(text))
