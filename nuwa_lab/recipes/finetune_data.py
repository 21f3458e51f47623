r"""The data fine-tuning (`nuwa_lab.recipes.finetune`) trains on: one task's token pool, the
batches drawn from it, the loss over a pool.

A pool holds `size` items of one split as tensors: the condition tokens, the target codes and the
fixed grid $F$ (positions given, not generated). T2I, T2V and V2V reuse pretraining's cached token
data; the other tasks go through `nuwa_lab.tasks.task_tensors`, exactly as at sampling time. The
batch of step s is drawn by a generator seeded with (seed, s), so resume is exact; V2V's train
pool also holds a weight per video (`turning_weights`), and its rows are drawn in proportion.
On a data folder (`world.source`) a pool holds all of the split's items, up to `size`; its I2I
items come from `FolderSource.task_items`, and V2V's videos are all weighted alike (a folder
has no ground truth of turns).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nuwa_lab.config import Config, TrainConfig
from nuwa_lab.model import KINDS, Condition, Nuwa
from nuwa_lab.recipes.pretrain import (
    PRETRAIN_TASKS,
    token_data,  # the pretraining token pipeline, reused
)
from nuwa_lab.tasks.evaluate import TaskKit, task_items
from nuwa_lab.tasks.run import task_tensors
from nuwa_lab.tasks.spec import given_frames
from nuwa_lab.train.loop import make_adamw, rank_slice, step_generator
from nuwa_lab.world import ShapesWorld
from nuwa_lab.world.motion import turns_after
from nuwa_lab.world.source import EDIT_TASKS, NEEDS, folder_path, load_folder


def task_pool(
    task: str,
    cfg: Config,
    kit: TaskKit,
    *,
    split: str = "train",
    size: int,
    context: bool = False,
    model: Nuwa,
    chunk: int = 256,
    progress: bool = False,
    root: Any = None,
) -> dict[str, torch.Tensor]:
    """`size` items of `split` as tensors: condition tokens, target codes and the fixed grid.

    T2I, T2V and V2V reuse pretraining's cached token data (`nuwa_lab.recipes.pretrain.token_data`,
    the same items and codes the pretrained model was trained on); the other tasks, whose inputs
    (sketches, hidden regions, edits) pretraining never tokenized, go through `task_tensors`."""
    from tqdm.auto import tqdm

    if task in PRETRAIN_TASKS and not context:
        return _pretrain_pool(task, cfg, split, size, root=root, progress=progress)

    folder = folder_path(cfg.world) is not None
    if folder:  # all of the split's items, up to `size` (T2I, T2V, V2V: pretraining's pool)
        if task in EDIT_TASKS:
            base = "T2I" if task == "ti2i" else "T2V"
            raise ValueError(
                f"{task.upper()} is not fine-tuned on a data folder: its edit pairs are only "
                f"measured; it runs zero-shot on the {base} model (variant 'default') or the "
                "pretrained one"
            )
        source = load_folder(cfg.world, cfg.text)
        source.check(task)
        size = min(size, source.count(NEEDS[task][0], split))
    parts: dict[str, list[torch.Tensor]] = {"condition": [], "target": [], "fixed": []}
    for start in tqdm(range(0, size, chunk), desc=f"{task} pool", disable=not progress):
        n = min(chunk, size - start)
        if folder:
            inputs = source.task_items(task, split, n, offset=start)
        else:
            inputs = task_items(task, kit, split, n, offset=start)
        t = task_tensors(
            task,
            model,
            inputs,
            tokenizers=kit.tokenizers,
            context=context,
            with_target=True,
        )
        parts["condition"].append(t.condition.tokens.cpu())
        parts["target"].append(t.target_tokens.cpu())
        parts["fixed"].append(t.fixed.cpu())
    kind = t.condition.kind
    pool = {k: torch.cat(v) for k, v in parts.items()}
    pool["kind"] = torch.tensor(KINDS.index(kind))
    return pool


def _pretrain_pool(task, cfg, split, size, *, root, progress) -> dict[str, torch.Tensor]:

    data = token_data(cfg, split, size, root=root, progress=progress)
    condition, target = data.task_batch(task, torch.arange(data.count(task)))
    fixed = torch.zeros(target.shape, dtype=torch.bool)
    pool = {"condition": condition.tokens, "target": target, "fixed": fixed}
    pool["kind"] = torch.tensor(KINDS.index(condition.kind))
    if task == "v2v":  # the first given_frames frames are given, as when the task runs
        given = given_frames("v2v", cfg.tasks)
        fixed[:, :given] = True
        shapes = folder_path(cfg.world) is None  # a folder has no ground truth of turns
        if split == "train" and given >= 2 and cfg.tasks.v2v_turning_weight != 1 and shapes:
            pool["weight"] = turning_weights(cfg, size)
    return pool


def turning_weights(cfg: Config, size: int) -> torch.Tensor:
    """(size,) weights of the first `size` train videos: `cfg.tasks.v2v_turning_weight` for a
    video whose object turns at a wall after the given frames (`world.motion.turns_after`), 1
    for the rest. `FinetuneTrainable.batch` draws rows in proportion to them."""

    world = ShapesWorld(cfg.world)
    scenes = [world.scene(seed)[0] for seed in world.seeds("train")[:size]]
    cx, cy = world.trajectories(scenes, cfg.world.frames)
    turning = turns_after(cx.cpu(), cy.cpu(), given_frames("v2v", cfg.tasks))
    return torch.where(turning, cfg.tasks.v2v_turning_weight, 1.0)


def pool_condition(pool: dict[str, torch.Tensor], tokens: torch.Tensor) -> Condition:
    """The `Condition` of condition `tokens` drawn from `pool` (its kind is the pool's)."""
    return Condition(KINDS[int(pool["kind"])], tokens, tuple(tokens.shape[1:]))


def generated_mask(fixed: torch.Tensor) -> torch.Tensor | None:
    """The loss mask: the positions not given (None when nothing is given: every position)."""
    return ~fixed if bool(fixed.any()) else None


class FinetuneTrainable:
    """`nuwa_lab.train.loop`'s protocol for fine-tuning on one task from a token pool."""

    def __init__(
        self, model: Nuwa, pool: dict[str, torch.Tensor], train_cfg: TrainConfig, seed: int
    ):
        self.model, self.pool, self.cfg, self.seed = model, pool, train_cfg, seed

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:

        return {"model": make_adamw(self.model, self.cfg)}

    def batch(self, step: int, rank: int, world_size: int) -> dict[str, Any]:

        b, size, generator = (
            self.cfg.batch_size,
            len(self.pool["target"]),
            step_generator(self.seed, step),
        )
        if "weight" in self.pool:  # rows drawn in proportion to their weight (`turning_weights`)
            rows = torch.multinomial(self.pool["weight"], b, replacement=True, generator=generator)
        else:
            rows = torch.randint(size, (b,), generator=generator)
        total = int((~self.pool["fixed"][rows]).sum())  # N: the global batch's loss positions
        rows = rows[rank_slice(b, rank, world_size)]
        shard = {k: self.pool[k][rows] for k in ("condition", "target", "fixed")}
        # counted here, on the host: no GPU sync in the step
        scale = int((~shard["fixed"]).sum()) * world_size / max(1, total)  # R N_r / N
        return {"rows": rows, **shard, "scale": scale}

    def losses(self, batch: dict[str, Any], step: int):
        r"""The shard's mean over its $N_r$ generated positions times $R N_r / N$, with $N$ those
        of the global batch: averaged over the R ranks this is the global batch's mean
        $\frac{1}{N}\sum_{n \notin F} -\log p(y_n)$ however the positions fall between
        shards (one process: $N_r = N$, the factor is exactly 1)."""
        condition = pool_condition(self.pool, batch["condition"])
        mask = generated_mask(batch["fixed"])
        _, mean = self.model(condition, batch["target"], loss_mask=mask)
        return {"model": mean * batch["scale"]}, {}


@torch.no_grad()
def pool_loss(model: Nuwa, pool: dict[str, torch.Tensor], *, batch_size: int = 64) -> float:
    """Mean loss over the generated positions of a pool (e.g. validation items)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(pool["target"]), batch_size):
        rows = slice(s, s + batch_size)
        fixed = pool["fixed"][rows].to(device)
        mask = generated_mask(fixed)
        condition = pool_condition(pool, pool["condition"][rows]).to(device)
        _, loss = model(condition, pool["target"][rows].to(device), loss_mask=mask)
        n = int((~fixed).sum()) if mask is not None else fixed.numel()
        total, count = total + float(loss) * n, count + n
    model.train(was)
    return total / max(1, count)
