"""Training checkpoints of nuwa_lab.train.loop: what is saved, how it is written, how runs resume.

A checkpoint is one file (`run_dir/checkpoint.pt`) written atomically, with its content hash beside
it (`checkpoint.pt.sha256`; nuwa_lab.train.files), so a crash mid-write leaves the previous
checkpoint intact and a damaged one is never resumed from. It holds

| key | what |
|---|---|
| `step` | steps completed; training resumes at this step |
| `modules`, `optimizers` | state dicts by name (the Trainable's `modules()` / `optimizers()`) |
| `schedule` | the schedule's whole state: it is the pure function `lr_at(step, cfg)` |
| `history` | the logged values of steps 0..step-1 |
| `rng` | torch / CUDA / python / numpy RNG states at the time of saving |
| `train_config`, `seed` | to warn when a resume changes them |
| `world_size` | the processes that wrote it, for the record: any number may resume it |

It is read back only after its bytes match the hash (a mismatch, or no hash file, is a
`CheckpointError` that says how to start over), then with `torch.load(weights_only=True)`: plain
tensors and containers, no pickled code.
"""

from __future__ import annotations

import dataclasses
import io
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nuwa_lab.config import TrainConfig
from nuwa_lab.train.files import IntegrityError, atomic_torch_save, read_verified

CKPT_NAME = "checkpoint.pt"
CKPT_FORMAT = "nuwa_lab.train.loop/1"
SCHEDULE_KEYS = ("steps", "warmup", "lr", "min_lr_ratio")


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be used: it fails its hash check, has no hash, cannot
    be read, or was made for another model. The message names the file, the problem and how to
    start over; `fix` is that last part, which a caller may replace by the way to start over that
    its own users have (get_or_train: `retrain=True`)."""

    def __init__(self, path: str | Path, problem: str, fix: str | None = None):
        self.path, self.problem = Path(path), problem
        self.fix = fix or start_over_hint(self.path)
        super().__init__(str(self.path), problem)

    def __str__(self) -> str:
        return f"checkpoint {self.path} {self.problem}; {self.fix}"


def start_over_hint(path: str | Path) -> str:
    """How a caller of `train` starts a run over from step 0."""
    return f"to start over from step 0, delete {path} or pass resume=False to train()"


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU of the machine that saved it; this one may have fewer (or more)
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)


def save_checkpoint(
    path: str | Path,
    *,
    step: int,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    history: dict[str, list],
    cfg: TrainConfig,
    seed: int,
    world_size: int = 1,
) -> Path:
    """Write the training state after `step` completed steps, atomically."""
    ckpt = {
        "format": CKPT_FORMAT,
        "step": step,
        "modules": {n: m.state_dict() for n, m in modules.items()},
        "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
        "schedule": {"kind": "warmup_cosine", **{k: getattr(cfg, k) for k in SCHEDULE_KEYS}},
        "history": history,
        "rng": rng_state(),
        "train_config": dataclasses.asdict(cfg),
        "seed": seed,
        "world_size": world_size,
    }
    return atomic_torch_save(path, ckpt, sha256=True)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint once its bytes match its hash file; a CheckpointError naming the file
    and the fix if they do not, if it has no hash file, or if it is unreadable."""
    path = Path(path)
    try:
        data = read_verified(path)
    except IntegrityError as e:
        raise CheckpointError(path, e.problem) from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError(path, "is unreadable (not a torch zip archive)")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        cause = (str(e).splitlines() or [""])[0][:160]
        raise CheckpointError(path, f"is unreadable ({type(e).__name__}: {cause})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(path, "is not a nuwa_lab training checkpoint")
    return ckpt


def restore_checkpoint(
    ckpt: dict[str, Any],
    path: str | Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    cfg: TrainConfig,
    seed: int,
) -> tuple[int, dict[str, list]]:
    """Load modules, optimizers and RNG states from `ckpt`; return (step, history)."""
    path = Path(path)
    if set(ckpt["modules"]) != set(modules) or set(ckpt["optimizers"]) != set(optimizers):
        raise CheckpointError(
            path,
            f"holds modules {sorted(ckpt['modules'])} and optimizers "
            f"{sorted(ckpt['optimizers'])}, this run has {sorted(modules)} and "
            f"{sorted(optimizers)}",
        )
    try:
        for name, module in modules.items():
            module.load_state_dict(ckpt["modules"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(path, f"does not fit this model ({e})") from e
    saved, now = ckpt["train_config"], dataclasses.asdict(cfg)
    changed = [k for k in now if k not in ("log_every", "ckpt_every") and saved.get(k) != now[k]]
    changed += ["seed"] if ckpt["seed"] != seed else []
    if changed:
        warnings.warn(
            f"resuming {path} with changed {', '.join(changed)}: the run will not equal an "
            "uninterrupted one",
            stacklevel=3,
        )
    set_rng_state(ckpt["rng"])
    return ckpt["step"], ckpt["history"]
