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
from torch import nn

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


def test_world_size_without_torchrun_vars_is_a_clear_error(monkeypatch) -> None:
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="RANK, MASTER_ADDR, MASTER_PORT not set.*torchrun"):
        setup(torch.device("cpu"))


@pytest.mark.slow
def test_two_cpu_processes_stay_identical_and_match_one_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    single = load_worker().run(tmp_path / "single")
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
