"""A real OpenAI-compatible judge on 127.0.0.1 for the LLM-judge tests.

It reads the judge prompt it is sent like a (very literal) grader: an answer that contains the reference
gets correctness 5, else 1; an answer whose words all occur in the source passage gets grounding 5, else 2.
Scripted behaviours replace a grade for one request: "prose", "500", "slow" (longer than a 1 s client
timeout) or a dict sent as the JSON content verbatim (e.g. out-of-range grades)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tools.serving import serve_in_background

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


class JudgeServer:
    """/v1/chat/completions that grades literally, or follows the next scripted behaviour; keeps every body."""

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script, self.bodies = list(script or []), []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.complete)

    async def complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.bodies.append(body)
        behaviour = self.script.pop(0) if self.script else "grade"
        if behaviour == "500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        if behaviour == "slow":
            await asyncio.sleep(2.0)
        content = self.content(behaviour)
        return JSONResponse({"id": "j", "object": "chat.completion", "created": int(time.time()),
                             "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def content(self, behaviour: Any) -> str:
        """The reply's message content: literal grades, prose, or a scripted JSON object."""
        if behaviour == "grade":
            return json.dumps(literal_grades(self.prompt(-1)))
        return json.dumps(behaviour) if isinstance(behaviour, dict) else "Both answers look fine to me!"

    def prompt(self, index: int) -> str:
        """The user message of one request (the rendered judge prompt)."""
        return self.bodies[index]["messages"][-1]["content"]


def running_judge(script: list[Any] | None = None) -> Iterator[tuple[JudgeServer, str]]:
    """(server, base URL ending in /v1) while the server runs."""
    judge = JudgeServer(script)
    with serve_in_background(judge.app) as base_url:
        yield judge, base_url
