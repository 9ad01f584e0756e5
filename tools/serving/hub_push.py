"""`ftagent push MODEL --repo ID`: a registered version's folder to a Hugging Face Hub model repo with
huggingface_hub (the repo is created when missing). The folder is already Hub-shaped: README.md with the
card's front matter, adapter_config.json naming the base by its Hub id, the weights and the tokenizer.

What goes up: the regular files directly in the version's folder (not its subfolders: a merged export or
GGUF files under it are separate models; not hidden or temporary files, not symlinks). Refused before any
upload, each with what to do: no network (the `network` setting off, or HF_HUB_OFFLINE set), no token,
a repo id that is not `owner/name`; a Hub that cannot be reached or refuses is said in one line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_TRUE = ("1", "true", "yes", "on")
DEFAULT_ENDPOINT = "https://huggingface.co"


class PushError(RuntimeError):
    """The push was refused or failed; the message says why and what to do."""


class BadRepoId(PushError):
    """--repo is not a Hub model repo id (owner/name)."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    url: str
    commit: str
    files: list[str]


def files_to_push(folder: Path) -> list[str]:
    """The version's files, sorted: regular files directly in `folder`, not hidden, not symlinks."""
    if not folder.is_dir():
        raise PushError(f"the version's folder {folder} is missing (deleted by hand?): nothing to push")
    files = sorted(entry.name for entry in folder.iterdir()
                   if entry.is_file() and not entry.is_symlink() and not entry.name.startswith("."))
    if "README.md" not in files:
        raise PushError(f"{folder} has no README.md (its model card): re-run the job's deployer "
                        "(ftagent resume JOB) before pushing")
    return files


def check_can_push(repo_id: str, network: bool, environ: dict[str, str] | None = None) -> str:
    """The Hub endpoint to push to, when the repo id is well formed and the machine may go online;
    PushError otherwise (before anything is read or sent)."""
    environ = dict(os.environ if environ is None else environ)
    if not _REPO_ID.match(repo_id):
        raise BadRepoId(f"--repo must be a Hub model repo id OWNER/NAME (letters, digits, - _ .), not {repo_id!r}")
    if not network:
        raise PushError("push needs the network, and this machine's network setting is off "
                        "(FTAGENT_NETWORK / network: false in config.yaml); copy the folder instead")
    if environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        raise PushError("push needs the Hugging Face Hub, but HF_HUB_OFFLINE is set: unset it "
                        "(HF_HUB_OFFLINE=0) on a machine with network access")
    return (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_token(environ: dict[str, str] | None = None) -> str:
    """HF_TOKEN, or the token `hf auth login` saved; PushError when there is none."""
    from huggingface_hub import get_token

    environ = os.environ if environ is None else environ
    token = environ.get("HF_TOKEN") or get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN (a token with write access, from "
                        "https://huggingface.co/settings/tokens) or run `hf auth login`")
    return token


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures of the HTTP client huggingface_hub uses (httpx; httpx2 from 2.x on)."""
    import httpx

    errors: list[type[BaseException]] = [httpx.TransportError]
    try:
        import httpx2
    except ImportError:
        pass
    else:
        errors.append(httpx2.TransportError)
    return tuple(errors)


def push_folder(folder: Path, repo_id: str, endpoint: str, token: str, private: bool = False,
                message: str | None = None) -> PushResult:
    """Create the repo if needed and commit the version's files in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    files = files_to_push(folder)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.create_commit(
            repo_id, [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files],
            commit_message=message or f"Upload {folder.name} (ftagent)", repo_type="model")
    except OfflineModeIsEnabled as error:
        raise PushError(f"huggingface_hub is in offline mode ({error}); unset HF_HUB_OFFLINE") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        first = (str(error).strip().splitlines() or ["no message"])[0][:300]
        hint = " (is the token valid, with write access to that owner?)" if status in (401, 403) else ""
        raise PushError(f"the Hub at {endpoint} refused the push (HTTP {status}){hint}: {first}") from error
    except (*transport_errors(), OSError) as error:
        raise PushError(f"cannot reach the Hugging Face Hub at {endpoint} ({type(error).__name__}: "
                        f"{str(error)[:200]}): this machine may be offline") from error
    return PushResult(repo_id, str(repo), commit.oid, files)
