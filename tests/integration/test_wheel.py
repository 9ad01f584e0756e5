"""The package as a user installs it: a wheel built from the checkout and installed without -e
into a fresh venv finds its prompts, general evaluation sets and demo corpus, and
`ftagent run --demo` runs a job with them (on the tiny model, a few steps). Nothing is read from
the checkout: the commands run in another folder."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tools.evaluation.scoring import general_qa, general_texts

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("agent", "graphs", "tools", "pyproject.toml", "README.md")


def _run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "FTAGENT_HOME", "FTAGENT_CONFIG")
    }
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; the dependencies come from this interpreter's
    site-packages, added by a .pth line after the wheel is installed (so pip never sees, nor
    uninstalls, this environment's editable ftagent)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:  # a copy, so the build writes nothing into the checkout
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(REPO / name, source / name)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        cwd=root,
    )
    wheel = next((root / "dist").glob("ftagent-*.whl"))
    venv = root / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], cwd=root)
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        cwd=root,
    )
    packages = Path(
        _run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            cwd=root,
        ).stdout.strip()
    )
    (packages / "ftagent_test_dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    return venv


def test_the_installed_wheel_finds_its_package_data(installed, tmp_path):
    probe = (
        "import json, tools, agent\n"
        "from tools.llm.prompt_files import render_prompt\n"
        "from tools.evaluation.scoring import general_qa, general_texts\n"
        "from tools.package_data import DEMO_CORPUS\n"
        "print(json.dumps({'tools': tools.__file__, 'agent': agent.__file__,\n"
        "    'prompt': render_prompt('system_subject_expert', subject='soil science'),\n"
        "    'general_texts': len(general_texts(60)),\n"
        "    'general_qa': len(general_qa('system', 40)),\n"
        "    'demo': sorted(p.name for p in DEMO_CORPUS.iterdir())}))\n"
    )
    found = json.loads(_run([str(installed / "bin" / "python"), "-c", probe], cwd=tmp_path).stdout)
    assert Path(found["tools"]).is_relative_to(installed) and Path(found["agent"]).is_relative_to(
        installed
    )
    assert "soil science" in found["prompt"]
    # the same sets as the checkout's (general_qa without replay: the held-out questions only)
    assert found["general_texts"] == len(general_texts(60)) == 60
    assert found["general_qa"] == len(general_qa("system", 40)) > 0
    assert len(found["demo"]) == 15 and "threshold-theorem.pdf" in found["demo"]


@pytest.mark.slow  # minutes on 2 cores: .ci/run runs it after the default suite
def test_the_installed_wheel_runs_the_demo_job(installed, tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    result = _run(
        [
            str(installed / "bin" / "ftagent"),
            "--home",
            str(home),
            "run",
            "fine-tune on quantum error correction",
            "--demo",
            "--model",
            str(tiny_model_dir),
            "--max-steps",
            "2",
            "--max-rounds",
            "0",
            "--set",
            "evaluation.generate_limit=2",
            "--set",
            "evaluation.max_new_tokens=8",
            "--set",
            "evaluation.general_texts=3",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    (job,) = (home / "jobs").iterdir()
    events = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    phases = {event.get("phase") for event in events}
    assert {"researcher", "curator", "generator", "trainer", "evaluator"} <= phases, (
        phases,
        result.stdout,
    )
    assert (job / "report.md").is_file()
