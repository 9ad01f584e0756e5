"""A real OpenAI-compatible /v1/chat/completions on 127.0.0.1 that answers with scripted behaviours.

Each request takes the next behaviour of the script (the `default` one when the script is empty): a dict
is sent as the JSON message content (what `with_structured_output(method="json_schema")` reads), "500"
is an HTTP 500, "slow" answers after 2 s (longer than a 1 s client timeout), anything else is prose.
Subclasses give behaviours of their own by overriding `content`, or choose one per request by overriding
`behaviour` (e.g. from the prompt, when concurrent requests arrive in any order). Every request body is
kept; `delay_s` holds every reply that long, and `max_in_flight` records how many requests were open at
once (the server runs on one event loop, so the counters need no lock)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tools.serving.server import serve_in_background

PROSE = "Sure! Here is what I think."


class ScriptedChat:
    default: Any = "prose"
    delay_s: float = 0.0

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script, self.bodies = list(script or []), []
        self.in_flight = self.max_in_flight = 0
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.complete)

    async def complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.reply(body, self.behaviour(body))
        finally:
            self.in_flight -= 1

    def behaviour(self, body: dict[str, Any]) -> Any:
        """The next scripted behaviour, or the default when the script is empty."""
        return self.script.pop(0) if self.script else self.default

    async def reply(self, body: dict[str, Any], behaviour: Any) -> JSONResponse:
        if behaviour == "500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        await asyncio.sleep(2.0 if behaviour == "slow" else self.delay_s)
        return JSONResponse({"id": "x", "object": "chat.completion", "created": int(time.time()),
                             "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": self.content(behaviour)}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def content(self, behaviour: Any) -> str:
        """The reply's message content: a scripted JSON object, else prose."""
        return json.dumps(behaviour) if isinstance(behaviour, dict) else PROSE

    def prompts(self, index: int = -1) -> str:
        """The text of every message of one request."""
        return "\n".join(m["content"] for m in self.bodies[index]["messages"])


def serve(chat: ScriptedChat) -> Iterator[tuple[Any, str]]:
    """(server, base URL ending in /v1) while the server runs."""
    with serve_in_background(chat.app) as base_url:
        yield chat, base_url
