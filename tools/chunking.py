"""Structure-aware chunking: paragraphs and lists kept whole, headings carried with their section."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from tools.documents import Document
from tools.text import normalise_whitespace, split_sentences


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


def _blocks(text: str) -> list[tuple[str, str]]:
    """(heading, block) pairs: blank-line separated blocks, each tagged with its nearest heading."""
    heading = ""
    blocks: list[tuple[str, str]] = []
    for raw_block in re.split(r"\n\s*\n", text):
        lines = [line for line in raw_block.strip().splitlines() if line.strip()]
        body: list[str] = []
        for line in lines:
            if re.match(r"^#{1,6}\s", line.strip()):
                if body:
                    blocks.append((heading, normalise_whitespace(" ".join(body))))
                    body = []
                heading = line.strip().lstrip("#").strip()
            else:
                body.append(line.strip())
        if body:
            blocks.append((heading, normalise_whitespace(" ".join(body))))
    return blocks


def _split_long_block(block: str, max_words: int) -> list[str]:
    pieces, current = [], []
    for sentence in split_sentences(block):
        if current and len(" ".join(current + [sentence]).split()) > max_words:
            pieces.append(" ".join(current))
            current = []
        current.append(sentence)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_document(document: Document, max_words: int = 160, min_words: int = 25) -> list[Chunk]:
    """Pack consecutive blocks of one section into chunks of at most `max_words` words."""
    chunks: list[Chunk] = []
    current: list[str] = []
    current_heading = ""

    def flush() -> None:
        if current:
            text = " ".join(current)
            chunk_id = f"{document.doc_id}-{len(chunks):04d}"
            chunks.append(Chunk(chunk_id, document.doc_id, text, current_heading, len(chunks)))
            current.clear()

    for heading, block in _blocks(document.text):
        for piece in _split_long_block(block, max_words) if len(block.split()) > max_words else [block]:
            size = len(" ".join(current + [piece]).split())
            if current and (heading != current_heading or size > max_words):
                # A short tail of the same section is joined rather than left as a fragment.
                if heading == current_heading or len(" ".join(current).split()) >= min_words:
                    flush()
            if not current:
                current_heading = heading
            current.append(piece)
    flush()
    return chunks
