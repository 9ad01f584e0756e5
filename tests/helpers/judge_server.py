"""A real OpenAI-compatible judge on 127.0.0.1 for the LLM-judge tests.

It reads the judge prompt it is sent like a (very literal) grader: an answer that contains the reference
gets correctness 5, else 1; an answer whose words all occur in the source passage gets grounding 5, else 2.
Scripted behaviours replace a grade for one request, as tests/helpers/scripted_chat.py describes: "prose", "500",
"slow" (longer than a 1 s client timeout) or a dict sent as the JSON content verbatim (e.g. out-of-range
grades)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from scripted_chat import ScriptedChat, serve

ANSWER = re.compile(r"Answer (\d+):\n<<<(.*?)>>>", re.DOTALL)
REFERENCE = re.compile(r"Reference answer[^\n]*\n<<<(.*?)>>>", re.DOTALL)
PASSAGE = re.compile(r"Source passage[^\n]*\n<<<(.*?)>>>", re.DOTALL)


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def literal_grades(prompt: str) -> dict[str, Any]:
    """{"answer_<n>": {correctness, grounding, reason}} for every answer in the prompt."""
    reference = REFERENCE.search(prompt).group(1).strip()
    passage = PASSAGE.search(prompt).group(1)
    source = words(reference if passage.strip() == "none" else passage)
    grades = {}
    for number, answer in ANSWER.findall(prompt):
        correct = reference.lower() in answer.lower()
        grounded = bool(words(answer)) and words(answer) <= source
        grades[f"answer_{number}"] = {"correctness": 5 if correct else 1, "grounding": 5 if grounded else 2,
                                      "reason": "matches the reference" if correct else "misses the reference"}
    return grades


class JudgeServer(ScriptedChat):
    """/v1/chat/completions that grades literally ("grade", the default), or follows the next scripted
    behaviour of ScriptedChat; keeps every body."""

    default = "grade"

    def content(self, behaviour: Any) -> str:
        """The reply's message content: literal grades, or what ScriptedChat sends (JSON object, prose)."""
        return json.dumps(literal_grades(self.prompt(-1))) if behaviour == "grade" else super().content(behaviour)

    def prompt(self, index: int) -> str:
        """The user message of one request (the rendered judge prompt)."""
        return self.bodies[index]["messages"][-1]["content"]


def running_judge(script: list[Any] | None = None) -> Iterator[tuple[JudgeServer, str]]:
    """(server, base URL ending in /v1) while the server runs."""
    yield from serve(JudgeServer(script))
