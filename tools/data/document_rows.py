"""Document rows: the curated passages themselves, trained as plain text with loss on every token
(continued pretraining), mixed with the QA rows.

Knowledge-injection work finds that QA rows teach more when the model also reads the documents they come
from (Jiang et al. 2024, "instruction-tuned LMs are better knowledge learners"; "Synthetic Mixed
Training" and SPA, 2026: several views per fact, QA mixed with document text). A document row is a
passage with its title (when the title names the document) and its section heading, so a fact is read
next to the name a question would use. On disk they are `{"text": ..., "metadata": ...}` rows beside the
chat-format QA rows.

By default the rows cover every kept document, the held-out ones too: the model is meant to know all the
documents, and the validation and test questions then measure what it learned from text it read but
was never asked about (the evaluation of Jiang et al.). `documents_from="train"` keeps held-out documents
out of training altogether."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from tools.data.chunking import Chunk
from tools.data.study import names_a_study


@dataclass(frozen=True)
class DocumentRow:
    """One passage as training text, with where it came from."""

    text: str
    chunk_id: str
    doc_id: str
    kind: str = "document"  # "document" (the passage) or "rewrite" (a chat model's grounded rewrite)
    source: str = ""
    metadata: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        return {"text": self.text, "metadata": {"kind": self.kind, "chunk_id": self.chunk_id, "doc_id": self.doc_id,
                                                "source": self.source, **self.metadata}}

    def to_dict(self) -> dict:
        return asdict(self)


def passage_text(chunk: Chunk, title: str) -> str:
    """The passage as it is trained: title and heading first when they name something."""
    header = [line for line in (title.strip() if names_a_study(title) else "", chunk.heading.strip()) if line]
    return "\n".join([*header, chunk.text]) if header else chunk.text


def document_rows(chunks: Sequence[tuple[Chunk, str]]) -> list[DocumentRow]:
    """One row per (chunk, source title)."""
    return [DocumentRow(passage_text(chunk, title), chunk.chunk_id, chunk.doc_id, "document", title)
            for chunk, title in chunks]


def repeats_for_share(document_count: int, qa_count: int, share: float, max_repeats: int) -> int:
    """How many times each document row goes into the training set so that document rows make up about
    `share` of the rows (at least once, at most `max_repeats`)."""
    if document_count == 0 or share <= 0:
        return 0
    if share >= 1 or qa_count == 0:
        return 1
    wanted = share * qa_count / (1 - share)  # d / (d + q) = share
    return max(1, min(max_repeats, math.ceil(wanted / document_count - 1e-9)))


def mix(rows: Sequence[DocumentRow], qa_count: int, share: float, max_repeats: int) -> list[DocumentRow]:
    """The document rows of the training set: every row, repeated to approach the share; when one copy
    is already more than the share, every row still goes in once (the text is what is to be learned)."""
    return list(rows) * repeats_for_share(len(rows), qa_count, share, max_repeats)
