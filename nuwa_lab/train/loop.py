r"""One training loop for every model: the VQ-GAN (two optimizers), the probes and NÜWA.

NÜWA §4.1 pre-trains with Adam, warm-up and gradient clipping on 64 GPUs; this is the same loop at
laptop scale, plus what a long run needs: a warm-up + cosine schedule, bf16 autocast on CUDA (fp32
on the CPU) and batches copied from pinned memory there (both decided by nuwa_lab.device), a NaN/inf
guard, atomic checkpoints verified by their hash before a resume
(nuwa_lab.train.checkpoint), exact resume and data parallelism under `torchrun`
(nuwa_lab.train.distributed).

The thing trained implements the `Trainable` protocol (a plain class, not an nn.Module; the
protocol and its helpers live in nuwa_lab.train.trainable and are importable from here):

| method | returns | called |
|---|---|---|
| `modules()` | `{name: nn.Module}`: what is checkpointed | once |
| `optimizers()` | `{name: Optimizer}`: stepped in this order | once, modules already on device |
| `batch(step, rank, world_size)` | this rank's shard of the global batch of `step` | every step |
| `losses(batch, step)` | `({optimizer name: scalar loss}, {name: float to log})` | every step |

`batch` must be a pure function of (the trainable's seed, step): build the global batch of `step`
(`step_generator(seed, step)` gives a fresh generator), then take `rank_slice(b, rank, world_size)`.
That makes resume exact and makes R processes see the same global batch as one. Each optimizer
receives the gradient of its own loss only (`torch.autograd.grad` w.r.t. its own parameters), so a
GAN's generator loss never leaks into the discriminator. Leave an optimizer's loss out of the dict
(or set it to None) to skip its step: that is how a discriminator "switches on" at a start step.

    class Probe:  # one model, one optimizer (SimpleTrainable does exactly this for you)
        def __init__(self, net, world, cfg):
            self.net, self.world, self.cfg = net, world, cfg
        def modules(self):
            return {"net": self.net}
        def optimizers(self):
            return {"net": make_adamw(self.net, self.cfg.train)}
        def batch(self, step, rank, world_size):
            b, split = self.cfg.train.batch_size, self.world.seeds("train")
            picks = torch.randint(len(split), (b,), generator=step_generator(self.cfg.seed, step))
            return self.world.images([split[i] for i in picks[rank_slice(b, rank, world_size)]])
        def losses(self, batch, step):
            loss = F.cross_entropy(self.net(batch.pixels), targets_of(batch))
            return {"net": loss}, {}

    result = train(Probe(net, world, cfg), cfg.train, run_dir="runs/probe", seed=cfg.seed)
    plt.plot(result.history["step"], result.history["loss/net"])

A GAN returns two losses: `{"gen": rec + lam * gan, "disc": hinge}` (or `{"gen": rec}` before the
discriminator starts); the adaptive weight lam may itself use `torch.autograd.grad(...,
retain_graph=True)` inside `losses`.

Schedule, per optimizer parameter group (its base rate $\eta_0$ is the lr it was built with):

$\eta_s = \eta_0 (s+1)/W$ for $s < W$, else
$\eta_s = \eta_0 [\rho + (1-\rho)\tfrac12(1 + \cos(\pi \min(1, (s-W)/(S-W))))]$

| symbol | code | meaning |
|---|---|---|
| s | `step` | 0-based optimizer step |
| S, W | `cfg.steps`, `cfg.warmup` | total and warm-up steps |
| $\eta_0$, $\rho$ | `cfg.lr` (or a group's own lr), `cfg.min_lr_ratio` | peak, final fraction |
| c | `cfg.grad_clip` | each optimizer's gradients are scaled to global norm <= c |
| R, r | `world_size`, `rank` | data-parallel processes (nuwa_lab.train.distributed) |
| b | `cfg.batch_size` | the global batch, b / R per rank |

History keys: `step`, `loss/<opt>`, `lr/<opt>`, `grad_norm/<opt>` (before clipping) and the
trainable's logs (averaged over ranks; NaN where a value was absent at a step).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nuwa_lab.config import TrainConfig
from nuwa_lab.device import announce, pin_memory, resolve_device
from nuwa_lab.train import distributed
from nuwa_lab.train.checkpoint import (
    CKPT_NAME,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from nuwa_lab.train.checkpoint import CheckpointError as CheckpointError  # re-exported
from nuwa_lab.train.distributed import rank_slice as rank_slice  # re-exported for batch()
from nuwa_lab.train.placement import autocast_context, peak_mem_mb, to_device
from nuwa_lab.train.trainable import SimpleTrainable as SimpleTrainable  # re-exported
from nuwa_lab.train.trainable import (
    Trainable,
    check_losses,
    check_optimizers,
    check_trainable,
    step_seed,
    trainable_params,
)
from nuwa_lab.train.trainable import make_adamw as make_adamw  # re-exported
from nuwa_lab.train.trainable import step_generator as step_generator  # re-exported


@dataclass
class TrainResult:
    """What a `train` call did. `history` is column-wise: `history[key][i]` belongs to
    `history["step"][i]`, from step 0 (a resumed run carries its checkpoint's history)."""

    history: dict[str, list[float]]
    step: int  # steps completed in total (== cfg.steps when finished)
    steps_run: int  # steps taken by this call
    seconds: float
    sec_per_step: float
    peak_mem_mb: float  # CUDA: peak allocated in this call; CPU: the process's peak RSS
    ckpt_path: Path | None
    resumed_from: int  # 0 when the run started fresh

    def last(self, key: str, n: int = 1) -> float:
        """Mean of the last `n` finite values of `history[key]`."""
        values = [v for v in self.history[key] if math.isfinite(v)][-n:]
        if not values:
            raise ValueError(f"history has no finite values of {key!r}; keys: {list(self.history)}")
        return sum(values) / len(values)


class NonFiniteLossError(FloatingPointError):
    """A loss, gradient norm or parameter became NaN/inf. Training stops before saving anything
    more; the message says which checkpoint is on disk, why it can be trusted (this run wrote it
    after checking every parameter finite, or verified its hash when it resumed from it) and how
    to go on. `resume_hint` replaces the "how to go on" for callers that do not call `train`
    themselves (get_or_train)."""

    def __init__(self, step: int, what: str, value: float | str):
        self.step, self.what, self.value = step, what, value
        self.ckpt_path: Path | None = None  # where this run checkpoints (None: nowhere)
        self.ckpt_step: int | None = None  # step of the checkpoint there, if this run has one
        self.ckpt_resumed = False  # True: this run resumed from it and wrote none after it
        self.resume_hint: str | None = None
        super().__init__()

    def __str__(self) -> str:
        head = f"step {self.step}: {self.what} is not finite ({self.value}); training stopped"
        fixes = (
            f"Usual fixes: a lower lr or a longer warm-up, grad_clip > 0, or check the batch of "
            f"step {self.step} for NaN inputs"
        )
        if self.ckpt_path is None:
            return f"{head}; this run writes no checkpoint (no run_dir or ckpt_path). {fixes}"
        if self.ckpt_step is None:
            return (
                f"{head} before this run saved any checkpoint to {self.ckpt_path}: nothing of "
                f"this run was kept, no checkpoint to resume from. {fixes}, then train again "
                f"(resume=False starts from step 0 whatever {self.ckpt_path.name} holds)"
            )
        path, n = self.ckpt_path, self.ckpt_step
        why = (
            "its hash was verified when this run resumed from it"
            if self.ckpt_resumed
            else "this run wrote it after checking that every parameter was finite"
        )
        hint = self.resume_hint or (
            f"train(..., resume=True) continues from step {n} (with unchanged settings it will "
            f"likely stop here again); to start over from step 0, delete {path} or pass "
            "resume=False"
        )
        return (
            f"{head}. {path} (step {n}) is kept unchanged ({why}); nothing after step {n} was "
            f"saved. {fixes}; then {hint}"
        )


def lr_at(step: int, cfg: TrainConfig, base_lr: float | None = None) -> float:
    """The learning rate of `step`: linear warm-up to `base_lr` (default cfg.lr), then cosine."""
    base = cfg.lr if base_lr is None else base_lr
    if step < cfg.warmup:
        return base * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    rho = cfg.min_lr_ratio
    return base * (rho + (1.0 - rho) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _seed_globals(seed: int, step: int, rank: int, device: torch.device) -> None:
    """Global RNGs fixed by (seed, step, rank): dropout and random restarts resume exactly."""
    s = step_seed(seed, step, rank, 1)
    torch.default_generator.manual_seed(s)  # torch.manual_seed also seeds every lazy backend: slow
    if device.type == "cuda":
        torch.cuda.manual_seed(s)  # this rank's device
    random.seed(s)
    np.random.seed(s % 2**32)


def _history_append(history: dict[str, list], row: dict[str, float]) -> None:
    n = len(history.get("step", []))
    for key in row:
        history.setdefault(key, [math.nan] * n)
    for key, column in history.items():
        column.append(row.get(key, math.nan))


def _check_finite_state(modules: dict[str, nn.Module], step: int) -> None:
    for mname, module in modules.items():
        for pname, t in [*module.named_parameters(), *module.named_buffers()]:
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise NonFiniteLossError(step, f"{mname}.{pname}", float("nan"))


def _losses(trainable, optimizers, cfg: TrainConfig, batch, step, device):
    with autocast_context(device, cfg.amp):
        return check_losses(trainable.losses(batch, step), optimizers)


def _reduce_losses(losses, names, step, info, device) -> dict[str, float]:
    """Mean loss values over ranks; the NaN guard (every rank stops together)."""
    k = len(names)  # one fixed-size collective: [present, non-finite, value] per optimizer
    stats = torch.zeros(3 * k, dtype=torch.float64, device=device)
    for i, n in enumerate(names):
        if n in losses:
            value = losses[n].detach().double().reshape(())
            finite = torch.isfinite(value)
            stats[i], stats[k + i] = 1.0, (~finite).double()
            stats[2 * k + i] = torch.where(finite, value, torch.zeros_like(value))
    stats = distributed.all_reduce_sum(stats, info).tolist()
    means = {}
    for i, n in enumerate(names):
        if stats[k + i] > 0:
            local = losses[n].item() if n in losses else math.nan
            raise NonFiniteLossError(
                step, f"loss {n!r}", local if not math.isfinite(local) else "on another rank"
            )
        if stats[i] not in (0, info.world_size):
            raise RuntimeError(
                f"step {step}: loss {n!r} present on {int(stats[i])} of {info.world_size} ranks; "
                "losses() must return the same keys on every rank"
            )
        if stats[i] > 0:
            means[n] = stats[2 * k + i] / info.world_size
    return means


def _train_step(
    trainable, modules, optimizers, cfg: TrainConfig, step, seed, info, device
) -> dict[str, float]:
    row: dict[str, float] = {"step": step}
    for name, opt in optimizers.items():
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg, base_lr=group["initial_lr"])
        row[f"lr/{name}"] = opt.param_groups[0]["lr"]
    _seed_globals(seed, step, info.rank, device)
    batch = trainable.batch(step, info.rank, info.world_size)
    batch = to_device(batch, device, pin=pin_memory(device.type))
    losses, logs = _losses(trainable, optimizers, cfg, batch, step, device)
    means = _reduce_losses(losses, list(optimizers), step, info, device)
    row.update({f"loss/{n}": v for n, v in means.items()})
    # each optimizer gets the gradient of its own loss w.r.t. its own parameters only
    for j, (n, loss) in enumerate(losses.items()):
        params = trainable_params(optimizers[n])
        grads = torch.autograd.grad(
            loss, params, retain_graph=j < len(losses) - 1, allow_unused=True
        )
        for p, g in zip(params, grads, strict=True):
            p.grad = g
    for n in losses:  # all gradients are checked before any optimizer steps
        params = trainable_params(optimizers[n])
        distributed.average_gradients(params, info)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not math.isfinite(norm):
            raise NonFiniteLossError(step, f"gradient norm of {n!r}", norm)
        row[f"grad_norm/{n}"] = norm
    for n in losses:
        optimizers[n].step()
        for p in trainable_params(optimizers[n]):
            p.grad = None
    distributed.sync_buffers(modules.values(), info)
    if logs:
        keys = sorted(logs)
        values = torch.tensor([float(logs[key]) for key in keys], dtype=torch.float64)
        values = distributed.all_reduce_sum(values.to(device), info) / info.world_size
        row.update(zip(keys, values.tolist(), strict=True))
    return row


def train(
    trainable: Trainable,
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    ckpt_path: str | Path | None = None,
    resume: bool = True,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
    max_steps: int | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train `trainable` for `cfg.steps` steps, checkpointing to run_dir/checkpoint.pt or ckpt_path.

    resume: continue from the checkpoint if it exists, once it matches its hash file (a damaged
        or unverifiable one is a CheckpointError); False starts fresh and overwrites it.
        Without run_dir / ckpt_path nothing is written.
    seed: fixes the global RNGs at every step (dropout, restarts); the data comes from `batch`.
    max_steps: stop once this many steps are done (the schedule still spans cfg.steps); resume
        later to finish. Under torchrun (WORLD_SIZE > 1) each process calls `train` alike; a
        checkpoint resumes on any number of processes (nuwa_lab.train.distributed).
    """
    modules = check_trainable(trainable)
    if run_dir is not None and ckpt_path is not None:
        raise ValueError("pass run_dir or ckpt_path, not both")
    path = Path(run_dir) / CKPT_NAME if run_dir is not None else ckpt_path
    path = Path(path) if path is not None else None
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    info, device = distributed.setup(device)
    announce(device)  # the device policy's choices, printed once per process (as resolve_device)
    for module in modules.values():
        module.to(device)
    optimizers = trainable.optimizers()
    check_optimizers(optimizers, modules)
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    history: dict[str, list] = {}
    start = 0
    if resume and path is not None and path.exists():
        ckpt = load_checkpoint(path, map_location=device)
        start, history = restore_checkpoint(ckpt, path, modules, optimizers, cfg, seed)
    distributed.check_same_step(start, info, device, path)
    distributed.broadcast_modules(modules.values(), info)
    end = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    saved_step = start if path is not None and start > 0 else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    modes = {name: m.training for name, m in modules.items()}
    for module in modules.values():
        module.train()
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=desc,
        disable=not (progress and info.is_main),
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    try:
        for step in range(start, end):
            row = _train_step(trainable, modules, optimizers, cfg, step, seed, info, device)
            _history_append(history, row)
            bar.update(1)
            done = step + 1
            if done % max(1, cfg.log_every) == 0 or done == end:
                shown = {k[5:]: f"{v:.4g}" for k, v in row.items() if k.startswith("loss/")}
                lr = next(v for k, v in row.items() if k.startswith("lr/"))
                bar.set_postfix({**shown, "lr": f"{lr:.2g}"}, refresh=False)
            at_interval = cfg.ckpt_every > 0 and done % cfg.ckpt_every == 0
            if path is not None and (at_interval or done == end):
                _check_finite_state(modules, step)
                if info.is_main:
                    save_checkpoint(
                        path,
                        step=done,
                        modules=modules,
                        optimizers=optimizers,
                        history=history,
                        cfg=cfg,
                        seed=seed,
                        world_size=info.world_size,
                    )
                saved_step = done
    except NonFiniteLossError as e:
        e.ckpt_path, e.ckpt_step = path, saved_step
        e.ckpt_resumed = saved_step is not None and saved_step == start
        raise
    finally:
        bar.close()
        for name, module in modules.items():
            module.train(modes[name])
    distributed.barrier(info)
    seconds = time.perf_counter() - t0
    steps_run = max(0, end - start)
    return TrainResult(
        history=history,
        step=max(start, end),
        steps_run=steps_run,
        seconds=seconds,
        sec_per_step=seconds / steps_run if steps_run else 0.0,
        peak_mem_mb=peak_mem_mb(device),
        ckpt_path=path,
        resumed_from=start,
    )
