"""The job graph's checkpointer: LangGraph's SQLite saver with a serializer that rebuilds nothing from the
database but plain data and the types a job's state really holds (its typed results).

LangGraph's default msgpack decoding imports and calls whatever (module, name) a stored blob names, so a
crafted row in ftagent.sqlite would run `os.system` on the next resume or status call. Here every blob is
checked before it is decoded: a type outside ALLOWED_TYPES is refused with GraphCheckpointRefused, which names the
type and how to recover; pickled blobs are never read. LangGraph's own strict mode (allowed_msgpack_modules)
is set too, as a second line: alone it would quietly hand back the raw arguments instead of saying why.
The checks read the msgpack wire format itself (extension codes 0-5 carry a (module, name, ...) tuple),
not LangGraph's private helpers."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from graphs.state import CHECKPOINT_TYPES
from tools.refusals import RefusedToLoad

# A job's checkpoints hold plain data and the state's own typed results (graphs/state.CHECKPOINT_TYPES:
# pydantic models and the registered ModelVersion, rebuilt through their validation); besides those, the
# harmless value types LangGraph itself encodes as extensions, and the ones its runtime writes (Send, ...).
ALLOWED_TYPES: frozenset[tuple[str, str]] = CHECKPOINT_TYPES | frozenset({
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("uuid", "UUID"), ("decimal", "Decimal"),
    ("builtins", "set"), ("builtins", "frozenset"), ("collections", "deque"),
    ("pathlib", "Path"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
    ("langgraph.types", "Send"), ("langgraph.types", "Interrupt"), ("langgraph.types", "Command"),
    ("langgraph.types", "Overwrite"),
})
ALLOWED_METHODS: frozenset[tuple[str, str, str]] = frozenset({("datetime", "datetime", "fromisoformat")})
_CONSTRUCTOR_CODES = range(6)  # single arg, positional args, keyword args, method, pydantic v1, v2
_METHOD_CODE = 3
RECOVERY = ("Nothing was run. ftagent never writes such rows; if you did not put it there, check who can "
            "write to the home folder. To go on, delete this job's saved graph state (its rows in the "
            "checkpoints and writes tables, thread_id = the job id) and run the job again: documents "
            "already downloaded come from the HTTP cache.")


class GraphCheckpointRefused(RefusedToLoad):
    """A stored graph checkpoint that asks to build a type ftagent does not allow; it was not decoded."""


def refused_types(blob: bytes) -> list[str]:
    """Every (module.name) a msgpack blob would import and call that is not allowed (nothing is built)."""
    refused: list[str] = []

    def inspect(code: int, data: bytes) -> None:  # the value decodes to None: nothing is built
        fields = ormsgpack.unpackb(data, ext_hook=inspect, option=ormsgpack.OPT_NON_STR_KEYS)
        if code not in _CONSTRUCTOR_CODES:
            return
        if not isinstance(fields, list | tuple) or len(fields) < 2:
            refused.append(f"a malformed extension (code {code})")
        elif code == _METHOD_CODE:
            key = (str(fields[0]), str(fields[1]), str(fields[3]) if len(fields) > 3 else "")
            if key not in ALLOWED_METHODS:
                refused.append(".".join(key))
        elif (str(fields[0]), str(fields[1])) not in ALLOWED_TYPES:
            refused.append(f"{fields[0]}.{fields[1]}")

    ormsgpack.unpackb(blob, ext_hook=inspect, option=ormsgpack.OPT_NON_STR_KEYS)
    return refused


def _refused_json_types(blob: bytes) -> list[str]:
    refused: list[str] = []

    def inspect(value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") == "constructor" and value.get("lc") in (1, 2) and isinstance(value.get("id"), list):
            ident = [str(part) for part in value["id"]]
            if (".".join(ident[:-1]), ident[-1]) not in ALLOWED_TYPES:
                refused.append(".".join(ident))
        return value

    json.loads(blob, object_hook=inspect)
    return refused


class CheckpointFromOlderBuild(RefusedToLoad):
    """A job checkpointed by a build whose state held plain dicts, not the typed results it holds now."""


def check_typed_state(values: dict[str, Any]) -> None:
    """CheckpointFromOlderBuild when a saved state's results are plain dicts (its spec is the sign: every
    state past intake has one), so resuming it says so instead of failing inside a node."""
    if isinstance(values.get("spec"), dict):
        raise CheckpointFromOlderBuild(
            "this job's saved progress was written by an older ftagent (plain dictionaries, before the "
            "typed job state) and cannot be continued. Run the request again as a new job: documents "
            "already downloaded come from the HTTP cache.")


class StrictSerializer(JsonPlusSerializer):
    """JsonPlusSerializer that refuses, with a clear error, any checkpoint naming a type not allowed."""

    def __init__(self) -> None:
        try:  # newer langgraph: its own strict mode as a second line behind ours
            super().__init__(allowed_msgpack_modules=list(ALLOWED_TYPES))
        except TypeError:
            super().__init__()

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, blob = data
        if kind == "pickle":
            raise GraphCheckpointRefused(f"refused to load a pickled graph checkpoint (unpickling can run code). "
                                    f"{RECOVERY}")
        try:
            refused = (refused_types(blob) if kind == "msgpack"
                       else _refused_json_types(blob) if kind == "json" else [])
        except (ormsgpack.MsgpackDecodeError, ValueError, TypeError) as error:
            raise GraphCheckpointRefused(f"a graph checkpoint cannot be decoded ({error}). {RECOVERY}") from error
        if refused:
            raise GraphCheckpointRefused(f"refused to load a graph checkpoint: it asks to build "
                                    f"{', '.join(sorted(set(refused)))}, which is not part of a job's state. "
                                    f"{RECOVERY}")
        return super().loads_typed(data)


def sqlite_checkpointer(connection: sqlite3.Connection) -> SqliteSaver:
    """LangGraph's SQLite saver on `connection` with the strict serializer."""
    return SqliteSaver(connection, serde=StrictSerializer())

