"""Files only their owner can read: the home folder (0700), its database and secrets (0600).

The home holds every job's documents, the jobs database and API tokens; on a machine shared by several
people none of it may be readable by the others, so the home is created (or tightened to) 0700 and each
secret file is written 0600 from its first byte (created with that mode, then renamed into place: there
is no moment when it exists with the umask's wider mode)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_FOLDER, PRIVATE_FILE = 0o700, 0o600


def private_folder(path: Path) -> Path:
    """`path` as a folder only its owner can enter (created with its parents if missing)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
    status = path.stat()
    if status.st_mode & 0o777 != PRIVATE_FOLDER and status.st_uid == os.getuid():
        path.chmod(PRIVATE_FOLDER)
    return path


def private_file(path: Path) -> Path:
    """Make sure `path` exists and only its owner can read or write it (an empty file is created 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    if path.stat().st_mode & 0o777 != PRIVATE_FILE:
        path.chmod(PRIVATE_FILE)
    return path


def write_private_text(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically, mode 0600 from creation (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path

