"""`ftagent promote / rollback / delete / serve` on a real registry with real folders in a temporary home."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.cli import EXIT_BAD_INPUT, EXIT_NOT_FOUND, main
from tools.stores.model_registry import ModelRegistry, ModelVersion
from tools.stores.sql_table import now_iso

FAMILY = "ft-tiny-qec"
OTHER = "ft-tiny-botany"


def _register(home: Path, family: str, number: int, status: str, gates_passed: bool = True) -> ModelVersion:
    """A registered version with its folder (adapter config and card) under <home>/models."""
    name = f"{family}-v{number}-20250101"
    folder = home / "models" / name
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "MODEL_CARD.md").write_text(f"# {name}\n")
    version = ModelVersion(
        name=name, family=family, version=number, base_model="tiny", base_model_path=str(home / "base"),
        subject="quantum error correction", status=status, gates_passed=gates_passed,
        adapter_path=str(folder / "adapter"), merged_path=None, card_path=str(folder / "MODEL_CARD.md"),
        dataset_hash="abc", job_id=f"job-{family}-{number}", round=1, created_at=now_iso(), sources=[],
        config={}, metrics={"base": {"answer_nll": 2.0}, "tuned": {"answer_nll": 1.5}})
    return _registry(home).register(version)


def _registry(home: Path) -> ModelRegistry:
    return ModelRegistry(home / "ftagent.sqlite")


def _statuses(home: Path) -> dict[str, str]:
    return {v.name: v.status for v in _registry(home).list()}


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, " ".join(capsys.readouterr().out.split())  # undo the console's line wrapping


def test_promote_refuses_a_version_that_failed_its_gates_unless_forced(home: Path, capsys) -> None:
    rejected = _register(home, FAMILY, 1, "rejected", gates_passed=False)
    code, out = _run(capsys, "promote", rejected.name)
    assert code == EXIT_BAD_INPUT
    assert "failed its quality gates" in out and "force" in out
    assert _statuses(home)[rejected.name] == "rejected"
    code, out = _run(capsys, "promote", rejected.name, "--force")
    assert code == 0 and f"{rejected.name} is now in production" in out
    assert _statuses(home)[rejected.name] == "production"


def test_promotion_archives_the_previous_production_of_the_same_family_only(home: Path, capsys) -> None:
    first = _register(home, FAMILY, 1, "production")
    second = _register(home, FAMILY, 2, "staging")
    other = _register(home, OTHER, 1, "production")
    code, _ = _run(capsys, "promote", second.name)
    assert code == 0
    assert _statuses(home) == {first.name: "archived", second.name: "production", other.name: "production"}


def test_promote_unknown_model_is_not_found(home: Path, capsys) -> None:
    _register(home, FAMILY, 1, "staging")
    code, out = _run(capsys, "promote", "ft-nope-v1")
    assert code == EXIT_NOT_FOUND and f"{FAMILY}-v1-20250101" in out  # the message lists known models


def test_rollback_restores_the_previous_version_step_by_step(home: Path, capsys) -> None:
    versions = [_register(home, FAMILY, n, "staging") for n in (1, 2, 3)]
    for version in versions:
        assert _run(capsys, "promote", version.name)[0] == 0
    code, out = _run(capsys, "rollback", FAMILY)
    assert code == 0 and f"{versions[1].name} is back in production" in out
    assert _statuses(home) == {versions[0].name: "archived", versions[1].name: "production",
                               versions[2].name: "archived"}
    code, _ = _run(capsys, "rollback", versions[1].name)  # a model name means its family
    assert code == 0 and _statuses(home)[versions[0].name] == "production"
    code, out = _run(capsys, "rollback", FAMILY)
    assert code == EXIT_BAD_INPUT and "no earlier archived version" in out
    assert _statuses(home)[versions[0].name] == "production"


def test_rollback_needs_a_production_version_and_a_known_family(home: Path, capsys) -> None:
    _register(home, FAMILY, 1, "staging")
    code, out = _run(capsys, "rollback", FAMILY)
    assert code == EXIT_BAD_INPUT and "no production version" in out
    code, out = _run(capsys, "rollback", "ft-unknown")
    assert code == EXIT_NOT_FOUND and FAMILY in out


def test_delete_removes_the_row_and_its_folder(home: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the models table must not wrap names
    kept = _register(home, FAMILY, 1, "production")
    gone = _register(home, FAMILY, 2, "staging")
    code, out = _run(capsys, "delete", gone.name)
    assert code == 0 and f"deleted {gone.name}" in out
    assert not (home / "models" / gone.name).exists()
    assert (home / "models" / kept.name / "adapter").is_dir()
    code, out = _run(capsys, "models")
    assert kept.name in out and gone.name not in out


def test_delete_refuses_production_unless_forced(home: Path, capsys) -> None:
    production = _register(home, FAMILY, 1, "production")
    code, out = _run(capsys, "delete", production.name)
    assert code == EXIT_BAD_INPUT and "in production" in out
    assert (home / "models" / production.name).is_dir() and production.name in _statuses(home)
    code, _ = _run(capsys, "delete", production.name, "--force")
    assert code == 0 and _statuses(home) == {}
    assert not (home / "models" / production.name).exists()


def test_delete_leaves_files_outside_the_models_folder(home: Path, tmp_path: Path, capsys) -> None:
    version = _register(home, FAMILY, 1, "staging")
    outside = tmp_path / "elsewhere" / "adapter"
    outside.mkdir(parents=True)
    with _registry(home)._connect() as connection:
        connection.execute("UPDATE model_versions SET name = '../../elsewhere' WHERE name = ?", (version.name,))
    assert _run(capsys, "delete", "../../elsewhere")[0] == 0
    assert outside.is_dir() and _statuses(home) == {}


@pytest.mark.parametrize("argv", [["serve"], ["serve", "--model", "ft-nope-v1"]])
def test_serve_with_nothing_to_serve_says_so(home: Path, capsys, argv: list[str]) -> None:
    _register(home, FAMILY, 1, "rejected", gates_passed=False)
    code, out = _run(capsys, *argv)
    assert code == EXIT_NOT_FOUND
    assert ("nothing to serve" in out) if len(argv) == 1 else ("no model named 'ft-nope-v1'" in out)


@pytest.mark.parametrize(("option", "problem"), [
    ("ft-tiny-qec", "expected NAME=VERSION_A[:WEIGHT],VERSION_B[:WEIGHT]"),
    ("ft-tiny-qec=a:1", "name two or more versions"),
    ("ft-tiny-qec=a:1,b", "give every version a weight, or none"),
    ("ft-tiny-qec=a:1,b:heavy", "the weight 'heavy' of b is not a number"),
    ("ft-tiny-qec=a:1,b:-2", "the weight of b must be a positive number"),
    ("ft-tiny-qec=a,a", "a is named twice"),
    ("ft-tiny-qec=a,,b", "an empty version name"),
])
def test_serve_refuses_a_malformed_ab_split(home: Path, capsys, option: str, problem: str) -> None:
    _register(home, FAMILY, 1, "production")
    code, out = _run(capsys, "serve", "--ab", option)
    assert code == EXIT_BAD_INPUT and problem in out


@pytest.mark.parametrize(("argv", "problem"), [
    (["--ab", "x=a,b", "--ab", "x=c,d"], "names the split 'x' twice"),
    (["--max-batch", "0"], "--max-batch must be 1 (no batching) or more"),
    (["--reload-interval", "-1"], "--reload-interval must be 0 (off)"),
])
def test_serve_refuses_bad_options(home: Path, capsys, argv: list[str], problem: str) -> None:
    code, out = _run(capsys, "serve", *argv)
    assert code == EXIT_BAD_INPUT and problem in out


def test_serve_ab_split_with_an_unknown_version_lists_the_served_ones(home: Path, capsys) -> None:
    first = _register(home, FAMILY, 1, "production")
    second = _register(home, FAMILY, 2, "staging")
    _register(home, FAMILY, 3, "rejected", gates_passed=False)
    code, out = _run(capsys, "serve", "--ab", f"{FAMILY}={first.name},{FAMILY}-v9")
    assert code == EXIT_NOT_FOUND
    assert f"{FAMILY}-v9 is not served" in out and f"served versions: tiny, {first.name}, {second.name}" in out


@pytest.mark.parametrize(("argv", "precision"), [([], "auto"), (["--int8"], "int8")])
def test_serve_int8_asks_the_server_for_int8_weights(home: Path, capsys, monkeypatch, argv: list[str],
                                                     precision: str) -> None:
    from tools.serving import from_registry
    from tools.serving.server import ServingError

    asked: dict = {}

    def capture(*args, **options):
        asked.update(options)
        raise ServingError(404, "stopped by the test", "model_not_found")

    monkeypatch.setenv("FTAGENT_PRECISION", "auto")
    monkeypatch.setattr(from_registry, "app_for_registry", capture)
    code, out = _run(capsys, "serve", *argv)
    assert code == EXIT_NOT_FOUND and "stopped by the test" in out
    assert asked["precision"] == precision


def test_ask_int8_and_int4_answer_with_the_quantized_merged_model(home: Path, capsys, monkeypatch, tiny_model_dir: Path,
                                                    tmp_path: Path) -> None:
    """`ftagent ask MODEL Q --int8` loads the version merged into int8 layers and prints its answer; without
    the flag the setting's precision is used."""
    from tiny_model import random_adapter

    from tools.models import loading

    version = _register(home, FAMILY, 1, "production")  # its base is <home>/base, its adapter a stand-in
    (home / "base").symlink_to(tiny_model_dir, target_is_directory=True)
    shutil.copytree(random_adapter(tiny_model_dir, tmp_path / "adapter", seed=5), version.adapter_path,
                    dirs_exist_ok=True)
    precisions: list[str] = []

    def spy(*args, **options):
        precisions.append(options["precision"])
        return real(*args, **options)

    real = loading.load_for_inference
    monkeypatch.setenv("FTAGENT_PRECISION", "fp32")
    monkeypatch.setattr(loading, "load_for_inference", spy)
    for argv in (["--int8"], ["--int4"], []):
        code, out = _run(capsys, "ask", version.name, "What is a stabilizer code?", "--max-new-tokens", "6", *argv)
        assert code == 0 and out
    assert precisions == ["int8", "int4", "fp32"]
