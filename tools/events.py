"""The job's events.jsonl: every decision and phase change, the source of progress for every front door.

The log survives torn writes (a kill -9 or a full disk in the middle of a line): readers skip a line that
is not a whole JSON object, and a writer that finds the file not ending in a newline starts its event on
a new line, so the next event is never glued onto the torn one. `read_events` reads from a byte offset, so
a follower (SSE, a progress bar) reads each byte once instead of the whole file per poll."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.stores.disk_space import disk_full_error

EventListener = Callable[[dict[str, Any]], None]


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, default=str) + "\n").encode("utf-8")


def append_event(path: Path, event: dict[str, Any]) -> None:
    """Append one event as one write, on a new line even when the last one was torn. A full disk is
    DiskFull naming the log (a part of the line that reached the disk is skipped by readers)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as handle:
            torn = handle.seek(0, os.SEEK_END) > 0 and _last_byte(handle) != b"\n"
            handle.write((b"\n" if torn else b"") + _line(event))
    except OSError as error:
        raise disk_full_error(error, path) or error from error


def _last_byte(handle) -> bytes:
    handle.seek(-1, os.SEEK_END)
    return handle.read(1)


def parse_event(line: bytes) -> dict[str, Any] | None:
    """One line's event, or None for a line that is not a whole event (torn, garbled, blank)."""
    try:
        event = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return event if isinstance(event, dict) else None


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """(the events in whole lines from byte `offset` on, the offset after the last whole line).

    A final line without its newline is not consumed (it may still be being written); lines that are not
    whole events are skipped. Pass the returned offset back to read only what was appended since."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = [event for line in data[:end].split(b"\n") if (event := parse_event(line)) is not None]
    return events, offset + end


PROGRESS_INTERVAL_S = 0.1  # the most often one task's progress reaches the listeners (its end always does)


class EventLog:
    """Append-only JSON lines; listeners (a CLI progress bar, a Slack updater) see each event as it is written.
    `progress` ticks (kind "progress": a task's done/total) reach the listeners only and are never written."""

    def __init__(self, path: Path, listeners: tuple[EventListener, ...] = ()) -> None:
        self.path = Path(path)
        self.listeners = listeners
        self._last_tick: dict[str, float] = {}

    def progress(self, phase: str, task: str, done: int, total: int) -> None:
        """How far a long task is (documents downloaded, chunks embedded, answers generated), for this
        process's listeners (the CLI's bars with ETA); at most every PROGRESS_INTERVAL_S per task."""
        if not self.listeners:
            return
        now = time.monotonic()
        last = self._last_tick.get(task)
        if last is not None and done < total and now - last < PROGRESS_INTERVAL_S:
            return
        self._last_tick[task] = now
        event = {"ts": round(time.time(), 3), "phase": phase, "kind": "progress", "message": task,
                 "data": {"task": task, "done": done, "total": total}}
        for listener in self.listeners:
            listener(event)

    def ticker(self, phase: str, task: str) -> Callable[[int, int], None]:
        """`progress` for one task as a plain (done, total) callback, for tools that know no event log."""
        return lambda done, total: self.progress(phase, task, done, total)

    def emit(self, phase: str, kind: str, message: str, **data: Any) -> dict[str, Any]:
        event = {"ts": round(time.time(), 3), "phase": phase, "kind": kind, "message": message, "data": data}
        append_event(self.path, event)
        for listener in self.listeners:
            listener(event)
        return event

    def read(self) -> list[dict[str, Any]]:
        """Every whole event in the log, in order (torn or garbled lines skipped)."""
        return read_events(self.path)[0]


def read_from(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The same as `read_events` (the name the API's event stream uses)."""
    return read_events(path, offset)
