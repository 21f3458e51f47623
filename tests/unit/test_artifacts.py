"""The artifact cache: reuse, retraining on config or version change, corruption, interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nuwa_lab.config import make_config
from nuwa_lab.recipes import cache as artifacts
from nuwa_lab.recipes.cache import ArtifactError, artifact_dir, get_or_train, load_meta
from nuwa_lab.train.files import atomic_write_bytes, atomic_write_json, atomic_write_text

CALLS: list[str] = []


def _train_linear(cfg, *, workdir, progress):
    """A stand-in for a real training run: deterministic by cfg.probe.channels, counts its calls."""
    CALLS.append(str(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.probe.channels)
    return nn.Linear(cfg.probe.channels, 3), {"final_loss": 0.5}


def _build_linear(cfg):
    return nn.Linear(cfg.probe.channels, 3)


@pytest.fixture
def kind():
    CALLS.clear()
    artifacts.register_artifact("test_linear", _train_linear, ("probe",), build_fn=_build_linear)
    yield "test_linear"
    artifacts._REGISTRY.pop("test_linear", None)


@pytest.fixture
def cfg():
    return make_config("smoke", device="cpu")


def test_second_call_loads_instead_of_training(kind, cfg, tmp_path):
    first = get_or_train(kind, cfg, root=tmp_path, progress=False)
    second = get_or_train(kind, cfg, root=tmp_path, progress=False)
    assert len(CALLS) == 1
    assert torch.equal(first.weight, second.weight) and not second.training
    folder = artifact_dir(kind, cfg, root=tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("test_linear-")
    meta = load_meta(kind, cfg, root=tmp_path)
    assert meta["metrics"] == {"final_loss": 0.5} and meta["sections"]["probe"]["channels"] == 8


def test_config_change_of_a_dependency_retrains_and_others_do_not(kind, cfg, tmp_path):
    get_or_train(kind, cfg, root=tmp_path, progress=False)
    unrelated = make_config("smoke", device="cpu", **{"model.dim": 64, "seed": 7})
    get_or_train(kind, unrelated, root=tmp_path, progress=False)
    assert len(CALLS) == 1  # "model" and "seed" are not sections of this kind
    changed = make_config("smoke", device="cpu", **{"probe.channels": 4})
    model = get_or_train(kind, changed, root=tmp_path, progress=False)
    assert len(CALLS) == 2 and model.in_features == 4
    assert artifact_dir(kind, changed, root=tmp_path) != artifact_dir(kind, cfg, root=tmp_path)
    get_or_train(kind, cfg, root=tmp_path, progress=False)  # the old one is still there
    assert len(CALLS) == 2


def test_code_version_change_retrains(kind, cfg, tmp_path):
    get_or_train(kind, cfg, root=tmp_path, progress=False)
    artifacts.register_artifact(
        kind, _train_linear, ("probe",), build_fn=_build_linear, version="2"
    )
    get_or_train(kind, cfg, root=tmp_path, progress=False)
    assert len(CALLS) == 2


def _write_module(folder, body):
    (folder / "nuwa_lab_codever_demo.py").write_text(body)
    artifacts.code_version.cache_clear()


def test_code_version_hashes_what_the_code_does_not_how_it_is_written(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "nuwa_lab_codever_demo"
    _write_module(tmp_path, "def f(x):\n    return x + 1\n")
    original = artifacts.code_version(name)
    _write_module(
        tmp_path, '"""Docs."""\n\n\ndef f( x ):  # a comment\n    """More."""\n    return (x + 1)\n'
    )
    assert artifacts.code_version(name) == original  # comments, docstrings, layout: same
    _write_module(tmp_path, "def f(x):\n    return x + 2\n")
    assert artifacts.code_version(name) != original  # what it computes changed
    artifacts.code_version.cache_clear()
    with pytest.raises(ValueError, match="does not exist"):
        artifacts.code_version("nuwa_lab_no_such_module")


def test_unhashed_modules_of_a_package_do_not_count(tmp_path, monkeypatch):
    """Editing the sampler (`UNHASHED_MODULES`) must not retrain every model; a layer must."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "nuwa_lab_codever_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layer.py").write_text("def f(x):\n    return x + 1\n")
    (package / "sampler.py").write_text("def draw():\n    return 1\n")
    monkeypatch.setattr(artifacts, "UNHASHED_MODULES", (f"{package.name}.sampler",))
    artifacts.code_version.cache_clear()
    original = artifacts.code_version(package.name)
    (package / "sampler.py").write_text("def draw():\n    return 2\n")
    artifacts.code_version.cache_clear()
    assert artifacts.code_version(package.name) == original  # not what training produces
    (package / "layer.py").write_text("def f(x):\n    return x + 2\n")
    artifacts.code_version.cache_clear()
    assert artifacts.code_version(package.name) != original
    artifacts.code_version.cache_clear()


def test_the_sampler_is_left_out_of_the_models_code_hash():
    files = {p.name for p in artifacts.source_files("nuwa_lab.model")}
    assert "nuwa.py" in files and "sample.py" not in files


def test_editing_the_registered_code_retrains(kind, cfg, tmp_path, monkeypatch):
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    monkeypatch.syspath_prepend(str(code_dir))
    _write_module(code_dir, "STEPS = 1\n")
    register = dict(build_fn=_build_linear, code=("nuwa_lab_codever_demo",))
    artifacts.register_artifact(kind, _train_linear, ("probe",), **register)
    root = tmp_path / "artifacts"
    get_or_train(kind, cfg, root=root, progress=False)
    get_or_train(kind, cfg, root=root, progress=False)
    assert len(CALLS) == 1
    first = artifact_dir(kind, cfg, root=root)
    _write_module(code_dir, "STEPS = 2\n")
    get_or_train(kind, cfg, root=root, progress=False)
    assert len(CALLS) == 2 and artifact_dir(kind, cfg, root=root) != first
    assert load_meta(kind, cfg, root=root)["version"].startswith("1+")


def test_the_real_artifacts_hash_their_code():
    from nuwa_lab.recipes.cache import _kind

    for name in ("vqgan", "probe", "nuwa", "nuwa_finetuned_t2i"):
        assert "+" in _kind(name).version and _kind(name).code, name
    assert "nuwa_lab.tokenizer" in _kind("nuwa").code  # the tokens the model learns from


def test_truncated_weights_give_a_clear_error_and_retrain_fixes_it(kind, cfg, tmp_path):
    get_or_train(kind, cfg, root=tmp_path, progress=False)
    path = artifact_dir(kind, cfg, root=tmp_path) / artifacts.MODEL_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError) as info:
        get_or_train(kind, cfg, root=tmp_path, progress=False)
    message = str(info.value)
    assert str(path) in message and "retrain=True" in message and "delete the folder" in message
    model = get_or_train(kind, cfg, root=tmp_path, progress=False, retrain=True)
    assert len(CALLS) == 2 and isinstance(model, nn.Linear)
    get_or_train(kind, cfg, root=tmp_path, progress=False)  # loads cleanly again
    assert len(CALLS) == 2


def test_garbage_weights_and_corrupt_meta_give_clear_errors(kind, cfg, tmp_path):
    get_or_train(kind, cfg, root=tmp_path, progress=False)
    folder = artifact_dir(kind, cfg, root=tmp_path)
    meta = load_meta(kind, cfg, root=tmp_path)
    (folder / artifacts.MODEL_FILE).write_bytes(b"not a torch file at all")
    with pytest.raises(ArtifactError, match=r"model\.pt does not match its hash"):
        get_or_train(kind, cfg, root=tmp_path, progress=False)
    (folder / artifacts.META_FILE).write_text('{"kind": "test_li')  # truncated JSON
    with pytest.raises(ArtifactError, match=r"meta\.json does not match its hash.*retrain=True"):
        get_or_train(kind, cfg, root=tmp_path, progress=False)
    # garbage written with its hash (a bug, not damage) is named too, never loaded
    atomic_write_text(folder / artifacts.META_FILE, '{"kind": "test_li', sha256=True)
    with pytest.raises(ArtifactError, match=r"meta\.json is corrupt.*retrain=True"):
        get_or_train(kind, cfg, root=tmp_path, progress=False)
    atomic_write_json(folder / artifacts.META_FILE, meta, sha256=True)
    atomic_write_bytes(folder / artifacts.MODEL_FILE, b"not a torch file at all", sha256=True)
    with pytest.raises(ArtifactError, match=r"cannot read .*model\.pt.*retrain=True"):
        get_or_train(kind, cfg, root=tmp_path, progress=False)


def test_weights_that_no_longer_fit_the_code_say_so(kind, cfg, tmp_path):
    get_or_train(kind, cfg, root=tmp_path, progress=False)
    artifacts.register_artifact(
        kind,
        _train_linear,
        ("probe",),
        build_fn=lambda c: nn.Linear(5, 3),  # same version
    )
    with pytest.raises(ArtifactError, match="do not fit the current 'test_linear' code"):
        get_or_train(kind, cfg, root=tmp_path, progress=False)


def test_an_interrupted_training_is_not_taken_for_a_finished_artifact(kind, cfg, tmp_path):
    def crash(cfg, *, workdir, progress):
        workdir.mkdir(parents=True)
        (workdir / "checkpoint.pt").write_bytes(b"partial")
        raise KeyboardInterrupt

    artifacts.register_artifact(kind, crash, ("probe",), build_fn=_build_linear)
    with pytest.raises(KeyboardInterrupt):
        get_or_train(kind, cfg, root=tmp_path, progress=False)
    folder = artifact_dir(kind, cfg, root=tmp_path)
    assert not (folder / artifacts.META_FILE).exists()
    assert (folder / "train" / "checkpoint.pt").exists()  # kept for the next run to resume
    artifacts.register_artifact(kind, _train_linear, ("probe",), build_fn=_build_linear)
    get_or_train(kind, cfg, root=tmp_path, progress=False)
    assert CALLS == [str(folder / "train")]
    assert json.loads((folder / artifacts.META_FILE).read_text())["kind"] == kind


def test_without_build_fn_the_whole_module_is_cached(cfg, tmp_path):
    artifacts.register_artifact("test_pickled", _train_linear, ("probe",))
    try:
        first = get_or_train("test_pickled", cfg, root=tmp_path, progress=False)
        second = get_or_train("test_pickled", cfg, root=tmp_path, progress=False)
        assert torch.equal(first.weight, second.weight) and first is not second
    finally:
        artifacts._REGISTRY.pop("test_pickled", None)


def test_root_comes_from_the_environment(kind, cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path / "cache"))
    assert artifact_dir(kind, cfg).parent == tmp_path / "cache"
    monkeypatch.delenv("NUWA_LAB_ARTIFACTS")
    assert artifacts.default_root().parts[-2:] == ("data", "artifacts")


def test_unknown_kind_lists_the_registered_ones(kind, cfg):
    with pytest.raises(ValueError, match="unknown artifact kind 'nope'.*test_linear"):
        get_or_train("nope", cfg)
    with pytest.raises(TypeError, match="not the string"):
        artifacts.register_artifact("bad", _train_linear, "probe")


def test_a_kind_may_depend_on_single_fields_of_a_section(cfg, tmp_path):
    artifacts.register_artifact(
        "test_field", _train_linear, ("probe.channels",), build_fn=_build_linear
    )
    try:
        CALLS.clear()
        get_or_train("test_field", cfg, root=tmp_path, progress=False)
        other_steps = make_config("smoke", device="cpu", **{"probe.steps": 99})
        get_or_train("test_field", other_steps, root=tmp_path, progress=False)
        assert len(CALLS) == 1  # probe.steps is not a dependency
        wider = make_config("smoke", device="cpu", **{"probe.channels": 4})
        get_or_train("test_field", wider, root=tmp_path, progress=False)
        assert len(CALLS) == 2
        with pytest.raises(ValueError, match="config field 'probe.nope'"):
            artifacts.register_artifact("test_field", _train_linear, ("probe.nope",))
            artifact_dir("test_field", cfg, root=tmp_path)
    finally:
        artifacts._REGISTRY.pop("test_field", None)


def test_atomic_writes_leave_files_readable_as_a_plain_open_would(tmp_path):
    import os

    from nuwa_lab.train.files import atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.md", "# hello\n")
        assert path.read_text() == "# hello\n"
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        assert not list(tmp_path.glob(".report.md.*"))  # no temporary file left behind
    finally:
        os.umask(mask)


def test_the_default_root_is_the_checkouts_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("NUWA_LAB_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)  # wherever a notebook runs from
    repo = Path(__file__).resolve().parents[2]
    assert artifacts.default_root() == repo / "data" / "artifacts"
