r"""Multi-task pretraining of NÜWA on T2I, T2V and V2V (NÜWA §3.3, Eq. 11): the artifact "nuwa".

The paper trains one model on three tasks at once and sums their losses:

$$ \mathcal{L} = -\sum_{n} \log p_\theta(y^{v}_n \mid y^{v}_{<n}, C^{text})
               -\sum_{n} \log p_\theta(y^{i}_n \mid y^{i}_{<n}, C^{text})
               -\sum_{n} \log p_\theta(y^{v}_n \mid y^{v}_{<n}, c_{none}) $$

(text-to-video, text-to-image, and video prediction, which has no text: the constant `<none>`
condition). Here each term is a mean token cross-entropy, so the loss is the *sum of the tasks'
mean cross-entropies*. The global batch of B items is split between the tasks of
`cfg.train.task_mix` in proportion to their ratios (largest remainder, interleaved so that every
data-parallel shard gets the same mixture); the ratios set how many samples of each task a step
sees, the loss weights every present task alike, as the paper does.

Data: `cfg.pretrain.pool` train images and videos of the source (`cfg.world.source`: the Shapes
World, or a data folder: its captioned images for T2I, its videos for T2V and V2V; a task whose
data the folder lacks is an error naming it), tokenized once with the
tokenizer artifact (`cfg.tokenizer.kind`) and the caption tokenizer, cached under the artifact
root with a content hash (`token_data`: a damaged or unverifiable cache is rebuilt, with a
warning naming it); the batch of step s draws items from the pool with a generator seeded by
(cfg.seed, s), so resume and data parallelism are exact (`nuwa_lab.train.loop`).

| symbol | code |
|---|---|
| $C^{text}$, $c_{none}$ | `Condition.text(ids)`, `Condition.none(b)` |
| $y^{i}$ (1, h, w), $y^{v}$ (T, h, w) | `TokenData.images`, `TokenData.videos` |
| task ratios | `cfg.train.task_mix`, e.g. `parse_task_mix("t2v+t2i+v2v")` |
| per-task term | `losses()` logs `loss_<task>`; the optimised loss is their sum |

    model = get_or_train("nuwa", cfg)                       # train once, load afterwards
    cfg2 = make_config("tiny", **{"train.task_mix": parse_task_mix("t2v")})  # an ablation arm
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from nuwa_lab.config import Config, config_hash
from nuwa_lab.device import resolve_device
from nuwa_lab.model import Condition, Nuwa
from nuwa_lab.recipes.cache import (
    ArtifactError,
    artifact_dir,
    default_root,
    get_or_train,
    register_artifact,
    retrain_hint,
)
from nuwa_lab.recipes.task_mix import (  # re-exported: the mixture is part of pretraining's API
    PRETRAIN_TASKS,
    check_task_mix,
    task_counts,
    task_layout,
)
from nuwa_lab.recipes.task_mix import parse_task_mix as parse_task_mix
from nuwa_lab.recipes.tokenizers import CODE as TOKENIZER_CODE
from nuwa_lab.train.checkpoint import CKPT_NAME, CheckpointError, load_checkpoint
from nuwa_lab.train.distributed import main_first
from nuwa_lab.train.files import (
    IntegrityError,
    atomic_torch_save,
    atomic_write_json,
    is_writer,
    load_torch_verified,
    read_json_verified,
)
from nuwa_lab.train.loop import make_adamw, rank_slice, step_generator, train
from nuwa_lab.world.source import FolderSource, check_task, data_source, text_tokenizer

VERSION = "2"  # the code below is hashed into it too (nuwa_lab.recipes.cache.code_version)
# the code that decides the pretrained weights: the model, its attention, pretraining, the tokens
CODE = (
    "nuwa_lab.model",
    "nuwa_lab.attention",
    "nuwa_lab.recipes.pretrain",
    "nuwa_lab.recipes.task_mix",
    *TOKENIZER_CODE,
)
# what the pretrained model depends on (the artifact's hash): data, tokenizers, model, loop, seed
SECTIONS = ("world", "text", "tokenizer", "model", "train", "pretrain", "seed")

TOKENS_VERSION = "1"  # bump when the token data layout changes
HISTORY_FILE = "history.json"  # beside the artifact's weights


# ---------------------------------------------------------------- token data


@dataclass
class TokenData:
    """Tokenized items: images (n, h, w), videos (m, T, h, w) and their captions (n = m for the
    Shapes World; a data folder may have fewer videos than images, or none)."""

    images: Tensor
    image_text: Tensor
    videos: Tensor
    video_text: Tensor

    def __len__(self) -> int:
        return max(self.images.shape[0], self.videos.shape[0])

    def count(self, task: str) -> int:
        """The items `task` draws from: the images for T2I, the videos for T2V and V2V."""
        return (self.images if task == "t2i" else self.videos).shape[0]

    def task_batch(self, task: str, rows: Tensor) -> tuple[Condition, Tensor]:
        """(condition, target codes) of `rows` for one pretraining task."""
        if task == "t2i":
            return Condition.text(self.image_text[rows].long()), self.images[rows].long()
        target = self.videos[rows].long()
        if task == "t2v":
            return Condition.text(self.video_text[rows].long()), target
        if task == "v2v":
            return Condition.none(len(target), device=target.device), target
        raise ValueError(f"unknown pretraining task {task!r}; valid: {', '.join(PRETRAIN_TASKS)}")


def _tokens_path(cfg: Config, split: str, size: int, root) -> Path:

    tokenizer = artifact_dir(cfg.tokenizer.kind, cfg, root=root).name
    digest = config_hash("nuwa_tokens", TOKENS_VERSION, cfg.world, cfg.text, tokenizer)
    return Path(root or default_root()) / f"nuwa_tokens-{digest}" / f"{split}-{size}.pt"


def token_data(
    cfg: Config, split: str, size: int, *, root=None, progress: bool = True, chunk: int = 256
) -> TokenData:
    """`size` items of `split` (the first seeds), tokenized once and cached (see the module).

    The cache is read only if it matches its hash; a damaged, truncated or unverifiable one
    (written before caches had hashes) is tokenized again and replaced, with a warning."""

    path = _tokens_path(cfg, split, size, root)
    data = _cached_tokens(path, split, size)
    if data is not None:
        return data
    device = resolve_device(cfg.device)
    # every rank under torchrun: the cache trains a missing tokenizer with all of them
    vq = get_or_train(cfg.tokenizer.kind, cfg, progress=progress, root=root, device=device)
    with main_first(device):  # rank 0 tokenizes and writes the cache, the others then read it
        data = None if is_writer() else _cached_tokens(path, split, size)
        if data is None:
            data = TokenData(**_tokenize(cfg, vq, split, size, device, progress, chunk))
            atomic_torch_save(path, vars(data), sha256=True)
    return data


def _cached_tokens(path: Path, split: str, size: int) -> TokenData | None:
    """The token cache at `path` if it is there and intact, else None (a damaged or unverifiable
    one with a warning: the caller tokenizes again and replaces it)."""
    if not path.is_file():
        return None
    try:
        return TokenData(**load_torch_verified(path))
    except (IntegrityError, RuntimeError, EOFError, pickle.UnpicklingError, TypeError) as e:
        problem = e if isinstance(e, IntegrityError) else f"{path} is unreadable ({e})"
        warnings.warn(
            f"token cache {problem}; rebuilding it: tokenizing {size} {split} items again",
            stacklevel=3,
        )
        return None


def _tokenize(cfg: Config, vq, split: str, size: int, device, progress: bool, chunk: int):
    """{images, image_text, videos, video_text} of the first `size` items of `split`."""
    world, text = data_source(cfg.world, cfg.text), text_tokenizer(cfg.world, cfg.text)
    if isinstance(world, FolderSource):  # all of the split, up to `size` of each kind
        items = {k: list(range(min(size, world.count(k, split)))) for k in ("image", "video")}
        render = {k: lambda rows, k=k: world.batch(k, split, rows) for k in ("image", "video")}
    else:
        seeds = list(world.seeds(split)[:size])
        if len(seeds) < size:
            raise ValueError(f"split {split!r} has {len(seeds)} seeds, fewer than {size} requested")
        items = {"image": seeds, "video": seeds}
        render = {"image": world.images, "video": world.videos}
    small = torch.int16 if vq.codebook_size <= 2**15 else torch.int32
    parts: dict[str, list[Tensor]] = {
        k: [] for k in ("images", "image_text", "videos", "video_text")
    }
    longest = max(len(v) for v in items.values())
    for s in tqdm(range(0, longest, chunk), desc=f"tokenize {split}", disable=not progress):
        for kind in ("image", "video"):
            part = items[kind][s : s + chunk]
            if not part:
                continue
            batch = render[kind](part)
            codes = vq.encode(batch.pixels.to(device)).cpu().to(small)
            parts[f"{kind}s"].append(codes)
            parts[f"{kind}_text"].append(text.encode_batch(batch.captions, truncate=True).to(small))
    side = cfg.world.image_size // cfg.tokenizer.downsample
    empty = {  # a kind the source has none of
        "images": (0, side, side),
        "videos": (0, cfg.world.frames, side, side),
        "image_text": (0, cfg.text.max_length),
        "video_text": (0, cfg.text.max_length),
    }
    return {k: torch.cat(v) if v else torch.zeros(empty[k], dtype=small) for k, v in parts.items()}


# ---------------------------------------------------------------- training


class PretrainTrainable:
    """`nuwa_lab.train.loop`'s protocol for the multi-task mixture (see the module docstring)."""

    def __init__(self, model: Nuwa, data: TokenData, cfg: Config) -> None:
        self.model, self.data, self.cfg = model, data, cfg
        self.layout = task_layout(cfg.train.task_mix, cfg.train.batch_size)
        self.counts = task_counts(cfg.train.task_mix, cfg.train.batch_size)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:

        return {"model": make_adamw(self.model, self.cfg.train)}

    def batch(self, step: int, rank: int, world_size: int) -> dict[str, Any]:

        b = len(self.layout)
        rows = torch.randint(len(self.data), (b,), generator=step_generator(self.cfg.seed, step))
        shard = rank_slice(b, rank, world_size)
        out: dict[str, Any] = {"world_size": world_size}
        for task in self.counts:
            mine = [i for i in range(b)[shard] if self.layout[i] == task]
            n = self.data.count(task)  # = len(data) for the Shapes World; a folder may have fewer
            picked = rows[mine] if n == len(self.data) else rows[mine] * n // len(self.data)
            condition, target = self.data.task_batch(task, picked)
            out[task] = {"condition": condition, "target": target}
        return out

    def losses(self, batch: dict[str, Any], step: int):
        """Sum over tasks of (R / n_t) * (sum of this shard's per-item mean cross-entropies).

        Averaged over the R shards this is exactly the sum of the tasks' mean cross-entropies over
        the global batch; a task absent from a shard contributes (and logs) 0 there.
        """
        world_size = batch["world_size"]
        total, logs = None, {}
        for task, n in self.counts.items():
            condition, target = batch[task]["condition"], batch[task]["target"]
            if target.shape[0] == 0:
                logs[f"loss_{task}"] = 0.0
                continue
            term = item_losses(self.model, condition, target).sum() * (world_size / n)
            logs[f"loss_{task}"] = float(term.detach())
            total = term if total is None else total + term
        return {"model": total}, logs


def item_losses(model: Nuwa, condition: Condition, target: Tensor) -> Tensor:
    """Per-item mean token cross-entropy (b,) in nats."""
    logits, _ = model(condition, target)
    logits = logits.flatten(1, -2)  # (b, n, K)
    per_token = F.cross_entropy(logits.transpose(1, 2), target.flatten(1), reduction="none")
    return per_token.mean(dim=1)


@torch.no_grad()
def validation_losses(
    model: Nuwa, data: TokenData, tasks=PRETRAIN_TASKS, *, batch_size: int = 64
) -> dict[str, float]:
    """Mean token cross-entropy (nats) of each task over `data`: {"val_nll_<task>": ...} (a task
    without items in `data`, e.g. T2V on a folder without videos, is left out)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = {}
    for task in tasks:
        total, n = 0.0, data.count(task)
        if not n:
            continue
        for s in range(0, n, batch_size):
            rows = torch.arange(s, min(s + batch_size, n))
            condition, target = data.task_batch(task, rows)
            total += float(item_losses(model, condition.to(device), target.to(device)).sum())
        out[f"val_nll_{task}"] = total / n
    model.train(was)
    return out


def build_model(cfg: Config) -> Nuwa:
    """An untrained model of the pretrained shape (the artifact's `build_fn`)."""
    return Nuwa.from_config(cfg)


def pretrain(
    cfg: Config,
    *,
    workdir: str | Path | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    root=None,
    model: Nuwa | None = None,
) -> tuple[Nuwa, Any, dict[str, float]]:
    """Train NÜWA on `cfg.train.task_mix`; returns (model, TrainResult, metrics).

    Checkpoints go to `workdir` (resumable); the metrics are the training time, the last losses
    per task and the validation loss of every pretraining task on `cfg.pretrain.val_size` items.
    """

    for task, _ in check_task_mix(cfg.train.task_mix):  # a data folder may lack a task's data
        try:
            check_task(cfg.world, cfg.text, task)
        except ValueError as e:
            raise ValueError(f"{e}; leave {task.upper()} out of train.task_mix") from None
    data = token_data(cfg, "train", cfg.pretrain.pool, root=root, progress=progress)
    val = token_data(cfg, "val", cfg.pretrain.val_size, root=root, progress=progress)
    if model is None:
        with torch.random.fork_rng():  # the initial weights depend on cfg.seed alone
            torch.manual_seed(cfg.seed)
            model = build_model(cfg)
    trainable = PretrainTrainable(model, data, cfg)
    result = train(
        trainable,
        cfg.train,
        run_dir=workdir,
        device=resolve_device(cfg.device),
        seed=cfg.seed,
        progress=progress,
        max_steps=max_steps,
        desc="pretrain " + "+".join(trainable.counts),
    )
    model.eval()
    window = max(1, min(20, result.step // 10 or 1))
    metrics: dict[str, float] = {
        "train_seconds": result.seconds,
        "sec_per_step": result.sec_per_step,
        "steps": result.step,
        "parameters": model.num_parameters(),
    }
    for task in trainable.counts:
        metrics[f"train_loss_{task}"] = result.last(f"loss_{task}", window)
    metrics.update(validation_losses(model, val))
    return model, result, metrics


def train_artifact(cfg: Config, *, workdir, progress: bool = True):
    """The "nuwa" artifact's `train_fn`: (model, metrics).

    `workdir` is `<root>/nuwa-<hash>/train`: the tokenizer and the token pools come from the same
    artifact root.
    """
    root = Path(workdir).parent.parent if workdir is not None else None
    model, result, metrics = pretrain(cfg, workdir=workdir, progress=progress, root=root)
    if workdir is not None:
        atomic_write_json(Path(workdir).parent / HISTORY_FILE, result.history, sha256=True)
    return model, metrics


def pretraining_history(cfg: Config, *, root=None) -> dict[str, list[float]]:
    """The training history (step, loss/model, loss_<task>, lr ...) of the "nuwa" artifact."""

    folder = artifact_dir("nuwa", cfg, root=root)
    path = folder / HISTORY_FILE
    if path.is_file():
        try:
            return read_json_verified(path)
        except IntegrityError as e:
            raise ArtifactError(f"{e}; {retrain_hint('nuwa', folder)}") from None

    ckpt = folder / "train" / CKPT_NAME  # the training checkpoint holds the history too
    if ckpt.is_file():
        try:
            return dict(load_checkpoint(ckpt)["history"])
        except CheckpointError as e:
            e.fix = f"to start over from step 0, {retrain_hint('nuwa', folder)}"
            raise
    raise FileNotFoundError(
        f"{path} missing: the model for this config is not trained yet; "
        "call get_or_train('nuwa', cfg) first"
    )


register_artifact(
    "nuwa", train_artifact, SECTIONS, build_fn=build_model, version=VERSION, code=CODE
)
