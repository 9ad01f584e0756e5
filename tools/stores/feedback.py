"""Feedback on a registered model's answers (in the jobs' and the registry's database: SQLite or PostgreSQL).

A rating says whether an answer was good; a correction says what it should have been. Corrections are
the useful part: `corrections_as_examples` turns them into chat training examples (the same
{"messages": [...]} format the generator writes), so the next version of the model can be trained on them
(pass the exported JSONL as extra training data for the next job on that subject).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.stores.sql_table import SqlTable, now_iso

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, question TEXT NOT NULL,
    answer TEXT NOT NULL, rating INTEGER NOT NULL, correction TEXT, "user" TEXT, created_at TEXT NOT NULL
)"""
# "user" is quoted: a reserved word in PostgreSQL (SQLite accepts the quotes too)
_POSTGRES_SCHEMA = _SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
RATINGS = (-1, 0, 1)  # bad, neutral, good
# a correction becomes a training row of the model's next version: long ones are refused, not truncated
MAX_QUESTION_CHARS, MAX_ANSWER_CHARS, MAX_CORRECTION_CHARS = 2000, 8000, 4000


class FeedbackError(ValueError):
    """Feedback that cannot be stored (an unknown rating, an empty question)."""


@dataclass
class Feedback:
    feedback_id: int
    model: str
    question: str
    answer: str
    rating: int
    correction: str | None
    user: str | None
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FeedbackStore(SqlTable):
    """The feedback table: one row per rated answer."""

    schema = _SCHEMA
    postgres_schema = _POSTGRES_SCHEMA

    def add(self, model: str, question: str, answer: str, rating: int, correction: str | None = None,
            user: str | None = None) -> Feedback:
        """Store one piece of feedback; FeedbackError if the rating is not -1, 0 or 1 or the question is empty."""
        if rating not in RATINGS:
            raise FeedbackError(f"rating must be one of {list(RATINGS)} (bad, neutral, good), not {rating!r}")
        if not question.strip():
            raise FeedbackError("question is empty: say which question the answer was for")
        for name, text, limit in (("question", question, MAX_QUESTION_CHARS), ("answer", answer, MAX_ANSWER_CHARS),
                                  ("correction", correction or "", MAX_CORRECTION_CHARS)):
            if len(text) > limit:
                raise FeedbackError(f"{name} is {len(text):,} characters long; at most {limit:,}")
        created = now_iso()
        with self._connect() as connection:
            row = connection.execute(
                'INSERT INTO feedback (model, question, answer, rating, correction, "user", created_at) '
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING feedback_id",
                (model, question, answer, rating, correction or None, user, created)).fetchone()
        return Feedback(int(row[0]), model, question, answer, rating, correction or None, user, created)

    def list(self, model: str | None = None) -> list[Feedback]:
        """All feedback, oldest first (only one model's when `model` is given)."""
        query, args = "SELECT * FROM feedback", ()
        if model:
            query, args = query + " WHERE model = ?", (model,)
        with self._connect() as connection:
            rows = connection.execute(query + " ORDER BY feedback_id", args).fetchall()
        return [Feedback(**dict(row)) for row in rows]


def corrections_as_examples(feedback: list[Feedback], system_prompt: str) -> list[dict[str, Any]]:
    """Chat training examples from the corrected answers: system, the question, the correction."""
    return [{"messages": [{"role": "system", "content": system_prompt},
                          {"role": "user", "content": item.question},
                          {"role": "assistant", "content": item.correction}],
             "metadata": {"origin": "feedback", "feedback_id": item.feedback_id, "model": item.model}}
            for item in feedback if item.correction]


def write_jsonl(examples: list[dict[str, Any]], path: Path) -> Path:
    """Write examples as JSON lines; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples), encoding="utf-8")
    return path
