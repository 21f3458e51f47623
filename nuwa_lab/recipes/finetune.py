r"""Fine-tuning the pretrained NÜWA on one task (NÜWA §4: T2I, S2I, S2V and V2V are fine-tuned).

Pretraining (`nuwa_lab.recipes.pretrain`, artifact "nuwa") covers T2I, V2V and T2V; the paper then
fine-tunes per task. Here any of the eight tasks can be fine-tuned from the pretrained weights with
the shared loop (`nuwa_lab.train.loop`), and the result is cached as the artifact
`nuwa_finetuned_<task>`:

    model = finetuned_model("s2i", cfg)           # trains on the first call, loads afterwards
    model = task_model("s2i", cfg)                # the model a task runs with by default
    model = finetuned_model("i2i", cfg, context=True)   # the encoder also sees the visible part

Fine-tuning starts from the pretrained weights, except where `FINETUNE_START` names another
task's fine-tuned model: T2V starts from the T2I model, S2V from the S2I one, V2V from the T2V
one (the metrics'
`val_loss_pretrained` is then that start model's validation loss).

The loss is the task's own: the token cross-entropy over the positions the task generates, the fixed
(given) positions teacher-forced and left out of the loss,

$$ \mathcal{L} = -\frac{1}{|\bar F|} \sum_{n \notin F} \log p_\theta(y_n \mid y_{<n}, C) $$

with $C$ and $F$ built by `nuwa_lab.tasks.task_tensors` exactly as at sampling time (so a fine-tuned
model sees in training what it gets when it runs). Data (`nuwa_lab.recipes.finetune_data`):
`cfg.tasks.finetune_pool` train-split items, tokenized once (cached with its hash in the
artifact's work folder; a damaged cache is rebuilt, with a warning);
the batch of step s is drawn from the pool by a generator seeded with (cfg.seed, s), so resume is
exact. V2V draws videos that turn at a wall `cfg.tasks.v2v_turning_weight` times as often.

The I2I "context" variant (`context=True`) is a copy of the pretrained model whose encoder reads the
visible image codes as an image grid (1, h, w) with hidden tokens set to the mask code K: the sketch
embedding table is replaced by one of K + 1 rows, initialised from the decoder's code embeddings
(row K, the mask, from `<bos>`), and fine-tuned on I2I (artifact `nuwa_finetuned_i2i_context`).

| symbol | code |
|---|---|
| $C$, $F$, $y$ | `TaskTensors.condition`, `.fixed`, `.target_tokens` |
| $\mathcal{L}$ | `Nuwa.forward(..., loss_mask=~fixed)` |
| steps, batch, peak lr | `cfg.tasks.finetune_budget(task)` (a task's row, else the shared three) |
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nuwa_lab.config import Config, TaskConfig, TrainConfig
from nuwa_lab.device import resolve_device
from nuwa_lab.model import Nuwa
from nuwa_lab.recipes.cache import get_or_train, load_meta, register_artifact
from nuwa_lab.recipes.finetune_data import FinetuneTrainable, pool_loss, task_pool
from nuwa_lab.recipes.kit import load_kit
from nuwa_lab.recipes.pretrain import CODE as PRETRAINED_CODE
from nuwa_lab.recipes.pretrain import PRETRAIN_TASKS
from nuwa_lab.recipes.pretrain import SECTIONS as PRETRAINED_SECTIONS
from nuwa_lab.recipes.pretrain import VERSION as PRETRAINED_VERSION
from nuwa_lab.tasks.evaluate import TaskKit
from nuwa_lab.tasks.run import has_visible_context
from nuwa_lab.tasks.spec import TASK_SPECS, get_task
from nuwa_lab.train.distributed import main_first
from nuwa_lab.train.files import IntegrityError, atomic_torch_save, load_torch_verified
from nuwa_lab.train.loop import train
from nuwa_lab.world.source import check_task

# hand-written part of the version; the code below (the pretrained model's included) is hashed in
VERSION = f"1+nuwa{PRETRAINED_VERSION}"
CODE = (
    "nuwa_lab.recipes.finetune",
    "nuwa_lab.recipes.finetune_data",
    "nuwa_lab.tasks.run",
    "nuwa_lab.tasks.spec",
    *PRETRAINED_CODE,
)
PRETRAINED_KIND = "nuwa"
# everything the pretrained model depends on, plus the cfg.tasks fields every task shares; the
# budgets are hashed per task (`own_settings`), so a new V2V budget does not retrain T2I
OWN_TASK_FIELDS = ("finetune_budgets", "v2v_turning_weight")
SECTIONS = (
    *PRETRAINED_SECTIONS,
    *(f"tasks.{f.name}" for f in dataclasses.fields(TaskConfig) if f.name not in OWN_TASK_FIELDS),
)
VARIANTS = ("default", "pretrained", "finetuned", "context")
# Text-guided manipulation runs zero-shot (never trained on an edit) on the model that draws from
# captions, whose condition it shares. Measured at tiny, 64 test pairs: TI2I edit success 62.5% on
# the T2I model against 31% on the pretrained one; TV2V 50% on the T2V model against 28%.
ZERO_SHOT_BASE = {"ti2i": "t2i", "tv2v": "t2v"}
# Where a task's fine-tuning starts when it is not the pretrained model: the model fine-tuned on
# another task. A video task starts from its image twin, as text-to-video models start from
# text-to-image ones (CogVideo from CogView2): from the pretrained model, T2V ignored the colour
# word (swapping it in the caption moved frame 0's NLL by 0.02 nats, the T2I model's by 0.44).
# V2V starts from the T2V model, which already draws frames that follow from the earlier ones.
# The measurements behind each choice are beside the budgets (`TaskConfig.finetune_budgets`).
FINETUNE_START = {"t2v": "t2i", "s2v": "s2i", "v2v": "t2v"}


def artifact_kind(task: str, *, context: bool = False) -> str:
    """`nuwa_finetuned_<task>` (`nuwa_finetuned_i2i_context` for the completion variant)."""
    spec = get_task(task)
    if context and spec.name != "i2i":
        raise ValueError(f"context=True is the image completion variant; task {task!r} has none")
    return f"nuwa_finetuned_{spec.name}" + ("_context" if context else "")


def pretrained_model(cfg: Config, *, progress: bool = True, root: Any = None) -> Nuwa:
    """The multi-task pretrained model (artifact "nuwa", trained by nuwa_lab.recipes.pretrain)."""
    return get_or_train(PRETRAINED_KIND, cfg, progress=progress, root=root)


def start_chain(task: str) -> list[str]:
    """`task`, the task its fine-tuning starts from, and so on (V2V: ["v2v", "t2v", "t2i"])."""
    chain = [get_task(task).name]
    while chain[-1] in FINETUNE_START:
        chain.append(FINETUNE_START[chain[-1]])
    return chain


def own_settings(cfg: Config, task: str) -> dict[str, Any]:
    """The cfg.tasks settings only some fine-tuned models depend on (hashed beside `SECTIONS`):
    the budgets of `task` and of the models it starts from, and V2V's turning weight."""
    chain = start_chain(task)
    out: dict[str, Any] = {f"finetune_budget({t})": cfg.tasks.finetune_budget(t) for t in chain}
    if "v2v" in chain:
        out["v2v_turning_weight"] = cfg.tasks.v2v_turning_weight
    return out


def start_model(cfg: Config, task: str, *, progress: bool = True, root: Any = None) -> Nuwa:
    """The model fine-tuning on `task` starts from: the pretrained one, or the model fine-tuned on
    `FINETUNE_START[task]` (trained first if missing)."""
    base = FINETUNE_START.get(get_task(task).name)
    if base is None:
        return pretrained_model(cfg, progress=progress, root=root)
    return get_or_train(artifact_kind(base), cfg, progress=progress, root=root)


def build_finetune_model(
    cfg: Config, task: str, *, context: bool = False, pretrained: nn.Module | None = None
) -> Nuwa:
    """A model of the fine-tuned shape (the context variant: a K + 1 row image-code table), with
    the weights of `pretrained` when given (else freshly initialised)."""
    artifact_kind(task, context=context)  # validates
    model = Nuwa.from_config(cfg)
    if pretrained is not None:
        model.load_state_dict(pretrained.state_dict())
    if context:
        k, d = model.codebook_size, model.cfg.dim
        table = nn.Embedding(k + 1, d)
        with torch.no_grad():
            table.weight.copy_(model.target_embedding.token.weight[: k + 1])  # codes + <bos>
        model.condition_embedding.sketch = table
    return model


def train_config(cfg: Config, task: str) -> TrainConfig:
    """The loop's settings: cfg.train's optimizer and clipping, the task's budget from cfg.tasks
    (`finetune_budget`: its own row of `finetune_budgets`, else the shared defaults)."""
    t = cfg.tasks
    steps, batch, lr = t.finetune_budget(task)
    return dataclasses.replace(
        cfg.train,
        steps=steps,
        batch_size=batch,
        lr=lr,
        warmup=min(t.finetune_warmup, steps),
        log_every=max(1, min(cfg.train.log_every, steps // 20)),
        ckpt_every=min(cfg.train.ckpt_every, steps) if cfg.train.ckpt_every else 0,
    )


def _cached_pool(path: Path) -> dict[str, torch.Tensor] | None:
    """The token pool cached at `path` if it is there and matches its hash, else None (a damaged
    or unverifiable one is reported with a warning, then built again by the caller)."""
    if not path.is_file():
        return None
    try:
        return load_torch_verified(path)
    except (IntegrityError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        problem = e if isinstance(e, IntegrityError) else f"{path} is unreadable ({e})"
        warnings.warn(f"token pool {problem}; rebuilding it", stacklevel=3)
        return None


def finetune(
    task: str,
    cfg: Config,
    *,
    context: bool = False,
    workdir: str | Path | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    pretrained: Nuwa | None = None,
    root: str | Path | None = None,
    kit: TaskKit | None = None,
) -> tuple[Nuwa, dict[str, float]]:
    """Fine-tune on `task` from `start_model` (the pretrained model, or the model that
    `FINETUNE_START` names); returns (model, metrics incl. val loss before and after).
    Checkpoints (and the token pool) live in `workdir`, so an interrupted run resumes; the start
    model, tokenizers and token data come from the artifact `root` (or `pretrained`, the start
    model, and `kit`, a `nuwa_lab.tasks.TaskKit` with the tokenizers, when given)."""

    spec = get_task(task)
    check_task(cfg.world, cfg.text, spec.name)  # a data folder may lack the task's data
    device = resolve_device(cfg.device)
    if pretrained is None:
        pretrained = start_model(cfg, spec.name, progress=progress, root=root)
    model = build_finetune_model(cfg, spec.name, context=context, pretrained=pretrained)
    if kit is None:
        kit = load_kit(cfg, spec.name, progress=progress, root=root, probes=False)
    reuse = spec.name in PRETRAIN_TASKS and not context
    sizes = (
        (cfg.pretrain.pool, cfg.pretrain.val_size)
        if reuse
        else (cfg.tasks.finetune_pool, cfg.sample.num_eval)
    )
    pools = {}
    for split, size in zip(("train", "val"), sizes, strict=True):
        path = Path(workdir) / f"pool_{split}.pt" if workdir is not None and not reuse else None

        def build(split=split, size=size):
            return task_pool(
                spec.name,
                cfg,
                kit,
                split=split,
                size=size,
                context=context,
                model=model,
                progress=progress,
                root=root,
            )

        if path is None:  # pretraining's token data (cached there), or no work folder
            pools[split] = build()
            continue
        with main_first(device):  # rank 0 builds and writes the pool, the others then read it
            pools[split] = _cached_pool(path)
            if pools[split] is None:
                pools[split] = build()
                atomic_torch_save(path, pools[split], sha256=True)
    model.to(device)
    before = pool_loss(model, pools["val"])
    train_cfg = train_config(cfg, spec.name)
    result = train(
        FinetuneTrainable(model, pools["train"], train_cfg, cfg.seed),
        train_cfg,
        run_dir=workdir,
        device=device,
        seed=cfg.seed,
        progress=progress,
        max_steps=max_steps,
        desc=artifact_kind(spec.name, context=context),
    )
    model.eval()
    metrics = {
        "val_loss_pretrained": before,
        "val_loss_finetuned": pool_loss(model, pools["val"]),
        "train_loss_last": result.last("loss/model", 10),
        "steps": result.step,
        "train_seconds": result.seconds,
        "sec_per_step": result.sec_per_step,
    }
    return model, metrics


def finetuned_model(
    task: str, cfg: Config, *, context: bool = False, progress: bool = True
) -> Nuwa:
    """The model fine-tuned on `task` (a cached artifact, trained after pretraining if missing)."""
    return get_or_train(artifact_kind(task, context=context), cfg, progress=progress)


def finetune_summary(task: str, cfg: Config, *, context: bool = False) -> dict[str, float]:
    """The metrics the fine-tuning of `task` recorded (val loss before / after, time), or {} when
    that model has not been trained under `cfg`."""

    try:
        return dict(load_meta(artifact_kind(task, context=context), cfg).get("metrics", {}))
    except FileNotFoundError:
        return {}


def task_model(task: str, cfg: Config, *, variant: str = "default", progress: bool = True) -> Nuwa:
    """The model task `task` runs with.

    variant: "default" (the task's spec: its fine-tuned model for T2I, S2I, T2V, S2V and V2V; the
    model of `ZERO_SHOT_BASE` for TI2I / TV2V, zero-shot all the same; the pretrained one for I2I),
    "pretrained", "finetuned" (on the task itself), or "context" (I2I whose encoder also sees the
    visible part)."""
    spec = get_task(task)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if variant == "context":
        model = finetuned_model(spec.name, cfg, context=True, progress=progress)
        if not has_visible_context(model):
            raise RuntimeError("the cached context model has no image-code table; retrain it")
        return model
    if variant == "finetuned" or (variant == "default" and spec.training == "finetuned"):
        return finetuned_model(spec.name, cfg, progress=progress)
    if variant == "default" and spec.name in ZERO_SHOT_BASE:
        return finetuned_model(ZERO_SHOT_BASE[spec.name], cfg, progress=progress)
    return pretrained_model(cfg, progress=progress)


def _register() -> None:
    for name in TASK_SPECS:
        for context in (False, True) if name == "i2i" else (False,):
            register_artifact(
                artifact_kind(name, context=context),
                lambda cfg, *, workdir, progress, name=name, context=context: finetune(
                    name,
                    cfg,
                    context=context,
                    workdir=workdir,
                    progress=progress,
                    root=Path(workdir).parent.parent,  # workdir = <root>/<kind>-<hash>/train
                ),
                SECTIONS,
                build_fn=lambda cfg, name=name, context=context: build_finetune_model(
                    cfg, name, context=context
                ),
                version=VERSION,
                code=CODE,
                derived=lambda cfg, name=name: own_settings(cfg, name),
            )


_register()
