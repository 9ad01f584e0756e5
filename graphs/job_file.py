"""Job files, `--set` overrides and the resolved job spec with where each value came from.

A job file is the whole job in YAML: `request:` (the sentence) and any JobSpec key (`dataset:`,
`base_model:`, `training: {epochs: 3}`, ...). Relative paths in it are read from the file's folder.
`--set section.key=value` reaches any key at any depth and is typed by the spec (a string stays a
string, "3" is a number only where the spec wants one). Unknown keys and wrong types are refused naming
the key, before any work. Precedence, lowest first: defaults, the sentence, the job file, the command
line's own options, `--set`."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from graphs.spec import JobSpec, RequestError, build_spec
from tools.intake.request_reader import ReadRequest, read_request

PATH_KEYS = ("dataset", "docs_path")  # relative to the job file's folder
ORIGINS = ("default", "sentence", "config", "option", "--set")


class JobFileError(RequestError):
    """A job file or --set that cannot be used; the message names the key or the file."""


@dataclass
class ResolvedJob:
    request: str
    spec: JobSpec
    options: dict[str, Any]  # what the service is given with the request
    origins: dict[str, str] = field(default_factory=dict)  # dotted key -> one of ORIGINS


# -- the spec's shape ----------------------------------------------------------------------------

def _section_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def field_at(path: list[str], model: type[BaseModel] = JobSpec) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of the key at `path`; JobFileError naming it (and the nearest known key)
    when the spec has no such key."""
    for depth, key in enumerate(path):
        fields = model.model_fields
        where = ".".join(path[: depth + 1])
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            raise JobFileError(f"unknown key {where!r}" + (f" (did you mean {'.'.join([*path[:depth], near[0]])!r}?)"
                                                           if near else f"; known here: {', '.join(fields)}"))
        info = fields[key]
        if depth == len(path) - 1:
            return info.annotation, info
        section = _section_model(info.annotation)
        if section is None:
            raise JobFileError(f"unknown key {where + '.' + path[depth + 1]!r}: {where} is a single value")
        model = section
    raise JobFileError("an empty key")


def check_keys(values: Mapping[str, Any], path: tuple[str, ...] = ()) -> None:
    """Every key in a nested mapping must be a spec key (JobFileError naming the first that is not)."""
    for key, value in values.items():
        annotation, _ = field_at([*path, str(key)])
        if isinstance(value, Mapping) and _section_model(annotation):
            check_keys(value, (*path, str(key)))


def _wants_text(annotation: Any) -> bool:
    """Whether a value for this annotation is text (str or str | None): --set keeps the raw string."""
    if annotation is str:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return str in get_args(annotation) and all(a in (str, type(None)) for a in get_args(annotation))
    return False


def typed_value(path: list[str], text: str) -> Any:
    """The --set value for the key at `path`, parsed for its type and checked against its constraints."""
    annotation, info = field_at(path)
    dotted = ".".join(path)
    if _section_model(annotation):
        raise JobFileError(f"--set {dotted}=...: {dotted} is a section; set one of its keys "
                           f"({', '.join(_section_model(annotation).model_fields)})")
    if _wants_text(annotation):
        value: Any = None if text.lower() in ("null", "none") and annotation is not str else text
    elif get_origin(annotation) is list and not text.lstrip().startswith("["):
        value = [part.strip() for part in text.split(",") if part.strip()]
    else:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
    try:
        return TypeAdapter(Annotated[annotation, info]).validate_python(value)
    except ValidationError as error:
        raise JobFileError(f"--set {dotted}={text}: {error.errors()[0]['msg']}") from error


def parse_set(item: str) -> tuple[list[str], Any]:
    """'training.epochs=3' -> (['training', 'epochs'], 3.0)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise JobFileError(f"--set {item!r}: write section.key=value, e.g. --set training.epochs=3")
    path = [part.strip() for part in key.strip().split(".")]
    return path, typed_value(path, text.strip())


# -- job files ---------------------------------------------------------------------------------------

def load_job_file(path: Path | str) -> tuple[str | None, dict[str, Any]]:
    """(request or None, options) from a YAML job file; JobFileError for a missing file, bad YAML, a
    document that is not a mapping, or an unknown key."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise JobFileError(f"the job file {path} does not exist")
    try:
        loaded = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise JobFileError(f"the job file {path} is not valid YAML: {error}") from error
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise JobFileError(f"the job file {path} must be a mapping of keys (request:, dataset:, training:, ...)")
    request = loaded.pop("request", None)
    if request is not None and not isinstance(request, str):
        raise JobFileError(f"the job file {path}: request must be a sentence (text)")
    try:
        check_keys(loaded)
    except JobFileError as error:
        raise JobFileError(f"the job file {path}: {error}") from error
    for key in PATH_KEYS:
        if isinstance(loaded.get(key), str) and not Path(loaded[key]).expanduser().is_absolute():
            loaded[key] = str((source.parent / loaded[key]).resolve())
    return request, loaded


# -- merging and provenance --------------------------------------------------------------------------

def _deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaves(values: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        keys |= _leaves(value, dotted + ".") if isinstance(value, Mapping) and value else {dotted}
    return keys


def _assign(values: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def resolve_job(sentence: str | None, config: Path | str | None = None, sets: list[str] | None = None,
                options: Mapping[str, Any] | None = None) -> ResolvedJob:
    """The job spec from a sentence (or the job file's `request:`), a job file, the command line's own
    options and --set items, with the origin of every value. RequestError/JobFileError before any work."""
    file_request, file_options = load_job_file(config) if config else (None, {})
    request = sentence or file_request
    if not request:
        raise JobFileError("no request: give the sentence, or `request:` in the job file")
    check_keys(options or {})
    set_options: dict[str, Any] = {}
    for item in sets or ():
        path, value = parse_set(item)
        _assign(set_options, path, value)
    merged = _deep_merge(_deep_merge(file_options, options or {}), set_options)
    spec = build_spec(request, merged)
    return ResolvedJob(request, spec, merged, origins(spec, request, file_options, options or {}, set_options))


def origins(spec: JobSpec, request: str, config: Mapping[str, Any], options: Mapping[str, Any],
            sets: Mapping[str, Any]) -> dict[str, str]:
    """Where each leaf of the spec came from (the highest layer that named it)."""
    try:
        read: ReadRequest | None = read_request(request)
    except RequestError:  # the subject came from the options
        read = None
    from_sentence = {"subject"} | ({"base_model"} if read and read.base_model else set()) | _leaves(
        read.options if read else {})
    layers = (("--set", _leaves(sets)), ("option", _leaves(options)), ("config", _leaves(config)))
    result = {}
    for key in sorted(_leaves(spec.model_dump())):
        named = next((origin for origin, keys in layers if key in keys or any(
            key.startswith(k + ".") for k in keys)), None)
        result[key] = named or ("sentence" if key in from_sentence else "default")
    return result


def spec_yaml(job: ResolvedJob) -> str:
    """The resolved job as YAML that parses back to {request, **spec}, each value with its origin as a
    comment (`epochs: 3.0  # --set`)."""
    lines = [f"request: {_scalar(job.request)}"]
    for key, value in job.spec.model_dump().items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {sub}: {_scalar(item)}  # {job.origins.get(f'{key}.{sub}', 'default')}"
                      for sub, item in value.items()]
        else:
            lines.append(f"{key}: {_scalar(value)}  # {job.origins.get(key, 'default')}")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    """One value in YAML flow style on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()
