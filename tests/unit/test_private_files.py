"""Files and secrets: the home is 0700, its database and the API token 0600 from creation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.api import resolve_token
from agent.service import JobService
from agent.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_database_and_token_are_the_owners_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FTAGENT_API_TOKEN", raising=False)
    home = tmp_path / "home"
    previous = os.umask(0o022)  # a typical umask: without care, everything would come out world-readable
    try:
        service = JobService(Settings(home=home))
        job = service.submit("fine-tune a model on quantum error correction")
        token = resolve_token(Settings(home=home))
    finally:
        os.umask(previous)
    assert (mode(home), mode(service.settings.database)) == (0o700, 0o600)
    assert service.jobs.get(job.job_id).status == "queued"  # the database works
    assert mode(home / "api_token") == 0o600 and len(token) > 30
    assert [p.name for p in home.iterdir() if p.name.startswith(".")] == []  # no temporary token file left


def test_an_existing_open_home_and_database_are_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "ftagent.sqlite").touch(mode=0o644)
    JobService(Settings(home=home))
    assert (mode(home), mode(home / "ftagent.sqlite")) == (0o700, 0o600)
