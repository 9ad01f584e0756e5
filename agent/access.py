"""What a remote caller (HTTP API, Slack, chat over HTTP) may ask for, checked when a job is submitted.

The local CLI and the Python API run as the machine's own user and may read any folder that user can,
fetch any URL and set any gate. A remote caller acts for a person who has no account on the machine:

- **Documents** (`docs_path`, and a `dataset` of the user's own) only from a document root:
  `<home>/documents` or a folder of the `document_roots` setting (`FTAGENT_DOCUMENT_ROOTS`,
  os.pathsep-separated). The path is resolved (symlinks followed)
  before it is compared, a relative path is taken inside `<home>/documents`, and the home itself (or a
  root that would contain it) is never allowed. A refusal names the roots and never says whether the
  path exists.
- **URLs** only on public addresses: checked here (422 naming the URL) and again at every redirect hop
  by the HTTP layer, through the job's `allow_private_urls: false`, which the service sets itself
  (a remote caller naming that key is refused).
- **Gates** only as strict as the defaults or stricter, unless the caller is an admin: a looser gate
  would let a worse model into the registry (and onto the model server) under everyone's name.
- **Base model folders** only for admins: a catalogue name or a Hugging Face id otherwise (a folder
  path would probe the server's disk).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.settings import Settings
from graphs.spec import Gates, JobSpec, parse_request
from tools.sources.http import address_problem
from tools.stores.api_tokens import Caller

_LOCAL_PATH_PREFIXES = ("/", "./", "../", "~")
_PATH_OPTIONS = ("docs_path", "dataset")  # files a job reads: a documents folder, the user's own dataset
# gate -> +1 when a larger value is stricter, -1 when a smaller value is stricter
_GATE_STRICTNESS = {"min_nll_improvement": 1, "max_general_ppl_increase": -1, "min_train_examples": 1,
                    "max_rouge_l_drop": -1, "min_rouge_l": 1, "min_rouge_l_answers": -1,
                    "min_judge_win_rate": 1}


class Refused(PermissionError):
    """A remote caller asked for something only the machine's own user may do; `status` is the HTTP one."""

    def __init__(self, message: str, status: int = 403, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def document_roots(settings: Settings) -> list[Path]:
    """The folders remote callers' documents may come from, resolved: <home>/documents first."""
    return [settings.documents_root.resolve(), *(Path(root).expanduser().resolve()
                                                 for root in settings.document_roots)]


def remote_docs_path(given: str, settings: Settings, key: str = "docs_path") -> str:
    """`given` resolved, when it lies inside a document root (and not over the home); Refused otherwise,
    with the same message whether or not the path exists."""
    roots = document_roots(settings)
    home = settings.home.resolve()
    path = Path(given).expanduser()
    path = (path if path.is_absolute() else roots[0] / path).resolve()
    inside_home = path.is_relative_to(home) and not path.is_relative_to(roots[0])
    covers_home = home.is_relative_to(path)
    if inside_home or covers_home or not any(path.is_relative_to(root) for root in roots):
        raise Refused(f"{key} must be inside one of the document roots: "
                      f"{', '.join(map(str, roots))} (the server's document_roots setting, "
                      "FTAGENT_DOCUMENT_ROOTS)", roots=[str(root) for root in roots])
    return str(path)


def check_before_parsing(sentence: str, options: dict[str, Any], settings: Settings,
                         caller: Caller) -> dict[str, Any]:
    """The options a remote caller may send, with docs_path resolved and private URLs turned off;
    Refused for what they may not ask. Runs before the spec is built, so that no existence check
    answers first."""
    if options.get("allow_private_urls"):
        raise Refused("allow_private_urls is for the local CLI only; remote jobs fetch public addresses only")
    options = {**options, "allow_private_urls": False}
    for key in _PATH_OPTIONS:
        if isinstance(options.get(key), str):
            options[key] = remote_docs_path(options[key], settings, key)
    named = [options.get("base_model"), parse_request(sentence)["base_model"]]  # the sentence may name one
    if any(isinstance(base, str) and base.strip().startswith(_LOCAL_PATH_PREFIXES) for base in named) \
            and not caller.admin:
        raise Refused("a base model folder can be named only by an admin or the local CLI; "
                      "name a catalogue model (e.g. SmolLM2-135M-Instruct) or a Hugging Face id")
    return options


def check_spec(spec: JobSpec, caller: Caller) -> None:
    """URLs on public addresses only (422 naming the URL); gates no looser than the defaults unless admin."""
    for url in spec.urls:
        if problem := address_problem(url):
            raise Refused(f"options.urls: {url} cannot be fetched for a remote caller: {problem}", 422, url=url)
    if caller.admin:
        return
    defaults = Gates()
    for name, direction in _GATE_STRICTNESS.items():
        asked, default = getattr(spec.gates, name), getattr(defaults, name)
        if (asked - default) * direction < 0:
            raise Refused(f"gates.{name}={asked} is looser than the default {default}; only an admin may "
                          "lower a quality gate (a stricter value is fine)")
