"""A real OpenAI-compatible /v1/chat/completions on 127.0.0.1 that answers with scripted behaviours.

Each request takes the next behaviour of the script (the `default` one when the script is empty): a dict
is sent as the JSON message content (what `with_structured_output(method="json_schema")` reads), "500"
is an HTTP 500, "slow" answers after 2 s (longer than a 1 s client timeout), anything else is prose.
Subclasses give behaviours of their own by overriding `content`. Every request body is kept."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tools.serving import serve_in_background

PROSE = "Sure! Here is what I think."


class ScriptedChat:
    default: Any = "prose"

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script, self.bodies = list(script or []), []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.complete)

    async def complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.bodies.append(body)
        behaviour = self.script.pop(0) if self.script else self.default
        if behaviour == "500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        if behaviour == "slow":
            await asyncio.sleep(2.0)
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
