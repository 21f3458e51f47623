r"""Evaluating a task end to end: test (or held-out) items -> `run_task` -> the task's metrics.

    kit = load_kit(cfg, "t2i")                       # tokenizers, probes, world (cached artifacts)
    model = task_model("t2i", cfg)                   # pretrained or fine-tuned, per the task's spec
    ev = evaluate_task("t2i", model, kit, split="test")
    ev.metrics["acc_all"], ev.output.pixels, ev.inputs["caption"]

NÜWA evaluates each task on a held-out set with FID / CLIPSIM / PA / ... (§4); here every task is
measured on `cfg.sample.num_eval` items of the world's "test" split and, separately, of the
"held_out" split (scenes with a (shape, colour) pair the training split never shows).

Sampling options come from `cfg.sample` (temperature, the task's own where
`cfg.sample.task_temperatures` names it, top-k, top-p, candidates) and can be overridden per call.
With `candidates > 1` the samples of each condition are re-ranked by how many asked attributes the
probe reads back (the paper re-ranks with CLIP), and TI2I's then by how much of the source they
keep (`nuwa_lab.tasks.rerank`); tasks without a caption have nothing to rank by and reject it.
TI2I draws 4 candidates by default (`cfg.sample.task_candidates`); `candidates=1` gives single
samples.

Every mean over items (a PSNR, a pixel accuracy, the preservation gap) also gets its 95% bootstrap
interval over the items, `<metric>_low` / `<metric>_high` (`nuwa_lab.tasks.item_intervals`).

On a data folder (`world.source = "folder:PATH"`, `kit.folder`) there is no world ground truth:
`evaluate_task` hands over to `nuwa_lab.tasks.folder_evaluate`, which measures T2I, T2V, V2V and
I2I on the folder's own test items with the probe of its own classes.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from nuwa_lab.metrics import ImageProbe, VideoProbe, attribute_accuracy
from nuwa_lab.model import Nuwa
from nuwa_lab.tasks.evaluation import (
    TaskEvaluation,
    TaskKit,
    evaluation_options,
    reconstruction,
    sampling_options,
)
from nuwa_lab.tasks.folder_evaluate import evaluate_folder_task
from nuwa_lab.tasks.item_intervals import item_intervals, item_values
from nuwa_lab.tasks.metrics import (
    completion_metrics,
    manipulation_metrics,
    prediction_metrics,
    sketch_metrics,
    text_to_visual_metrics,
)
from nuwa_lab.tasks.rerank import candidate_score, decoded_score
from nuwa_lab.tasks.run import TaskOutput, run_task
from nuwa_lab.tasks.spec import get_task, given_frames
from nuwa_lab.tokenizer import VQModel
from nuwa_lab.world import TaskDataset, collate, parse_caption

__all__ = [  # TaskEvaluation, TaskKit and sampling_options live in evaluation.py
    "TaskEvaluation",
    "TaskKit",
    "asked_objects",
    "evaluate_task",
    "measure",
    "probe_score_fn",
    "reconstruction",
    "sampling_options",
    "task_items",
]


def task_items(name: str, kit: TaskKit, split: str, n: int, *, offset: int = 0) -> dict[str, Any]:
    """`n` collated `TaskDataset` items of `split` (V2V / TV2V with `spec.given_frames`)."""

    spec = get_task(name)
    extra = {}
    if spec.fixed == "first_frames":
        extra["given_frames"] = given_frames(spec, kit.cfg.tasks)
    data = TaskDataset(spec.name, kit.world, split, n, offset=offset, **extra)
    return collate([data[i] for i in range(len(data))])


def asked_objects(name: str, inputs: dict[str, Any]) -> list[Any]:
    """What each sample should show: the parsed caption (T2I / T2V), else the ground truth objects
    (of the target for manipulation)."""

    spec = get_task(name)
    if spec.condition == "text":
        return [parse_caption(c) for c in inputs["caption"]]
    return list(inputs["objects"])


def probe_pixel_score(probe: ImageProbe | VideoProbe, asked: list[Any], candidates: int):
    """Re-ranking score of `candidates` decoded samples per condition (pixels -> scores): the share
    of asked attributes the probe reads back (plus 1 when all of them are right)."""

    repeated = [a for a in asked for _ in range(candidates)]

    @torch.no_grad()
    def score(pixels: torch.Tensor) -> torch.Tensor:
        scores = []
        for i, objs in enumerate(repeated):
            acc = attribute_accuracy(probe, pixels[i : i + 1], [objs])
            scores.append(sum(acc.values()) / len(acc) + acc["all"])
        return torch.tensor(scores)

    return score


def probe_score_fn(
    probe: ImageProbe | VideoProbe, tokenizer: VQModel, asked: list[Any], candidates: int
):
    """`probe_pixel_score` as the sampler's `score_fn` (tokens -> scores)."""
    return decoded_score(tokenizer, probe_pixel_score(probe, asked, candidates))


def evaluate_task(
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
    """Run task `name` on `n` items of `split` (default `cfg.sample.num_eval`) and measure it.

    seed: the sampling generator's seed (default cfg.seed). real: also compute lab-FID / lab-FVD
    against the items' real pixels (T2I / T2V). sampling: overrides of `cfg.sample`.
    A kit of a data folder (`kit.folder`) is measured without world ground truth, on the folder's
    own items and labels (`nuwa_lab.tasks.folder_evaluate`)."""
    if kit.folder is not None:
        return evaluate_folder_task(
            name, model, kit, split=split, n=n, context=context, seed=seed, real=real, **sampling
        )
    cfg = kit.cfg
    spec = get_task(name)
    n = cfg.sample.num_eval if n is None else n
    inputs = task_items(spec.name, kit, split, n)
    options = evaluation_options(cfg, spec.name, seed, sampling)
    asked = asked_objects(spec.name, inputs)
    probe = kit.probe_for(spec.video)
    if options.get("candidates", 1) > 1 and "score_fn" not in options:
        if spec.condition not in ("text", "new_caption"):
            raise ValueError(
                f"candidates={options['candidates']}: re-ranking reads the caption back with the "
                f"probe, and task {spec.name!r} has no caption; use candidates=1"
            )
        n = options["candidates"]
        caption = probe_pixel_score(probe, asked, n)
        options["score_fn"] = candidate_score(spec.name, caption, kit.tokenizer, inputs, n)
    start = time.perf_counter()
    output = run_task(
        spec.name,
        model,
        inputs,
        tokenizers=kit.tokenizers,
        context=context,
        **options,
    )
    seconds = time.perf_counter() - start
    recon = reconstruction(kit, inputs) if spec.name in ("ti2i", "tv2v") else None
    metrics = measure(spec.name, kit, inputs, output, asked, real=real, recon=recon)
    metrics["n_items"] = len(asked)
    metrics["sample_seconds"] = seconds
    shown = {k: v for k, v in options.items() if k not in ("generator", "score_fn")}
    seg = kit.segmenter.predict(output.pixels) if spec.condition == "sketch" else None
    per_item = item_values(
        spec.name,
        inputs,
        output.pixels,
        segmentation=seg,
        reconstruction=recon,
        fixed=output.fixed,
    )
    for key, value in item_intervals(per_item).items():  # 95% bootstrap intervals over items
        metrics.setdefault(key, value)
    return TaskEvaluation(spec.name, split, inputs, output, metrics, seconds, shown, seg)


def measure(
    name: str,
    kit: TaskKit,
    inputs: dict,
    output: TaskOutput,
    asked: list,
    *,
    real: bool = True,
    recon: torch.Tensor | None = None,
) -> dict[str, float]:
    """The metrics of task `name` for `output` on `inputs` (see nuwa_lab.tasks.metrics); `recon`:
    the tokenizer's round trip of the inputs (TI2I / TV2V; computed here when not given)."""
    spec = get_task(name)
    gen = output.pixels
    probe = kit.probe_for(spec.video)
    tok = dict(tokens=output.tokens, fixed=output.fixed, given=output.given_tokens)
    if spec.name in ("t2i", "t2v"):
        return text_to_visual_metrics(probe, gen, asked, real=inputs["pixels"] if real else None)
    if spec.name in ("s2i", "s2v"):
        return sketch_metrics(kit.segmenter, gen, inputs["sketch"])
    if spec.name == "i2i":
        return completion_metrics(probe, gen, inputs["pixels"], inputs["visible"], asked, **tok)
    if spec.name == "v2v":
        given = inputs["given_frames"]
        g = given if isinstance(given, int) else int(given[0])
        return prediction_metrics(probe, gen, inputs["pixels"], g, asked, **tok)
    recon = reconstruction(kit, inputs) if recon is None else recon
    region = (
        dict(edit_region=inputs["edit_region"])
        if spec.name == "ti2i"
        else dict(given_frames=list(inputs["given_frames"]))
    )
    changed = list(inputs["changed"])
    return manipulation_metrics(
        probe, gen, inputs["pixels"], asked, changed, reconstruction=recon, **region, **tok
    )
