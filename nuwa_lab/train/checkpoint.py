"""Training checkpoints of nuwa_lab.train.loop: what is saved, how it is written, how runs resume.

A checkpoint is one file (`run_dir/checkpoint.pt`) written atomically (nuwa_lab.train.files: a
temporary
file renamed over the target), so a crash mid-write leaves the previous checkpoint intact. It holds

| key | what |
|---|---|
| `step` | steps completed; training resumes at this step |
| `modules`, `optimizers` | state dicts by name (the Trainable's `modules()` / `optimizers()`) |
| `schedule` | the schedule's whole state: it is the pure function `lr_at(step, cfg)` |
| `history` | the logged values of steps 0..step-1 |
| `rng` | torch / CUDA / python / numpy RNG states at the time of saving |
| `train_config`, `seed`, `world_size` | to warn when a resume changes them |

It is read with `torch.load(weights_only=True)`: plain tensors and containers, no pickled code.
"""

from __future__ import annotations

import dataclasses
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nuwa_lab.config import TrainConfig
from nuwa_lab.train.files import atomic_torch_save

CKPT_NAME = "checkpoint.pt"
CKPT_FORMAT = "nuwa_lab.train.loop/1"
SCHEDULE_KEYS = ("steps", "warmup", "lr", "min_lr_ratio")


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be used (unreadable, or made for another model)."""


def _fix(path: Path) -> str:
    return f"delete {path} to start over, or pass resume=False to overwrite it"


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
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
    return atomic_torch_save(path, ckpt)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a CheckpointError naming the file and the fix if it is unreadable."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is unreadable (not a torch zip archive: truncated or overwritten); "
            f"{_fix(path)}"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        cause = (str(e).splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {cause}); {_fix(path)}"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path} is not a nuwa_lab training checkpoint; {_fix(path)}")
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
            f"checkpoint {path} holds modules {sorted(ckpt['modules'])} and optimizers "
            f"{sorted(ckpt['optimizers'])}, this run has {sorted(modules)} and "
            f"{sorted(optimizers)}; {_fix(path)}"
        )
    try:
        for name, module in modules.items():
            module.load_state_dict(ckpt["modules"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model ({e}); {_fix(path)}"
        ) from e
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
