"""LLM-as-judge: the configured chat model grades generated answers against the reference answer and, when
the record carries it, the source passage.

Rubric (tools/llm/prompts/judge_answers.txt): correctness 1–5 (agrees with the reference) and grounding 1–5 (every
claim supported by the passage, or by the reference without one); an answer's score is their mean.

Policy:
- Tuned and base answers to one question go to the judge in one request, labelled "Answer 1/2" without
  model names; their order alternates by example (tuned first on even examples) so a judge's position bias
  cannot favour one model. The schema has one field per answer, so the server enforces the count.
- Aggregates: mean correctness, grounding and score per model over the judged examples; pairwise, the
  tuned answer wins when its score is higher, ties when equal; win rate = (wins + ties / 2) / judged pairs.
- Failures never break an evaluation: an example whose request fails after `JUDGE_RETRIES` more attempts
  is unjudged; failed attempts are counted by reason ("timeout", "malformed output", …). After
  `MAX_CONSECUTIVE_FAILURES` examples fail in a row the rest are not asked (a dead endpoint would cost
  every example its full timeout) and count as unjudged too. With no example judged, the summary says why.
- Only the question, reference, passage and the answers reach the prompt, each between <<< and >>>
  (delimiters inside the text are neutralised), cut to a bounded length."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from tools.evaluation.metrics import strip_template_tokens
from tools.llm.chat_model import NO_MODEL, structured_decision

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

JUDGE_RETRIES = 1  # extra attempts per example
MAX_CONSECUTIVE_FAILURES = 3
MAX_PASSAGE_CHARS = 4000
MAX_TEXT_CHARS = 2000
MODELS = ("tuned", "base")  # the order on even examples; reversed on odd ones
RUBRIC = "correctness and grounding, each 1-5; score = their mean; win rate = (wins + ties/2) / pairs"


class AnswerGrade(BaseModel):
    """The judge's grade of one answer."""

    correctness: int = Field(ge=1, le=5, description="1-5: agreement with the reference answer")
    grounding: int = Field(ge=1, le=5, description="1-5: claims supported by the source passage")
    reason: str = Field("", max_length=500, description="one short sentence")

    @property
    def score(self) -> float:
        return (self.correctness + self.grounding) / 2


def grades_schema(count: int) -> type[BaseModel]:
    """A schema with one AnswerGrade field per answer (answer_1 … answer_<count>), all required."""
    fields: dict[str, Any] = {f"answer_{i}": (AnswerGrade, Field(description=f"the grade of Answer {i}"))
                              for i in range(1, count + 1)}
    return create_model("AnswerGrades", **fields)


@dataclass(frozen=True)
class ExampleVerdict:
    """The grades of one example's answers by model ("tuned", "base"), or why there are none."""

    grades: dict[str, AnswerGrade] = field(default_factory=dict)
    failures: tuple[str, ...] = ()
    error: str | None = None
    asked: bool = True  # False: skipped after repeated failures


def delimit(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Text safe to put between <<< and >>>: delimiters inside it neutralised, at most `limit` characters."""
    text = text.replace("<<<", "‹‹‹").replace(">>>", "›››").strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def answer_order(index: int, models: Sequence[str]) -> list[str]:
    """The models in prompt order for example `index`: as given on even examples, reversed on odd ones."""
    return list(models) if index % 2 == 0 else list(reversed(models))


def judge_example(model: ChatOpenAI, index: int, question: str, reference: str, passage: str | None,
                  answers: dict[str, str]) -> ExampleVerdict:
    """Grade one example's answers (by model name) in one request; never raises for model trouble."""
    order = answer_order(index, list(answers))
    block = "\n\n".join(f"Answer {i}:\n<<<{delimit(strip_template_tokens(answers[who])) or '(empty)'}>>>"
                        for i, who in enumerate(order, start=1))
    decision = structured_decision(model, grades_schema(len(order)), "judge_answers", JUDGE_RETRIES,
                                   question=delimit(question), reference=delimit(reference),
                                   passage=delimit(passage or "none", MAX_PASSAGE_CHARS), answers=block)
    if not decision.ok:
        return ExampleVerdict(failures=decision.failures, error=decision.reason)
    return ExampleVerdict({who: getattr(decision.value, f"answer_{i}") for i, who in enumerate(order, start=1)},
                          decision.failures)


def example_answers(row: dict[str, Any]) -> dict[str, str]:
    """The answers of one per-example row by model, in MODELS order (base only when nothing was tuned)."""
    return {who: row[f"{who}_answer"] for who in MODELS if f"{who}_answer" in row}


def judge_rows(model: ChatOpenAI, rows: Sequence[dict[str, Any]],
               passages: Sequence[str | None]) -> list[ExampleVerdict]:
    """A verdict per row; after MAX_CONSECUTIVE_FAILURES failed examples in a row the rest are not asked."""
    verdicts: list[ExampleVerdict] = []
    failed_in_a_row = 0
    for index, row in enumerate(rows):
        if failed_in_a_row >= MAX_CONSECUTIVE_FAILURES:
            verdicts.append(ExampleVerdict(error=f"not asked: the judge failed {failed_in_a_row} examples in a row",
                                           asked=False))
            continue
        passage = passages[index] if index < len(passages) else None
        verdict = judge_example(model, index, row["question"], row["reference"], passage, example_answers(row))
        failed_in_a_row = 0 if verdict.grades else failed_in_a_row + 1
        verdicts.append(verdict)
    return verdicts


@dataclass
class Judgement:
    """The judge's summary (report JSON `judge`) and one verdict per per-example row (empty when absent)."""

    summary: dict[str, Any]
    verdicts: list[ExampleVerdict] = field(default_factory=list)

    def annotate(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The per-example rows with judge columns: judge_<model>_correctness/_grounding, judge_reason, or
        judge_error for an unjudged example. Rows are returned unchanged when there is no judge."""
        if not self.verdicts:
            return list(rows)
        return [row | verdict_columns(verdict) for row, verdict in zip(rows, self.verdicts, strict=True)]


def verdict_columns(verdict: ExampleVerdict) -> dict[str, Any]:
    if not verdict.grades:
        return {"judge_error": verdict.error}
    columns: dict[str, Any] = {}
    for who, grade in verdict.grades.items():
        columns |= {f"judge_{who}_correctness": grade.correctness, f"judge_{who}_grounding": grade.grounding}
    columns["judge_reason"] = "; ".join(f"{who}: {grade.reason}" for who, grade in verdict.grades.items()
                                        if grade.reason)
    return columns


def absent_judgement(reason: str = NO_MODEL) -> Judgement:
    """No judge ran (no chat model configured, or the judge turned off), and why."""
    return Judgement({"status": "absent", "reason": reason, "judged": 0})


def judge_answers(model: ChatOpenAI | None, rows: Sequence[dict[str, Any]],
                  passages: Sequence[str | None] = ()) -> Judgement:
    """Grade every per-example row (question, reference, base_answer and, after tuning, tuned_answer) with
    `model`; `passages[i]` is row i's source passage or None. No model: an absent judgement."""
    if model is None:
        return absent_judgement()
    if not rows:
        return absent_judgement("no generated answers to judge (evaluation.generate_limit is 0)")
    verdicts = judge_rows(model, rows, passages)
    return Judgement(summarise(verdicts, getattr(model, "model_name", None)), verdicts)


def summarise(verdicts: Sequence[ExampleVerdict], model_name: str | None = None) -> dict[str, Any]:
    """Mean grades per model, tuned-vs-base pairwise rates, unjudged examples and failures by reason."""
    judged = [v for v in verdicts if v.grades]
    failures = Counter(reason for v in verdicts for reason in v.failures)
    unjudged = len(verdicts) - len(judged)
    summary: dict[str, Any] = {
        "status": "judged" if judged else "failed", "model": model_name, "rubric": RUBRIC,
        "examples": len(verdicts), "judged": len(judged), "unjudged": unjudged, "failures": dict(failures),
        "not_asked": sum(1 for v in verdicts if not v.asked),
        "scores": {who: mean_grades([v.grades[who] for v in judged if who in v.grades]) for who in MODELS
                   if any(who in v.grades for v in judged)},
        "pairwise": pairwise([v.grades for v in judged if set(MODELS) <= v.grades.keys()]),
    }
    summary["reason"] = judgement_reason(summary)
    return summary


def mean_grades(grades: Sequence[AnswerGrade]) -> dict[str, float]:
    count = len(grades)
    return {"correctness": round(sum(g.correctness for g in grades) / count, 4),
            "grounding": round(sum(g.grounding for g in grades) / count, 4),
            "score": round(sum(g.score for g in grades) / count, 4), "judged": count}


def pairwise(pairs: Sequence[dict[str, AnswerGrade]]) -> dict[str, Any] | None:
    """Tuned vs base per example by score: counts, rates and the win rate (ties count half)."""
    if not pairs:
        return None
    wins = sum(1 for p in pairs if p["tuned"].score > p["base"].score)
    ties = sum(1 for p in pairs if p["tuned"].score == p["base"].score)
    losses = len(pairs) - wins - ties
    n = len(pairs)
    return {"pairs": n, "wins": wins, "ties": ties, "losses": losses,
            "rates": {"win": round(wins / n, 4), "tie": round(ties / n, 4), "loss": round(losses / n, 4)},
            "win_rate": round((wins + ties / 2) / n, 4)}


def judgement_reason(summary: dict[str, Any]) -> str:
    """One sentence for the report: how many examples were graded and why the others were not."""
    failures = ", ".join(f"{reason} ×{n}" for reason, n in Counter(summary["failures"]).most_common())
    skipped = f"; {summary['not_asked']} not asked after repeated failures" if summary["not_asked"] else ""
    if not summary["judged"]:
        return f"the judge graded none of {summary['examples']} examples (failed requests: {failures}{skipped})"
    unjudged = f"; {summary['unjudged']} unjudged" if summary["unjudged"] else ""
    retried = f" (failed requests: {failures}{skipped})" if failures else ""
    return f"graded {summary['judged']} of {summary['examples']} examples{unjudged}{retried}"
