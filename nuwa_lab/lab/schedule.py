"""The main job's schedule: what `make lab` will run, what each notebook needs, how long it takes.

- `estimate(folder, preset, name, params)`: the minutes one run of the lab is expected to take:
  its wall time in an earlier run record of this checkout (`experiments/runs/lab-<preset>/<name>/
  run.json`, kept even when stale: a notebook's code changes more often than its cost), else the
  README's time at tiny (`TYPICAL_MINUTES`), else unknown. `expected_time` adds them up.
- `needed_artifacts(notebook, params)`: the cached artifacts (`nuwa_lab.recipes.cache`) a notebook
  loads, or trains when they are missing, each with the config the notebook builds it from. The
  table is read off the notebooks' code cells; a notebook it does not know needs nothing.
- `describe_plan(...)`: the text of `python -m nuwa_lab lab --dry-run`.

A run of the lab is `(stage, notebook, params, name)`, as `nuwa_lab.lab.job.lab_runs` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuwa_lab.config import Config, make_config
from nuwa_lab.lab.experiment.notebook import notebook_parameters
from nuwa_lab.lab.experiment.runner import RUN_FILE, stale_reason
from nuwa_lab.lab.progress import duration
from nuwa_lab.recipes import artifact_dir, default_root, tokenizer_kind
from nuwa_lab.recipes.ablation import ablation_config
from nuwa_lab.recipes.cache import META_FILE
from nuwa_lab.recipes.finetune import ZERO_SHOT_BASE, artifact_kind, start_chain
from nuwa_lab.recipes.pretrain import parse_task_mix
from nuwa_lab.tasks import get_task, task_for
from nuwa_lab.tokenizer.evaluate import compression_configs, describe

Run = tuple[str, Path, dict[str, Any], str]  # (stage, notebook, parameters, run folder name)

# Minutes per run at tiny on 2 CPU cores, from a `make lab` that trained everything (the README's
# notebooks table), by notebook number and MODALITY; the others take under a minute.
TYPICAL_MINUTES: dict[str, dict[str, float]] = {
    "tiny": {
        "02": 8, "04": 5, "05": 8,
        "06-image": 6, "06-video": 11, "07-image": 2.5, "07-video": 5,
        "08-image": 1, "08-video": 10, "09-image": 1, "09-video": 1, "11": 14,
    },
}  # fmt: skip
OTHER_MINUTES = 0.5  # a notebook the table does not list ("seconds" in the README)

# The task a task notebook runs at MODALITY="image" (its video twin at "video"): its third cell
TASK_NOTEBOOKS = {"06": "t2i", "07": "s2i", "08": "i2i", "09": "ti2i"}
# A word on a notebook, said under it in the plan
NOTES = {
    "04": "its S2V model trains from scratch in the run folder, never cached",
    "10": "always runs again: it reads the runs, which may be new",
    "11": "trains its own tokenizer, probe, model, T2I and T2V on the digits (goal: 15 min)",
}


@dataclass(frozen=True)
class Estimate:
    """Expected minutes of one run (None: unknown) and where the number comes from."""

    minutes: float | None
    source: str  # "earlier run", "README, tiny", "no estimate"


def estimate(folder: Path, preset: str, name: str, params: dict[str, Any]) -> Estimate:
    """The wall time of `name` in an earlier successful run record, else the README's, else None.

    (A failed run's time says how long it ran before it failed, not how long the notebook takes.)
    The record is read without its hash check (`runner.read_json` refuses an unverified one): a
    damaged one only costs the estimate.
    """
    try:
        record = json.loads((Path(folder) / name / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("status") == "ok" and record.get("wall_time_s"):
        return Estimate(record["wall_time_s"] / 60, "earlier run")
    if preset in TYPICAL_MINUTES:
        key = name[:2] + (f"-{params['MODALITY']}" if "MODALITY" in params else "")
        return Estimate(TYPICAL_MINUTES[preset].get(key, OTHER_MINUTES), f"README, {preset}")
    return Estimate(None, "no estimate")


def rough(minutes: float) -> str:
    """`under a minute`, `31 min`, `1.4 h`: a total to plan by, not a measurement."""
    if minutes < 1:
        return "under a minute"
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def expected_time(estimates: list[Estimate], *, left: bool = False) -> str:
    """`about 31 min (8 runs: 6 timed by an earlier run, 2 from the README, tiny)`; with
    `left=True`, `about 31 min left (...)`."""
    if not estimates:
        return "nothing left" if left else "nothing to run"
    known = [e.minutes for e in estimates if e.minutes is not None]
    sources: dict[str, int] = {}
    for e in estimates:
        sources[e.source] = sources.get(e.source, 0) + 1
    how = ", ".join(
        f"{n} without an estimate"
        if s == "no estimate"
        else f"{n} timed by an earlier run"
        if s == "earlier run"
        else f"{n} from the {s}"
        for s, n in sources.items()
    )
    total = f"about {rough(sum(known))}" if known else "unknown time"
    runs = f"{len(estimates)} run{'s' if len(estimates) != 1 else ''}"
    return f"{total}{' left' if left else ''} ({runs}: {how})"


def will_run(run: Run, folder: Path, *, force: bool, always: bool) -> tuple[bool, str]:
    """(runs?, why): what `execute_run` will decide for `run` (`always`: the results stage)."""
    _, notebook, params, name = run
    reason = stale_reason(Path(folder) / name, params, notebook)
    if reason is None and not (force or always):
        return False, "finished earlier: skipped"
    return True, reason or ("always runs" if always else "--force")


def notebook_values(notebook: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The notebook's parameter values in a run: its declared defaults, the lab's over them."""
    defaults = {name: p.default for name, p in notebook_parameters(notebook).items()}
    return {**defaults, **params}


def notebook_config(prefix: str, values: dict[str, Any]) -> Config:
    """The config the notebook builds from its parameters (its imports cell), by number."""
    overrides: dict[str, Any] = {}
    if prefix == "02":
        overrides["tokenizer.downsample"] = values["DOWNSAMPLE"]
    if prefix == "05":
        overrides["train.task_mix"] = parse_task_mix(values["TASK_MIX"])
    cfg = make_config(
        values.get("PRESET", "tiny"),
        seed=values.get("SEED", 0),
        device=values.get("DEVICE", "auto"),
        **overrides,
    )
    if prefix == "04":
        cfg = ablation_config(cfg, values["ATTENTION"], steps=values["STEPS"])
    return cfg


def kit_artifacts(cfg: Config, *tasks: str) -> list[tuple[str, Config]]:
    """What `nuwa_lab.recipes.kit.load_kit(cfg, *tasks)` loads: tokenizers and probes."""
    specs = [get_task(t) for t in tasks]
    kinds = [tokenizer_kind(cfg)]
    kinds += ["vqgan_seg"] if any(s.condition == "sketch" for s in specs) else []
    kinds += ["probe"] if any(not s.video for s in specs) else []
    kinds += ["video_probe"] if any(s.video for s in specs) else []
    kinds += ["segmenter"] if any(s.condition == "sketch" for s in specs) else []
    return [(kind, cfg) for kind in kinds]


def model_chain(task: str, variant: str = "default") -> list[str]:
    """The model `recipes.finetune.task_model(task, cfg, variant=...)` loads, then what it
    trains from when missing, and so on: ["nuwa_finetuned_t2v", "nuwa_finetuned_t2i", "nuwa"]."""
    spec = get_task(task)
    if variant == "context":
        return [artifact_kind(spec.name, context=True), "nuwa"]
    if variant == "finetuned" or (variant == "default" and spec.training == "finetuned"):
        return [artifact_kind(t) for t in start_chain(spec.name)] + ["nuwa"]
    if variant == "default" and spec.name in ZERO_SHOT_BASE:
        return [artifact_kind(t) for t in start_chain(ZERO_SHOT_BASE[spec.name])] + ["nuwa"]
    return ["nuwa"]


def needed_artifacts(notebook: Path, params: dict[str, Any]) -> list[list[tuple[str, Config]]]:
    """The artifacts `notebook` needs with `params`, as chains [(kind, cfg), ...]: the first of a
    chain is what the notebook loads; each later one is needed only to train the one before it.

    Read off the notebooks' code cells (02 the tokenizers, probe and compression variants; 04 the
    S2V kit; 05 the tokenizer, the pretrained model and the T2V / T2I kits; 06-09 their task's kit
    and model); a notebook not listed needs nothing."""
    prefix = notebook.name[:2]
    values = notebook_values(notebook, params)
    if prefix not in ("02", "04", "05", *TASK_NOTEBOOKS):
        return []
    cfg = notebook_config(prefix, values)
    if prefix == "02":
        chains = [[(kind, cfg)] for kind in ("vqvae", "vqgan", "probe")]
        kind = values.get("ABLATION_KIND", "vqvae")
        chains += [[(kind, variant)] for variant in compression_configs(cfg).values()]
        chains += [[("vqgan_seg", cfg)]]
    elif prefix == "04":
        chains = [[a] for a in kit_artifacts(cfg, "s2v")]
    elif prefix == "05":
        chains = [[(tokenizer_kind(cfg), cfg)], [("nuwa", cfg)]]
        chains += [[a] for a in kit_artifacts(cfg, "t2v", "t2i")]
    else:
        task = task_for(TASK_NOTEBOOKS[prefix], values["MODALITY"]).name
        chains = [[a] for a in kit_artifacts(cfg, task)]
        chains += [[(kind, cfg) for kind in model_chain(task, values.get("MODEL", "default"))]]
    seen, unique = set(), []
    for chain in chains:  # 02's first compression variant is its own setting: listed once
        folder = artifact_dir(*chain[0]).name
        if folder not in seen:
            seen.add(folder)
            unique.append(chain)
    return unique


def artifact_label(kind: str, cfg: Config, base: Config) -> str:
    """`vqgan`, or `vqvae (f=8, 32 px -> 4x4 tokens)` for a tokenizer at another setting."""
    if kind in ("vqgan", "vqvae") and (cfg.tokenizer != base.tokenizer or cfg.world != base.world):
        return f"{kind} ({describe(cfg)})"
    return kind


def artifact_lines(
    chains: list[list[tuple[str, Config]]],
    name: str,
    trained_by: dict[Path, str],
    root: Path | None,
    base: Config,
) -> list[str]:
    """One line per artifact: cached, trained by an earlier run of this plan, or trained here.

    `trained_by` (folder -> run name) is updated with what this run will train."""
    lines = []
    for chain in chains:
        for i, (kind, cfg) in enumerate(chain):
            folder = artifact_dir(kind, cfg, root=root)
            if (folder / META_FILE).is_file():
                status = "cached"
            elif folder in trained_by:
                status = f"trained earlier by {trained_by[folder]}"
            else:
                status = "trains here"
                trained_by[folder] = name
            why = f", to train {chain[i - 1][0]} from it" if i else ""
            lines.append(f"{artifact_label(kind, cfg, base):<20} {status}{why}  ({folder.name})")
            if status != "trains here":
                break
    return lines


def describe_plan(
    runs: list[Run],
    *,
    preset: str,
    folder: Path,
    results_stage: str,
    force: bool = False,
    sweeps: bool = False,
    preview: bool = True,
    artifacts_root: Path | None = None,
) -> str:
    """The plan of the lab, as text: stages, runs (parameters, run or skip, artifacts, time)."""
    root = Path(artifacts_root or default_root())
    lines = [
        f"lab plan at preset {preset} (--dry-run: nothing runs)",
        f"runs: {folder}",
        f"artifacts: {root}",
    ]
    if preview:
        exists = (Path(folder) / "world_preview.png").exists()
        lines.append(f"world preview: {'exists' if exists and not force else 'will be drawn'}")
    trained_by: dict[Path, str] = {}
    expected, skipped, stage = [], 0, None
    for run in runs:
        run_stage, notebook, params, name = run
        if run_stage != stage:
            stage = run_stage
            lines += ["", f"{stage}:"]
            if sweeps and stage == results_stage:
                lines.append("  (first the ablation sweeps of experiments/*.yaml: no estimate)")
        runs_it, why = will_run(run, folder, force=force, always=run_stage == results_stage)
        if not runs_it:
            skipped += 1
            lines.append(f"  {name:<36} {why}")
            continue
        guess = estimate(folder, preset, name, params)
        expected.append(guess)
        if guess.minutes is None:
            time_text = "no estimate"
        else:
            time_text = f"~{duration(60 * guess.minutes)} ({guess.source})"
        lines.append(f"  {name:<36} runs ({why}), {time_text}")
        shown = " ".join(f"{k}={v}" for k, v in params.items() if k != "PRESET")
        if shown:
            lines.append(f"      parameters: {shown}")
        try:
            chains = needed_artifacts(notebook, params)
            base = notebook_config(notebook.name[:2], notebook_values(notebook, params))
        except (KeyError, ValueError) as e:  # a notebook whose parameters the table does not fit
            lines.append(f"      artifacts: not known ({type(e).__name__}: {e})")
            continue
        for line in artifact_lines(chains, name, trained_by, root, base):
            lines.append(f"      {line}")
        if notebook.name[:2] in NOTES:
            lines.append(f"      ({NOTES[notebook.name[:2]]})")
    lines += [
        "",
        f"{len(expected)} of {len(runs)} runs will run, {skipped} finished earlier (skipped).",
        f"expected time on this machine: {expected_time(expected)}"
        + (", plus the sweeps" if sweeps else ""),
    ]
    return "\n".join(lines)
