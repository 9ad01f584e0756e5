"""Serving the registry's models, and following the registry while the server runs (hot reload).

Policies:

- **What is served.** Without names: every production and staging version on one base model, that of
  the newest production version at start (else of the newest version). The base never changes while
  the server runs. With names (``ftagent serve --model``): exactly those versions, whatever their
  status, for as long as they are registered.
- **Names.** Each family name is an alias of its production version; each version answers with the
  system prompt it was trained with. An A/B split ``{name: {version: weight}}`` must name served
  versions (or the base) when the server starts, else a 404 lists the served ones; it may reuse a
  family name, and then wins over the alias.
- **Following the registry.** A background thread re-reads the SQLite registry every
  ``reload_interval_s`` seconds (default 5; 0 = only on request), and ``POST /admin/reload`` does it
  at once and answers what changed. A reload hands the set of names to serve to
  ``ModelServer.update``: a new staging or production version on the server's base gets its adapter
  loaded; a promotion moves the family alias (the replaced version is archived, so it is unloaded);
  archived, rejected and deleted versions stop being served (their names answer 404 listing the
  rest). A version on another base model is skipped, its reason logged once. An adapter that cannot
  be loaded is skipped with its reason and the rest keep serving. A split that loses an arm goes on
  with the arms it has; one that loses every arm is no longer served. A failed poll (a locked or
  unreadable database) is logged and the previous set keeps serving until the next poll.
- **The reload endpoint takes no input**: it can only make the server agree with the registry. With an
  API key it needs the key like every /v1 route; without one, only loopback callers on a loopback-bound
  server reach it, and never a web page (see "who may call" in tools.serving.server).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tools.home import HomeLayout
from tools.serving.server import ChatEngine, ModelServer, ServedNames, ServingError, build_app
from tools.stores.model_registry import ModelRegistry, ModelVersion

logger = logging.getLogger("ftagent.serving")
SERVABLE_STATUSES = ("production", "staging")
AB_SYNTAX = "NAME=VERSION_A[:WEIGHT],VERSION_B[:WEIGHT]"


# -- A/B splits from the command line or the config -----------------------------------------------
def parse_ab_split(text: str) -> tuple[str, dict[str, float]]:
    """``NAME=VERSION_A:WEIGHT,VERSION_B:WEIGHT`` → (name, {version: weight}). Weights are optional
    and then equal; given, every version needs one. Raises ValueError saying what is wrong."""
    name, equals, arms_text = text.partition("=")
    name = name.strip()
    if not equals or not name or not arms_text.strip():
        raise ValueError(f"A/B split {text!r}: expected {AB_SYNTAX}")
    arms: dict[str, float | None] = {}
    for part in arms_text.split(","):
        version, weight = _parse_arm(text, part)
        if version in arms:
            raise ValueError(f"A/B split {text!r}: {version} is named twice")
        arms[version] = weight
    if len(arms) < 2:
        raise ValueError(f"A/B split {text!r}: name two or more versions ({AB_SYNTAX})")
    weights = list(arms.values())
    if None in weights and any(w is not None for w in weights):
        raise ValueError(f"A/B split {text!r}: give every version a weight, or none for equal shares")
    return name, {version: 1.0 if weight is None else weight for version, weight in arms.items()}


def _parse_arm(text: str, part: str) -> tuple[str, float | None]:
    """One `VERSION[:WEIGHT]` (registry names hold no colon); None when no weight is given."""
    version, colon, weight_text = (piece.strip() for piece in part.partition(":"))
    if not version:
        raise ValueError(f"A/B split {text!r}: an empty version name in {part!r}")
    if not colon:
        return version, None
    try:
        weight = float(weight_text)
    except ValueError:
        raise ValueError(f"A/B split {text!r}: the weight {weight_text!r} of {version} is not a number") from None
    if not math.isfinite(weight) or weight <= 0:
        raise ValueError(f"A/B split {text!r}: the weight of {version} must be a positive number, "
                         f"not {weight_text}")
    return version, weight


def check_ab_splits(splits: Mapping[str, Mapping[str, float]], served: Sequence[str]) -> None:
    """At start-up every arm must be served (404 listing the served versions) and a split may not
    take a version's name (400)."""
    for name, arms in splits.items():
        unknown = [version for version in arms if version not in served]
        if unknown:
            raise ServingError(404, f"A/B split {name!r}: {', '.join(unknown)} "
                                    f"{'is' if len(unknown) == 1 else 'are'} not served; served versions: "
                                    f"{', '.join(served)}", "unknown_version", available=list(served))
        if name in served:
            raise ServingError(400, f"A/B split {name!r} cannot take the name of a served version; "
                                    "use the family name or a new one", "bad_split")
        if len(arms) < 2 or any(weight <= 0 for weight in arms.values()):
            raise ServingError(400, f"A/B split {name!r} needs two or more versions with positive weights",
                               "bad_split")


# -- which versions -------------------------------------------------------------------------------
def servable_versions(registry: ModelRegistry, names: Sequence[str] = ()) -> list[ModelVersion]:
    """The versions to serve at start: the named ones (any status), else every production and staging
    version sharing one base model (that of the newest production version, else of the newest version)."""
    if names:
        chosen = [registry.get(name) for name in names]
        bases = {v.base_model_path for v in chosen}
        if len(bases) > 1:
            raise ServingError(400, "one server serves one base model; these versions use "
                                    + ", ".join(f"{v.name}: {v.base_model}" for v in chosen), "mixed_base_models")
        return chosen
    candidates = [v for v in registry.list() if v.status in SERVABLE_STATUSES]
    if not candidates:
        raise ServingError(404, "nothing to serve: no production or staging model is registered "
                                "(run a job, or name a model with --model)", "no_models")
    production = [v for v in candidates if v.status == "production"]
    base = (production or candidates)[-1].base_model_path
    skipped = [v.name for v in candidates if v.base_model_path != base]
    if skipped:
        logger.warning("not serving %s: they use another base model than %s", skipped, base)
    return [v for v in candidates if v.base_model_path == base]


def served_names(versions: Sequence[ModelVersion], ab_splits: Mapping[str, Mapping[str, float]]) -> ServedNames:
    """The names for a set of versions: adapters, family aliases of production versions, the versions'
    training-time system prompts, and the A/B splits."""
    from tools.llm.prompt_files import render_prompt

    return ServedNames(
        adapters={v.name: v.adapter_path for v in versions},
        aliases={v.family: v.name for v in versions if v.status == "production" and v.family != v.name},
        splits={name: dict(arms) for name, arms in ab_splits.items()},
        system_prompts={v.name: render_prompt("system_subject_expert", subject=v.subject) for v in versions})


class RegistryFollower:
    """Keeps a serving engine (a ModelServer, or another ChatEngine) in step with the registry: on request
    (`reload`) and, with a positive interval, from a polling thread (see the module's policy)."""

    def __init__(self, server: ChatEngine, registry: ModelRegistry, base_model_path: str,
                 names: Sequence[str] = (), ab_splits: Mapping[str, Mapping[str, float]] | None = None,
                 interval_s: float = 5.0) -> None:
        if interval_s < 0:
            raise ValueError(f"the reload interval cannot be negative ({interval_s} s)")
        self.server, self.registry, self.base_model_path = server, registry, base_model_path
        self.names, self.ab_splits, self.interval_s = tuple(names), dict(ab_splits or {}), interval_s
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._reported_bases: set[str] = set()
        self._thread: threading.Thread | None = None

    def versions(self) -> list[ModelVersion]:
        """What should be served now, by the module's policy."""
        registered = self.registry.list()
        if self.names:
            return [v for v in registered if v.name in self.names]
        chosen = []
        for version in (v for v in registered if v.status in SERVABLE_STATUSES):
            if version.base_model_path == self.base_model_path:
                chosen.append(version)
            elif version.name not in self._reported_bases:
                self._reported_bases.add(version.name)
                logger.warning("not serving %s: its base model %s is not this server's (%s)",
                               version.name, version.base_model_path, self.base_model_path)
        return chosen

    def reload(self, strict: bool = False) -> dict[str, Any]:
        """Re-read the registry and serve what it says now; returns what was loaded, unloaded, skipped."""
        with self._reload_lock:
            return self.server.update(served_names(self.versions(), self.ab_splits), strict=strict)

    def start(self) -> None:
        """Poll every `interval_s` seconds in a daemon thread (nothing with an interval of 0)."""
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="registry-follower", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.reload()
            except Exception:  # a locked or unreadable database: logged, and the next poll tries again
                logger.exception("registry reload failed; still serving the previous set")


def app_for_registry(registry: ModelRegistry, home: Path, names: Sequence[str] = (),
                     ab_splits: Mapping[str, Mapping[str, float]] | None = None, reload_interval_s: float = 5.0,
                     api_key: str | None = None, engine: Callable[..., ChatEngine] = ModelServer,
                     **options: Any) -> FastAPI:
    """Serve registered versions on their shared base and follow the registry while serving.
    Named versions must load (else an error); discovered ones that cannot are skipped with a reason.
    `engine` builds the server from (base model folder, {}, base_name=..., **options): ModelServer (its
    options: context_length, max_batch_size, threads, ...) or another ChatEngine taking that signature
    (tools.serving.llamacpp_engine.LlamaCppServer)."""
    from tools.models.catalogue import model_key, resolve_base_model

    versions = servable_versions(registry, names)
    first = versions[0]
    base_name = options.pop("base_name", model_key(first.base_model))
    check_ab_splits(ab_splits or {}, [base_name, *(v.name for v in versions)])
    base_path = first.base_model_path
    if not Path(base_path).exists():
        base_path = str(resolve_base_model(first.base_model, Path(home)))
    options.setdefault("assignment_log", HomeLayout(Path(home)).serving_assignments)
    server = engine(base_path, {}, base_name=base_name, **options)
    follower = RegistryFollower(server, registry, first.base_model_path, names, ab_splits, reload_interval_s)
    try:
        follower.reload(strict=bool(names))
    except Exception:
        server.close()
        raise
    follower.start()
    return build_app(server, reload=follower.reload, on_close=[follower.close], api_key=api_key)
