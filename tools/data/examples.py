"""One question/answer example with where it came from: what every generator makes and every
dataset writer, gate and card reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
