"""The job's events.jsonl: every decision and phase change, the source of progress for every front door."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EventListener = Callable[[dict[str, Any]], None]


class EventLog:
    """Append-only JSON lines; listeners (a CLI progress bar, a Slack updater) see each event as it is written."""

    def __init__(self, path: Path, listeners: tuple[EventListener, ...] = ()) -> None:
        self.path = Path(path)
        self.listeners = listeners

    def emit(self, phase: str, kind: str, message: str, **data: Any) -> dict[str, Any]:
        event = {"ts": round(time.time(), 3), "phase": phase, "kind": kind, "message": message, "data": data}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, default=str) + "\n")
        for listener in self.listeners:
            listener(event)
        return event

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_from(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The events in the complete lines of `path` from byte `offset` on, and the offset after the last
    complete line, so a follower (the API's event stream) reads each byte once instead of the whole file
    at every poll. A line still being written (no newline yet) waits for the next call; a line that is
    not a JSON object (a torn write) is skipped, as `EventLog.read` skips it."""
    path = Path(path)
    if not path.exists():
        return [], offset
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    events = []
    for line in complete.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events, offset + len(complete)
