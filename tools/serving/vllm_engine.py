"""Serving the registry's models with vLLM (`ftagent serve --engine vllm`) on a CUDA machine.

vLLM's OpenAI-compatible server runs the base model once and every servable version as a LoRA
module (`--enable-lora --lora-modules NAME=PATH …`), the same versions our own server picks
(tools/serving/from_registry.py: production and staging on one base, or the named ones). Each family name
is a LoRA module too, on its production version's adapter, so a client asks for the family and
gets production.

Following the registry: vLLM is started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, and
`AdapterSync` re-reads the registry every `reload_interval_s` seconds and makes vLLM agree through
`POST /v1/load_lora_adapter` and `POST /v1/unload_lora_adapter`: a new version is loaded, a deleted
or archived one unloaded, a promotion reloads the family name on the new production adapter.

Differences from our server, said plainly: vLLM does not add a version's training-time system
prompt (a client sends it), has no A/B splits, and sizes its LoRA slots at start (`--max-loras`,
`--max-lora-rank`: the rank is the next size vLLM accepts above the largest adapter's).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.serving.from_registry import servable_versions, served_names
from tools.serving.server import ServingError
from tools.stores.model_registry import ModelRegistry

logger = logging.getLogger("ftagent.serving.vllm")
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
VLLM_PROGRAM = (sys.executable, "-m", "vllm.entrypoints.openai.api_server")


class VllmUnavailable(RuntimeError):
    """vLLM is not installed here, or its server did not come up (the message says which and
    why)."""


@dataclass
class VllmPlan:
    """What one vLLM server serves: one base model and its LoRA modules {name: adapter folder}."""

    base_model_path: str
    base_name: str
    lora_modules: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 8000
    max_lora_rank: int = 16
    max_loras: int = 4
    extra_args: list[str] = field(default_factory=list)


def lora_modules(registry: ModelRegistry, names: Sequence[str] = ()) -> tuple[str, dict[str, str]]:
    """(base model folder, {module name: adapter folder}) for the versions to serve: every version
    by its name, and every family name on its production version's adapter."""
    versions = servable_versions(registry, names)
    chosen = served_names(versions, {})
    modules = dict(chosen.adapters)
    modules.update({family: chosen.adapters[version] for family, version in chosen.aliases.items()})
    return versions[0].base_model_path, modules


def lora_rank_for(adapter_paths: Sequence[str]) -> int:
    """The smallest --max-lora-rank vLLM accepts that fits every adapter's rank `r`."""
    ranks = [
        int(json.loads((Path(path) / "adapter_config.json").read_text()).get("r", 8))
        for path in adapter_paths
        if (Path(path) / "adapter_config.json").is_file()
    ]
    largest = max(ranks, default=8)
    fitting = [size for size in VLLM_LORA_RANKS if size >= largest]
    if not fitting:
        raise ServingError(
            400,
            f"an adapter has LoRA rank {largest}; vLLM serves at most {VLLM_LORA_RANKS[-1]}",
            "lora_rank_too_large",
        )
    return fitting[0]


def plan_for_registry(
    registry: ModelRegistry,
    names: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    extra_args: Sequence[str] = (),
) -> VllmPlan:
    """The vLLM server for the registry's servable versions (ServingError when there is nothing to
    serve or the named versions use several base models)."""
    base, modules = lora_modules(registry, names)
    return VllmPlan(
        base_model_path=base,
        base_name=Path(base).name,
        lora_modules=modules,
        host=host,
        port=port,
        max_lora_rank=lora_rank_for(sorted(set(modules.values()))),
        max_loras=max(4, len(modules)),
        extra_args=list(extra_args),
    )


def vllm_command(plan: VllmPlan, program: Sequence[str] = ()) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for a plan (`program`: what runs it, by
    default this Python's `-m vllm.entrypoints.openai.api_server`)."""
    command = [
        *(program or VLLM_PROGRAM),
        "--model",
        plan.base_model_path,
        "--served-model-name",
        plan.base_name,
        "--host",
        plan.host,
        "--port",
        str(plan.port),
        "--enable-lora",
        "--max-loras",
        str(plan.max_loras),
        "--max-lora-rank",
        str(plan.max_lora_rank),
    ]
    if plan.lora_modules:
        command += [
            "--lora-modules",
            *(f"{name}={path}" for name, path in plan.lora_modules.items()),
        ]
    return command + plan.extra_args


def vllm_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ours, with runtime LoRA loading allowed (so new versions load
    live)."""
    return {**(os.environ if base is None else base), RUNTIME_LORA_ENV: "True"}


def check_vllm_installed() -> None:
    """VllmUnavailable unless the vllm package can be imported here."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise VllmUnavailable(
            "vLLM is not installed: `pip install vllm` on a CUDA machine (a release built for "
            "this torch), or serve with the default engine (`ftagent serve`)"
        )


class VllmClient:
    """vLLM's adapter endpoints over HTTP."""

    def __init__(self, base_url: str, timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(timeout=timeout_s)

    def healthy(self) -> bool:
        try:
            return self.http.get(f"{self.base_url}/health").status_code == 200
        except httpx.TransportError:
            return False

    def served(self) -> list[str]:
        """The model names the server answers (the base and every loaded LoRA module)."""
        response = self.http.get(f"{self.base_url}/v1/models")
        response.raise_for_status()
        return [model["id"] for model in response.json()["data"]]

    def load(self, name: str, path: str) -> None:
        self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    def unload(self, name: str) -> None:
        self._post("/v1/unload_lora_adapter", {"lora_name": name})

    def _post(self, path: str, body: dict[str, str]) -> None:
        response = self.http.post(f"{self.base_url}{path}", json=body)
        if response.status_code >= 400:
            raise ServingError(
                502,
                f"vLLM refused {path} for {body['lora_name']!r} ({response.status_code}): "
                f"{response.text[:300]}",
                "vllm_refused",
            )

    def close(self) -> None:
        self.http.close()


class AdapterSync:
    """Keeps vLLM's LoRA modules in step with the registry (see the module's policy). Only modules
    on the server's base model are loaded; a load or unload that vLLM refuses is logged with its
    reason and retried at the next poll, and the rest go on."""

    def __init__(
        self,
        client: VllmClient,
        registry: ModelRegistry,
        base_model_path: str,
        loaded: Mapping[str, str],
        names: Sequence[str] = (),
        reload_interval_s: float = 5.0,
    ) -> None:
        self.client = client
        self.registry = registry
        self.base_model_path = base_model_path
        self.loaded = dict(loaded)  # what vLLM serves now: {module name: adapter folder}
        self.names = tuple(names)
        self.reload_interval_s = reload_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wanted(self) -> dict[str, str]:
        """The modules the registry says to serve now, on this server's base."""
        try:
            base, modules = lora_modules(self.registry, self.names)
        except ServingError:
            return {}  # nothing servable any more: unload everything
        return modules if base == self.base_model_path else {}

    def sync(self) -> dict[str, list[str]]:
        """One pass: unload what is gone or moved, load what is new or moved; returns what
        changed."""
        wanted = self.wanted()
        changed: dict[str, list[str]] = {"loaded": [], "unloaded": [], "failed": []}
        for name in sorted(n for n, path in self.loaded.items() if wanted.get(n) != path):
            self._apply(changed, "unloaded", name, lambda n=name: self.client.unload(n))
        for name in sorted(n for n, path in wanted.items() if self.loaded.get(n) != path):
            self._apply(
                changed, "loaded", name, lambda n=name: self.client.load(n, wanted[n]), wanted[name]
            )
        return changed

    def _apply(
        self, changed: dict[str, list[str]], kind: str, name: str, call, path: str | None = None
    ) -> None:
        try:
            call()
        except (ServingError, httpx.HTTPError) as error:
            logger.warning("vLLM: could not %s %s: %s", kind.removesuffix("ed"), name, error)
            changed["failed"].append(name)
            return
        changed[kind].append(name)
        if path is None:
            self.loaded.pop(name, None)
        else:
            self.loaded[name] = path

    def start(self) -> None:
        if self.reload_interval_s > 0:
            self._thread = threading.Thread(
                target=self._poll, name="ftagent-vllm-sync", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.reload_interval_s):
            try:
                changed = self.sync()
            except Exception as error:  # noqa: BLE001 - a locked or unreachable registry: keep serving
                logger.warning("vLLM: registry poll failed: %s", error)
                continue
            if any(changed.values()):
                logger.info("vLLM adapters: %s", changed)


class VllmServer:
    """One vLLM server for the registry's versions, with its adapters kept in step: `start()`
    launches it and waits for /health, `wait()` blocks until it exits, `close()` stops both."""

    def __init__(
        self,
        registry: ModelRegistry,
        names: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 8000,
        reload_interval_s: float = 5.0,
        extra_args: Sequence[str] = (),
        program: Sequence[str] | None = None,
    ) -> None:
        if program is None:
            check_vllm_installed()
        self.program = tuple(program or VLLM_PROGRAM)
        self.plan = plan_for_registry(registry, names, host, port, extra_args)
        self.client = VllmClient(f"http://{host}:{port}")
        self.sync = AdapterSync(
            self.client,
            registry,
            self.plan.base_model_path,
            self.plan.lora_modules,
            names,
            reload_interval_s,
        )
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return vllm_command(self.plan, self.program)

    def start(self, startup_timeout_s: float = 900.0) -> None:
        """Launch vLLM (its output goes to ours) and wait until /health answers; VllmUnavailable if
        it exits first or is not ready in time."""
        self.process = subprocess.Popen(self.command(), env=vllm_environment())
        deadline = time.monotonic() + startup_timeout_s
        while not self.client.healthy():
            if self.process.poll() is not None:
                raise VllmUnavailable(
                    f"vLLM exited with code {self.process.returncode} before it was ready "
                    "(its output above says why)"
                )
            if time.monotonic() > deadline:
                self.close()
                raise VllmUnavailable(f"vLLM was not ready after {startup_timeout_s:.0f} s")
            time.sleep(0.25)
        self.sync.start()

    def wait(self) -> int:
        return self.process.wait() if self.process is not None else 0

    def close(self) -> None:
        self.sync.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
