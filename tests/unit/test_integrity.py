"""Fault tests: every kind of stored file, damaged, is refused with its name and the fix, and the
fix works; undamaged files still load bit for bit (nuwa_lab.train.files).

The kinds: artifact weights (`model.pt`) and meta (`meta.json`), training checkpoints, the
pretraining token cache and the sweep runner's run records (`run.json`, `metrics.json`). The
damages: a flipped bit and 64 flipped bytes mid-file, a truncation, a deleted hash file (as a file
written before files carried hashes looks).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nuwa_lab.config import TrainConfig, make_config
from nuwa_lab.lab.experiment import collect
from nuwa_lab.lab.experiment import runner as runner_module
from nuwa_lab.lab.experiment.runner import (
    METRICS_FILE,
    RUN_FILE,
    execute_run,
    read_json,
    stale_reason,
)
from nuwa_lab.recipes import cache as artifacts
from nuwa_lab.recipes import pretrain
from nuwa_lab.recipes.cache import ArtifactError, artifact_dir, get_or_train, load_meta
from nuwa_lab.train.checkpoint import CheckpointError, load_checkpoint
from nuwa_lab.train.files import (
    IntegrityError,
    atomic_torch_save,
    atomic_write_json,
    hash_path,
    load_torch_verified,
    read_json_verified,
    read_verified,
)
from nuwa_lab.train.loop import NonFiniteLossError, SimpleTrainable, step_generator, train

# ---------------------------------------------------------------- damages


def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def flip_64_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 - 32
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete_hash(path: Path) -> None:
    hash_path(path).unlink()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "flipped_bit": flip_bit,
    "flipped_64_bytes": flip_64_bytes,
    "truncated": truncate,
    "hash_deleted": delete_hash,
}
damages = pytest.mark.parametrize("damage", list(DAMAGES))


def problem_of(damage: str) -> str:
    """What the message says is wrong, per damage."""
    return "has no hash file" if damage == "hash_deleted" else "does not match its hash"


# ---------------------------------------------------------------- the mechanism


@damages
def test_a_damaged_file_fails_its_hash_check_and_an_intact_one_reads_back_exactly(
    tmp_path: Path, damage: str
) -> None:
    obj = {"w": torch.randn(64, 64, generator=torch.Generator().manual_seed(0)), "step": 3}
    path = atomic_torch_save(tmp_path / "state.pt", obj, sha256=True)
    line = hash_path(path).read_text()  # sha256sum's format: `sha256sum -c state.pt.sha256`
    assert line == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  state.pt\n"
    back = load_torch_verified(path)
    assert torch.equal(back["w"], obj["w"]) and back["step"] == 3
    DAMAGES[damage](path)
    with pytest.raises(IntegrityError, match=problem_of(damage)) as info:
        read_verified(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_hashed_json_reads_back_and_a_rewrite_without_its_hash_is_caught(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "meta.json", {"a": [1, 2]}, sha256=True)
    assert read_json_verified(path) == {"a": [1, 2]}
    path.write_text('{"a": [1, 3]}\n')  # valid JSON, other content: only the hash can tell
    with pytest.raises(IntegrityError, match="does not match its hash"):
        read_json_verified(path)


# ---------------------------------------------------------------- artifacts


def _train_linear(cfg, *, workdir, progress):
    torch.manual_seed(cfg.probe.channels)
    return nn.Linear(cfg.probe.channels, 3), {"final_loss": 0.5}


@pytest.fixture
def kind():
    artifacts.register_artifact(
        "test_integrity", _train_linear, ("probe",), build_fn=lambda c: nn.Linear(8, 3)
    )
    yield "test_integrity"
    artifacts._REGISTRY.pop("test_integrity", None)


@pytest.fixture
def cfg():
    return make_config("smoke", device="cpu")


@damages
@pytest.mark.parametrize("name", [artifacts.MODEL_FILE, artifacts.META_FILE])
def test_a_damaged_artifact_names_the_file_and_retrain_fixes_it(
    kind: str, cfg, tmp_path: Path, damage: str, name: str
) -> None:
    trained = get_or_train(kind, cfg, root=tmp_path, progress=False)
    folder = artifact_dir(kind, cfg, root=tmp_path)
    path = folder / name
    DAMAGES[damage](path)
    with pytest.raises(ArtifactError) as info:
        get_or_train(kind, cfg, root=tmp_path, progress=False)
    message = str(info.value)
    assert str(path) in message and problem_of(damage) in message
    assert f"delete the folder {folder}" in message
    assert f"get_or_train({kind!r}, cfg, retrain=True)" in message
    # the fix it names works, and the retrained weights equal the first ones bit for bit
    retrained = get_or_train(kind, cfg, root=tmp_path, progress=False, retrain=True)
    loaded = get_or_train(kind, cfg, root=tmp_path, progress=False)
    assert torch.equal(retrained.weight, trained.weight)
    assert torch.equal(loaded.weight, trained.weight) and torch.equal(loaded.bias, trained.bias)
    assert load_meta(kind, cfg, root=tmp_path)["metrics"] == {"final_loss": 0.5}


def test_an_intact_artifact_loads_exactly_what_was_trained(kind: str, cfg, tmp_path: Path) -> None:
    trained = get_or_train(kind, cfg, root=tmp_path, progress=False)
    folder = artifact_dir(kind, cfg, root=tmp_path)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "meta.json",
        "meta.json.sha256",
        "model.pt",
        "model.pt.sha256",
    ]
    loaded = get_or_train(kind, cfg, root=tmp_path, progress=False)
    plain = torch.load(folder / "model.pt", weights_only=True)["state_dict"]  # no hash involved
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value) and torch.equal(plain[key], value)


# ---------------------------------------------------------------- checkpoints

CFG = TrainConfig(steps=8, batch_size=4, lr=1e-2, warmup=1, log_every=1, ckpt_every=3)


def linear_trainable(cfg: TrainConfig = CFG, nan_at: int | None = None) -> SimpleTrainable:
    """A 4 -> 1 regression; its loss turns NaN at step `nan_at`."""
    torch.manual_seed(0)

    def batch(step: int, rank: int, world_size: int):
        x = torch.randn(cfg.batch_size, 4, generator=step_generator(0, step))
        return {"x": x, "y": x.sum(1, keepdim=True), "nan": step == nan_at}

    def loss(model: nn.Module, b):
        value = F.mse_loss(model(b["x"]), b["y"])
        return value * math.nan if b["nan"] else value

    return SimpleTrainable(model=nn.Linear(4, 1), batch_fn=batch, loss_fn=loss, cfg=cfg)


def run(run_dir: Path, **kwargs):
    trainable = linear_trainable(nan_at=kwargs.pop("nan_at", None))
    result = train(trainable, CFG, run_dir=run_dir, device="cpu", progress=False, **kwargs)
    return trainable.model, result


@damages
def test_resume_refuses_a_damaged_checkpoint_and_starting_over_works(
    tmp_path: Path, damage: str
) -> None:
    run(tmp_path, max_steps=3)  # interrupted after the checkpoint of step 3
    path = tmp_path / "checkpoint.pt"
    DAMAGES[damage](path)
    with pytest.raises(CheckpointError) as info:
        run(tmp_path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} {problem_of(damage)}")
    assert f"delete {path} or pass resume=False to train()" in message
    # both fixes it names start from step 0 and finish
    _, fresh = run(tmp_path, resume=False)
    assert fresh.resumed_from == 0 and fresh.step == CFG.steps
    DAMAGES[damage](path)
    path.unlink()
    _, again = run(tmp_path)
    assert again.resumed_from == 0 and load_checkpoint(path)["step"] == CFG.steps


def test_an_intact_checkpoint_resumes_bit_for_bit(tmp_path: Path) -> None:
    whole, expected = run(tmp_path / "whole")
    run(tmp_path / "parts", max_steps=3)
    parts, resumed = run(tmp_path / "parts")
    assert resumed.resumed_from == 3 and resumed.history == expected.history
    assert torch.equal(parts.weight, whole.weight) and torch.equal(parts.bias, whole.bias)


def test_nan_says_which_checkpoint_it_kept_and_why_it_can_be_trusted(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError) as info:
        run(tmp_path, nan_at=7)
    message = str(info.value)
    assert f"{tmp_path / 'checkpoint.pt'} (step 6) is kept unchanged" in message
    assert "this run wrote it after checking that every parameter was finite" in message
    assert "last good" not in message and "resume=False" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6
    # resumed from that verified checkpoint, it stops again before writing another one
    with pytest.raises(NonFiniteLossError) as info:
        run(tmp_path, nan_at=7)
    assert "(step 6) is kept unchanged (its hash was verified when this run resumed" in str(
        info.value
    )
    # the fix of the cause (no NaN): resuming finishes from step 6
    _, result = run(tmp_path)
    assert result.resumed_from == 6 and result.step == CFG.steps


STOP: dict[str, int | None] = {"max_steps": None, "nan_at": None}
RESUMED: list[int] = []


class Interrupted(Exception):
    pass


def _train_with_loop(cfg, *, workdir, progress):
    """An artifact trained by nuwa_lab.train.loop in its workdir; STOP interrupts it."""
    trainable = linear_trainable(nan_at=STOP["nan_at"])
    result = train(
        trainable, CFG, run_dir=workdir, device="cpu", progress=False, max_steps=STOP["max_steps"]
    )
    RESUMED.append(result.resumed_from)
    if result.step < CFG.steps:
        raise Interrupted
    return trainable.model, {}


@pytest.fixture
def looped():
    STOP.update(max_steps=None, nan_at=None)
    RESUMED.clear()
    artifacts.register_artifact(
        "test_looped", _train_with_loop, ("probe",), build_fn=lambda c: nn.Linear(4, 1)
    )
    yield "test_looped"
    artifacts._REGISTRY.pop("test_looped", None)


def test_through_get_or_train_a_damaged_checkpoint_names_retrain(
    looped: str, cfg, tmp_path: Path
) -> None:
    STOP["max_steps"] = 3
    with pytest.raises(Interrupted):
        get_or_train(looped, cfg, root=tmp_path, progress=False)
    folder = artifact_dir(looped, cfg, root=tmp_path)
    path = folder / "train" / "checkpoint.pt"
    flip_bit(path)
    STOP["max_steps"] = None
    with pytest.raises(CheckpointError) as info:
        get_or_train(looped, cfg, root=tmp_path, progress=False)
    message = str(info.value)
    assert str(path) in message and "does not match its hash" in message
    assert f"get_or_train({looped!r}, cfg, retrain=True)" in message
    assert "resume=False" not in message  # get_or_train takes no resume=
    model = get_or_train(looped, cfg, root=tmp_path, progress=False, retrain=True)
    assert RESUMED == [0, 0] and isinstance(model, nn.Linear)  # started over from step 0


def test_through_get_or_train_nan_says_how_to_go_on_with_get_or_train(
    looped: str, cfg, tmp_path: Path
) -> None:
    STOP["nan_at"] = 4
    with pytest.raises(NonFiniteLossError) as info:
        get_or_train(looped, cfg, root=tmp_path, progress=False)
    message = str(info.value)
    assert "checkpoint.pt (step 3) is kept unchanged" in message
    assert f"get_or_train({looped!r}, cfg, retrain=True)" in message
    assert "resume=" not in message


# ---------------------------------------------------------------- the token cache


class StubTokenizer:
    """Stands in for the VQ-GAN artifact (what is tested is the cache, not the codes)."""

    codebook_size = 32

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:  # (..., 3, 16, 16) -> (..., 4, 4)
        return (pixels.mean(dim=-3)[..., ::4, ::4] * 31).round().long()


@damages
def test_a_damaged_token_cache_is_named_and_rebuilt_identically(
    cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.setattr(pretrain, "get_or_train", lambda *args, **kwargs: StubTokenizer())
    first = pretrain.token_data(cfg, "train", 8, root=tmp_path, progress=False)
    (path,) = tmp_path.glob("nuwa_tokens-*/train-8.pt")
    DAMAGES[damage](path)
    with pytest.warns(UserWarning, match="rebuilding it") as record:
        rebuilt = pretrain.token_data(cfg, "train", 8, root=tmp_path, progress=False)
    message = str(record[0].message)
    assert message.startswith(f"token cache {path} {problem_of(damage)}")
    for name in ("images", "image_text", "videos", "video_text"):
        assert torch.equal(getattr(rebuilt, name), getattr(first, name)), name
    assert torch.equal(load_torch_verified(path)["images"], first.images)  # hashed again


# ---------------------------------------------------------------- run records


def _fake_worker(spec, tmp):
    """The papermill worker, minus the kernel: the notebook's part is log_metrics' file."""
    (Path(tmp) / METRICS_FILE).write_text(json.dumps({"y": spec["parameters"]["X"] * 10}))
    WORKER_CALLS.append(spec["parameters"]["X"])
    return {"status": "ok", "wall_time_s": 0.1, "cpu_time_s": 0.1, "peak_mem_mb": 50.0}


WORKER_CALLS: list[int] = []


@damages
@pytest.mark.parametrize("name", [RUN_FILE, METRICS_FILE])
def test_a_damaged_run_record_is_reported_and_the_run_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, name: str
) -> None:
    monkeypatch.setattr(runner_module, "_worker", _fake_worker)
    WORKER_CALLS.clear()
    notebook = tmp_path / "notebooks" / "99_test.ipynb"
    notebook.parent.mkdir()
    cell = {"cell_type": "code", "metadata": {}, "source": "X = 1", "outputs": []}
    notebook.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}))
    run_dir = tmp_path / "runs" / "s" / "X=2"
    first = execute_run(notebook, {"X": 2}, run_dir, root=tmp_path)
    assert stale_reason(run_dir, {"X": 2}, notebook) is None
    assert read_json(run_dir / METRICS_FILE) == {"y": 20}
    assert read_json(run_dir / RUN_FILE)["started"] == first["started"]
    path = run_dir / name
    DAMAGES[damage](path)
    reason = stale_reason(run_dir, {"X": 2}, notebook)
    assert reason.startswith(f"{path} {problem_of(damage)}")
    with pytest.warns(UserWarning, match="counts as unfinished") as record:
        assert read_json(path) is None
    assert str(path) in str(record[0].message)
    if name == RUN_FILE:
        with pytest.warns(UserWarning, match="counts as unfinished"):
            assert collect(run_dir.parent).pending == ["X=2"]  # not a finished result
    # the fix: running again re-runs it, and it is then read back as finished
    again = execute_run(notebook, {"X": 2}, run_dir, root=tmp_path)
    assert not again["skipped"] and again["rerun_reason"] == reason and WORKER_CALLS == [2, 2]
    assert stale_reason(run_dir, {"X": 2}, notebook) is None
    assert execute_run(notebook, {"X": 2}, run_dir, root=tmp_path)["skipped"]
    assert [r["y"] for r in collect(run_dir.parent)] == [20]
