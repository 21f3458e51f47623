"""The `Trainable` protocol: what nuwa_lab.train.loop trains, with helpers to implement it.

A Trainable is a plain class (not an nn.Module) with four methods; see nuwa_lab.train.loop's
docstring for the contract and an example. Everything here is re-exported by nuwa_lab.train.loop.

| name | what |
|---|---|
| `Trainable` | the protocol: `modules()`, `optimizers()`, `batch(...)`, `losses(...)` |
| `SimpleTrainable` | one model, one AdamW, from a batch function and a loss function |
| `make_adamw` | AdamW with weight decay on matrices only (nanoGPT's habit) |
| `step_generator` | a generator seeded by (seed, step): the global batch of a step, reproducibly |
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from nuwa_lab.config import TrainConfig


@runtime_checkable
class Trainable(Protocol):
    """What `train` trains; see the module docstring for the contract and an example."""

    def modules(self) -> dict[str, nn.Module]: ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def batch(self, step: int, rank: int, world_size: int) -> Any: ...

    def losses(
        self, batch: Any, step: int
    ) -> tuple[dict[str, torch.Tensor | None], dict[str, float]]: ...


@dataclass(kw_only=True)
class SimpleTrainable:
    """One model and one AdamW (named "model"): `loss_fn(model, batch) -> loss | (loss, logs)`.

    `batch_fn(step, rank, world_size)` follows the `Trainable.batch` contract; `lr` defaults to
    `cfg.lr`.
    """

    model: nn.Module
    batch_fn: Callable[[int, int, int], Any]
    loss_fn: Callable[[nn.Module, Any], Any]
    cfg: TrainConfig
    lr: float | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": make_adamw(self.model, self.cfg, lr=self.lr)}

    def batch(self, step: int, rank: int, world_size: int) -> Any:
        return self.batch_fn(step, rank, world_size)

    def losses(self, batch: Any, step: int):
        out = self.loss_fn(self.model, batch)
        loss, logs = out if isinstance(out, tuple) else (out, {})
        return {"model": loss}, logs


def make_adamw(
    params: nn.Module | Iterable[nn.Parameter],
    cfg: TrainConfig,
    *,
    lr: float | None = None,
    betas: tuple[float, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (biases, norms and scalars are not decayed)."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("make_adamw got no trainable parameters (all have requires_grad=False)")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    # One fused kernel for all parameters instead of a Python loop of ~10 small ops per tensor
    # (torch's default on CPU): the step no longer shows in profiles. Fused AdamW exists for CPU
    # and CUDA floating-point parameters; elsewhere (e.g. MPS in older torch) the default is kept.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(
        groups, lr=cfg.lr if lr is None else lr, betas=betas or cfg.betas, fused=fused or None
    )


def step_seed(*parts: int) -> int:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # < 2**63


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator seeded by (seed, step) alone: draw the global batch of `step` from it."""
    return torch.Generator().manual_seed(step_seed(seed, step))


def trainable_params(opt: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for g in opt.param_groups for p in g["params"] if p.requires_grad]


def check_trainable(trainable: Any) -> dict[str, nn.Module]:
    if isinstance(trainable, nn.Module):
        raise TypeError(
            f"{type(trainable).__name__} is an nn.Module; a Trainable is a plain class that holds "
            "the modules (nn.Module.modules() means something else), see nuwa_lab.train.loop's "
            "docstring"
        )
    for attr in ("modules", "optimizers", "batch", "losses"):
        if not callable(getattr(trainable, attr, None)):
            raise TypeError(
                f"{type(trainable).__name__} has no {attr}(); a Trainable implements modules(), "
                "optimizers(), batch(step, rank, world_size) and losses(batch, step)"
            )
    modules = trainable.modules()
    if not modules or not all(isinstance(m, nn.Module) for m in modules.values()):
        raise TypeError(f"modules() must return a non-empty dict of nn.Module, got {modules!r}")
    return modules


def check_optimizers(optimizers: Any, modules: dict[str, nn.Module]) -> None:
    if not optimizers or not all(isinstance(o, torch.optim.Optimizer) for o in optimizers.values()):
        raise TypeError(f"optimizers() must return a non-empty dict of Optimizer, got {optimizers}")
    owned = {id(p) for m in modules.values() for p in m.parameters()}
    seen: dict[int, str] = {}
    for name, opt in optimizers.items():
        for p in trainable_params(opt):
            if id(p) in seen:
                raise ValueError(
                    f"a parameter is in both optimizers {seen[id(p)]!r} and {name!r}; give each "
                    "parameter to exactly one optimizer"
                )
            if id(p) not in owned:
                raise ValueError(
                    f"optimizer {name!r} holds a parameter of no module in modules(); add that "
                    "module to modules() so it is checkpointed"
                )
            seen[id(p)] = name


def check_losses(out: Any, optimizers: dict[str, torch.optim.Optimizer]):
    """`losses()`'s return value as (losses of the optimizers stepped now, in order; logs)."""
    losses, logs = out if isinstance(out, tuple) else (out, {})
    unknown = set(losses) - set(optimizers)
    if unknown:
        raise KeyError(f"losses() returned {sorted(unknown)}; optimizers are {list(optimizers)}")
    losses = {n: losses[n] for n in optimizers if losses.get(n) is not None}
    for n, loss in losses.items():
        if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
            raise TypeError(f"loss {n!r} must be a scalar tensor, got {loss!r}")
        if not loss.requires_grad:
            raise ValueError(f"loss {n!r} does not require grad: is it computed under no_grad?")
    return losses, logs
