r"""Evaluating a task on a data folder: its own test items -> `run_task` -> measures without truth.

    cfg = make_config("tiny", **{"world.source": "folder:data/digits"})
    kit = load_kit(cfg, "t2i")                      # tokenizer, caption words, the label probe
    ev = evaluate_task("t2i", model, kit)           # hands over to evaluate_folder_task
    ev.metrics["acc_class"], ev.metrics["acc_class_low"], ev.metrics["acc_class_high"]

A folder has no world ground truth, so what is measured is what the folder itself knows
(`nuwa_lab.tasks.folder_metrics`): the class of each item (its record's "label", "class" or
"digit" field, read back by the label probe), the direction of a video (its "direction" field,
read back from the motion of the ink), the pixels of the held-out items (V2V's later frames,
I2I's hidden part) and the folder's own edit pairs (`edits.jsonl`, `nuwa_lab.world.edits`: TI2I
and TV2V, the target's class and direction, the kept part against the source). A task the folder
lacks the data of (S2I and S2V need segmentation maps, TI2I and TV2V edit pairs of their kind)
raises naming what is missing, as does T2I / T2V on a folder whose records carry no class.

Items are the first `n` of the split (all of it when it has fewer). With `candidates > 1`, the
samples of each caption are re-ranked by the probability the label probe gives the asked class.

`folder_reconstruction(kit)` measures the tokenizer on the folder's test pictures: PSNR, SSIM,
LPIPS (its backbone named), codebook usage, and with the probe its accuracy on the originals and on
the reconstructions and `label_fid` between them.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from nuwa_lab.metrics import codebook_usage, lpips_backbone, lpips_distance
from nuwa_lab.metrics.label_probe import LabelProbe
from nuwa_lab.model import Nuwa
from nuwa_lab.tasks.evaluation import TaskEvaluation, TaskKit, evaluation_options, reconstruction
from nuwa_lab.tasks.folder_metrics import (
    completion_scores,
    manipulation_scores,
    mean_scores,
    prediction_scores,
    reconstruction_scores,
    text_to_image_scores,
    text_to_video_scores,
)
from nuwa_lab.tasks.rerank import candidate_score
from nuwa_lab.tasks.run import run_task
from nuwa_lab.tasks.spec import get_task, given_frames
from nuwa_lab.world.edits import KIND_OF_TASK
from nuwa_lab.world.labels import class_indices, class_names, directions, require_classes
from nuwa_lab.world.source import EDIT_TASKS, NEEDS, FolderSource, lacks

FOLDER_TASKS = ("t2i", "t2v", "v2v", "i2i", "ti2i", "tv2v")


def folder_items(name: str, kit: TaskKit, split: str, n: int) -> dict[str, Any]:
    """The first `n` items of `split` (fewer when the split has fewer) as `run_task` inputs, with
    each item's class index ("label", -1 without one) and direction ("direction", or None)."""
    source = folder_of(kit)
    spec = get_task(name)
    lacking = lacks(spec.name, source.root)
    if lacking:
        raise ValueError(lacking)
    if spec.name not in FOLDER_TASKS:
        raise ValueError(f"{spec.name.upper()} is not measured on a data folder; valid: "
                         f"{', '.join(FOLDER_TASKS)}")  # fmt: skip
    source.check(spec.name)
    edits = spec.name in EDIT_TASKS
    kind = KIND_OF_TASK[spec.name] if edits else NEEDS[spec.name][0]
    available = source.count_edits(kind, split) if edits else source.count(kind, split)
    if not available:
        what = f"{kind} edit pairs" if edits else f"{kind}s"
        raise ValueError(
            f"{spec.name.upper()} is measured on the {split} split, which has no {what}: "
            f"{source.summary()}"
        )
    n = min(n, available)
    extra = {}
    if spec.name in ("v2v", "tv2v"):
        extra["given_frames"] = given_frames(spec, kit.cfg.tasks)
    inputs = source.task_items(spec.name, split, n, **extra)
    inputs["label"] = class_indices(source, kind, split, edits=edits)[:n]
    moves = directions(source, split, edits=edits) if kind == "video" else [None] * available
    inputs["direction"] = moves[:n]
    return inputs


def folder_of(kit: TaskKit) -> FolderSource:
    if kit.folder is None:
        raise ValueError("this kit has no data folder; load it with a folder config's load_kit")
    return kit.folder


def probe_of(kit: TaskKit, task: str, *, required: bool) -> LabelProbe | None:
    """The kit's label probe; for a task measured by it (T2I, T2V) an error when there is none."""
    if kit.label_probe is None and required:
        require_classes(folder_of(kit), f"{task.upper()} on a data folder (its label probe)")
        raise ValueError(
            f"{task.upper()} on a data folder is measured by the label probe; load the kit with "
            f"load_kit(cfg, {task!r}) (probes=True) to train or load it"
        )
    return kit.label_probe


def why_not_measured(task: str, kit: TaskKit, split: str = "test") -> str | None:
    """None when `task` can be measured on the folder's `split`; else the reason, the error that
    `evaluate_task` would raise (e.g. "T2V needs captioned videos: PATH has 0")."""
    try:
        folder_items(task, kit, split, 1)
        probe_of(kit, task, required=get_task(task).condition == "text")
    except ValueError as e:
        return str(e)
    return None


def label_pixel_score(probe: LabelProbe, labels: torch.Tensor, candidates: int):
    """Re-ranking score of `candidates` decoded samples per caption (pixels -> scores): the probe's
    probability of the asked class (0 for an item without one)."""
    asked = labels.repeat_interleave(candidates)

    @torch.no_grad()
    def score(pixels: torch.Tensor) -> torch.Tensor:
        p = probe.probabilities(pixels)
        chosen = p.gather(1, asked.clamp(min=0)[:, None])[:, 0]
        return torch.where(asked >= 0, chosen, torch.zeros_like(chosen))

    return score


def evaluate_folder_task(
    name: str,
    model: Nuwa,
    kit: TaskKit,
    *,
    split: str = "test",
    n: int | None = None,
    context: bool = False,
    seed: int | None = None,
    real: bool = True,
    **sampling: Any,
) -> TaskEvaluation:
    """Run task `name` on up to `n` items of the folder's `split` (default `cfg.sample.num_eval`)
    and measure it (see the module docstring). real: also `label_fid` against the items' pixels."""
    cfg, spec = kit.cfg, get_task(name)
    inputs = folder_items(spec.name, kit, split, cfg.sample.num_eval if n is None else n)
    probe = probe_of(kit, spec.name, required=spec.condition == "text")
    options = evaluation_options(cfg, spec.name, seed, sampling)
    if options.get("candidates", 1) > 1 and "score_fn" not in options:
        if spec.condition not in ("text", "new_caption"):
            raise ValueError(
                f"candidates={options['candidates']}: re-ranking reads the asked class back "
                f"with the probe, and task {spec.name!r} has no caption; use candidates=1"
            )
        n = options["candidates"]
        caption = label_pixel_score(probe, inputs["label"], n)
        options["score_fn"] = candidate_score(spec.name, caption, kit.tokenizer, inputs, n)
    start = time.perf_counter()
    tokenizers = kit.tokenizers
    output = run_task(spec.name, model, inputs, tokenizers=tokenizers, context=context, **options)
    seconds = time.perf_counter() - start
    gen, truth, labels = output.pixels, inputs["pixels"], inputs["label"]
    tok = dict(tokens=output.tokens, fixed=output.fixed, given=output.given_tokens)
    reference = truth if real else None
    if spec.name == "t2i":
        metrics = text_to_image_scores(probe, gen, labels, real=reference)
    elif spec.name == "t2v":
        metrics = text_to_video_scores(probe, gen, labels, inputs["direction"], real=reference)
    elif spec.name == "v2v":
        g = int(inputs["given_frames"][0])
        metrics = prediction_scores(probe, gen, truth, g, labels, **tok)
    elif spec.name == "i2i":
        metrics = completion_scores(probe, gen, truth, inputs["visible"], labels, **tok)
    else:  # ti2i, tv2v: kept against the source, edited against the target
        edit = (
            {"edit_region": inputs["edit_region"]}
            if spec.name == "ti2i"
            else {"given_frames": inputs["given_frames"], "directions": inputs["direction"]}
        )
        recon = reconstruction(kit, inputs)
        target = inputs["target"]
        metrics = manipulation_scores(
            probe, gen, truth, target, labels, reconstruction=recon, **edit, **tok
        )
    metrics["n_items"] = len(labels)
    metrics["sample_seconds"] = seconds
    shown = {k: v for k, v in options.items() if k not in ("generator", "score_fn")}
    return TaskEvaluation(spec.name, split, inputs, output, metrics, seconds, shown)


@torch.no_grad()
def folder_reconstruction(
    kit: TaskKit, *, split: str = "test", n: int | None = None, lpips: bool = True
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """(scores, originals, reconstructions) of the tokenizer on up to `n` pictures of `split`
    (default `cfg.tokenizer.eval_samples`): the images, or the video frames when it has none."""
    source = folder_of(kit)
    n = kit.cfg.tokenizer.eval_samples if n is None else n
    kind = "image" if source.count("image", split) else "video"
    count = min(n, source.count(kind, split))
    if not count:
        raise ValueError(f"no {split} pictures to score the tokenizer on: {source.summary()}")
    originals = source.batch(kind, split, list(range(count))).pixels
    labels = class_indices(source, kind, split)[:count]
    if kind == "video":  # every frame, with its video's class
        labels = labels.repeat_interleave(originals.shape[1])
        originals = originals.flatten(0, 1)
    vq = kit.tokenizer.eval()
    device = next(vq.parameters()).device
    codes = vq.encode(originals.to(device))
    recon = vq.decode(codes).cpu()
    scores: dict[str, Any] = {"n_pictures": len(originals), "kind": kind}
    scores |= reconstruction_scores(kit.label_probe, recon, originals, labels)
    if lpips:
        scores |= mean_scores(lpips_distance(recon, originals).double().numpy(), "lpips")
        scores["lpips_backbone"] = lpips_backbone()
    usage = codebook_usage(codes, vq.codebook_size)
    scores["codebook_usage"], scores["perplexity"] = usage["usage"], usage["perplexity"]
    scores["classes"] = len(class_names(source))
    return scores, originals, recon
