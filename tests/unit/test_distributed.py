"""Data parallelism: two CPU processes under torchrun stay identical and equal one process."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from nuwa_lab.__main__ import leave
from nuwa_lab.train.distributed import DistInfo, average_gradients, rank_slice, setup, sync_buffers

WORKER = Path(__file__).with_name("distributed_worker.py")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def load_worker():
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rank_slices_tile_the_global_batch() -> None:
    slices = [rank_slice(12, r, 3) for r in range(3)]
    assert [list(range(12))[s] for s in slices] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    with pytest.raises(ValueError, match="12 does not split into 5 equal shards"):
        rank_slice(12, 0, 5)


def test_one_process_needs_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    info, device = setup(torch.device("cpu"))
    assert info == DistInfo(rank=0, world_size=1) and device.type == "cpu"
    layer = nn.Linear(2, 2)
    layer.weight.grad = torch.ones(2, 2)
    average_gradients(layer.parameters(), info)  # a no-op: nothing to average with
    sync_buffers([layer], info)
    assert torch.equal(layer.weight.grad, torch.ones(2, 2)) and layer.bias.grad is None


def test_leave_closes_the_process_group_and_is_a_no_op_without_one() -> None:
    leave()  # one process, no group: nothing to leave
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        leave()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    leave()  # twice is fine


def test_world_size_without_torchrun_vars_is_a_clear_error(monkeypatch) -> None:
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="RANK, MASTER_ADDR, MASTER_PORT not set.*torchrun"):
        setup(torch.device("cpu"))


def assert_same_state(a: dict, b: dict) -> None:
    for name, state in a.items():
        for key, value in state.items():
            torch.testing.assert_close(value, b[name][key], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_two_cpu_processes_stay_identical_and_match_one_process(tmp_path: Path) -> None:
    worker = load_worker()
    worker.run(tmp_path / "r12", max_steps=worker.PART)  # the launch finishes it on 2 processes
    worker.run(tmp_path / "alone0", max_steps=worker.PART)  # rank 1 will see no checkpoint
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    single = worker.run(tmp_path / "single")
    for name, state in ranks[0]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, ranks[1]["state"][name][key]), f"{name}.{key} differs"
            torch.testing.assert_close(value, single["state"][name][key], atol=1e-6, rtol=1e-5)
    assert ranks[0]["history"].keys() == single["history"].keys()
    for key, column in single["history"].items():
        for a, b in zip(ranks[0]["history"][key], column, strict=True):
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5, abs=1e-6)
    # only rank 0 writes checkpoints (at ckpt_every = 3 and at the end)
    assert ranks[0]["saves"] == [3, 6] and ranks[1]["saves"] == []
    assert torch.load(tmp_path / "run" / "checkpoint.pt")["world_size"] == 2

    # a checkpoint resumes on another number of processes: 1 -> 2 and 2 -> 1 equal one run
    assert ranks[0]["r12"]["saves"] == [3, 6] and ranks[1]["r12"]["saves"] == []
    assert_same_state(ranks[0]["r12"]["state"], single["state"])
    assert_same_state(ranks[1]["r12"]["state"], single["state"])
    assert torch.load(tmp_path / "r21" / "checkpoint.pt")["step"] == worker.PART
    for rank in ranks:  # ranks that do not see the same checkpoint stop, saying why
        assert "resume from different steps (0 to 2" in rank["unshared"]
        assert "a filesystem every node shares" in rank["unshared"]
    finished = worker.run(tmp_path / "r21")
    assert finished["saves"] == [3, 6]
    assert_same_state(finished["state"], single["state"])
    for key, column in single["history"].items():
        for a, b in zip(finished["history"][key], column, strict=True):
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5, abs=1e-6)
