"""A full disk, for real: a 2 MiB tmpfs holds the job store and an event log; once it is filled, writes
fail with DiskFull naming the file (not a raw sqlite3 or errno 28 traceback), what was written before
stays readable, and writing works again once space is freed. The CLI says the same in one line.
Needs `mount -t tmpfs` (root with the mount capability); skipped, saying so, where that is refused."""

import errno
import gc
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from own_dataset import parts_rows, write_rows

from tools.events import EventLog
from tools.stores.disk_space import DiskFull
from tools.stores.job_store import JobStore

BIG = "x" * 300_000  # more than the pages a nearly full database or log has in hand


@pytest.fixture()
def tiny_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(folder)],
                             check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root with the mount capability): "
                    f"{mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 16384)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def test_job_store_and_event_log_on_a_full_disk(tiny_disk):
    store = JobStore(tiny_disk / "ftagent.sqlite")
    store.create("job-1", "fine-tune SmolLM2 on soil", {"docs_path": "/data"}, owner="ann")
    log = EventLog(tiny_disk / "jobs" / "job-1" / "events.jsonl")
    log.emit("intake", "phase", "understood")
    filler = fill(tiny_disk)

    with pytest.raises(DiskFull, match=r"disk full writing .*ftagent\.sqlite .*what was written before is kept"):
        store.create("job-2", "fine-tune SmolLM2 on rocks", {"notes": BIG})
    with pytest.raises(DiskFull, match=r"ftagent\.sqlite"):
        store.update("job-1", outcome=BIG)
    with pytest.raises(DiskFull, match=r"disk full writing .*events\.jsonl") as raised:
        log.emit("trainer", "decision", BIG)
    assert raised.value.errno == errno.ENOSPC and isinstance(raised.value, OSError)

    # what was written before is readable on the full disk, also by a store opened now (read-only)
    assert [r.job_id for r in store.list()] == ["job-1"] and store.get("job-1").outcome is None
    gc.collect()  # no connection of the writes above keeps SQLite's WAL index open
    again = JobStore(tiny_disk / "ftagent.sqlite")
    assert again.get("job-1").owner == "ann"
    with pytest.raises(DiskFull, match=r"ftagent\.sqlite"):
        again.update("job-1", status="running")
    assert [e["message"] for e in log.read()] == ["understood"]

    os.remove(filler)
    store.update("job-1", status="failed")
    log.emit("service", "phase", "after")
    assert store.get("job-1").status == "failed"
    assert [e["message"] for e in log.read()] == ["understood", "after"]  # a torn part is skipped


def test_cli_says_disk_full_in_one_line(tiny_disk, tiny_model_dir, tmp_path, monkeypatch, capsys):
    from agent.cli import EXIT_ENVIRONMENT, main

    home = tiny_disk / "home"
    monkeypatch.setenv("FTAGENT_HOME", str(home))
    monkeypatch.delenv("FTAGENT_CONFIG", raising=False)
    dataset = write_rows(tmp_path / "own.jsonl", parts_rows())
    submit = ["submit", "fine-tune a model on our parts list", "--dataset", str(dataset), "--model",
              str(tiny_model_dir)]
    assert main(submit) == 0
    job_id = capsys.readouterr().out.strip().splitlines()[-1]
    gc.collect()
    with closing(sqlite3.connect(home / "ftagent.sqlite")) as quiet:  # as after the last writer closed:
        quiet.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no WAL space in hand for the next write
    fill(tiny_disk)
    code = main(submit)
    out = capsys.readouterr().out
    assert code == EXIT_ENVIRONMENT, out
    assert "disk full writing" in out and "Traceback" not in out and "OperationalError" not in out
    assert main(["status", job_id]) == 0  # still readable on the full disk
    assert "queued" in capsys.readouterr().out
