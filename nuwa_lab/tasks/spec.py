r"""NÜWA's eight tasks as data (NÜWA §4): what the encoder reads, which decoder tokens are given.

One model and one sampler serve every task (`nuwa_lab.model.sample.sample`); a task is only a
choice of condition $C$ and of the set $F$ of *fixed* decoder positions, whose codes are given
(teacher-forced) instead of sampled:

$$ y_n = \bar y_n \ (n \in F), \qquad y_n \sim p_\theta(y_n \mid y_{<n}, C) \ (n \notin F) $$

| task | encoder gets ($C$) | fixed decoder tokens ($F$) | generated | default model |
|---|---|---|---|---|
| t2i  | caption              | none                        | image              | fine-tuned |
| s2i  | image sketch tokens  | none                        | image              | fine-tuned |
| i2i  | `<none>` (variant: the visible tokens) | visible region | hidden region | zero-shot |
| ti2i | new caption          | outside the edit region     | edit region        | zero-shot |
| t2v  | caption              | none                        | video              | fine-tuned |
| s2v  | video sketch tokens  | none                        | video              | fine-tuned |
| v2v  | `<none>`             | first `given_frames` frames | later frames       | fine-tuned |
| tv2v | new caption          | first `edit_given_frames`   | later frames       | zero-shot |

"fine-tuned": S2I / S2V run from a model fine-tuned on them (the pretrained model never saw a
sketch), and T2I, T2V and V2V, the pretraining tasks (`nuwa_lab.recipes.pretrain`), from models
fine-tuned
on them, as the paper fine-tunes on MSCOCO, Kinetics and BAIR: a third of a short mixture leaves
each far behind (`nuwa_lab.recipes.finetune`; the pretrained model stays one `MODEL="pretrained"`
away). T2V and S2V start their fine-tuning from the T2I / S2I models, V2V from the T2V one
(`nuwa_lab.recipes.finetune.FINETUNE_START`).
"pretrained" (the spec's third kind) is a task the pretrained model runs as is; none by default.
"zero-shot": a model runs a task it was never trained on, only through fixed tokens and the
condition (the paper's I2I, TI2I and TV2V): the pretrained model for I2I, the models fine-tuned on
T2I / T2V for TI2I / TV2V, whose caption condition they share
(`nuwa_lab.recipes.finetune.ZERO_SHOT_BASE`); fine-tuning on them is offered as a variant.

Axis letters: b batch, t h w token grid, H W pixels, f the tokenizer's downsampling factor.
"""

from __future__ import annotations

from dataclasses import dataclass

from nuwa_lab.config import TaskConfig

CONDITIONS = ("text", "sketch", "none", "new_caption")
FIXED = ("none", "visible", "outside_edit", "first_frames")
TRAINING = ("pretrained", "finetuned", "zero_shot")


@dataclass(frozen=True)
class TaskSpec:
    """One of NÜWA's eight tasks, as data.

    Attributes:
        name: the registry key ("t2i", ...), as in `nuwa_lab.world.TASKS`.
        title: a readable name.
        modality: "image" (target grid (1, h, w)) or "video" (target grid (t, h, w)).
        condition: what the encoder reads: "text" (the caption), "sketch" (VQ-GAN-Seg tokens of the
            class map), "none" (the constant `<none>`), "new_caption" (the caption of the edit).
        fixed: which decoder tokens are given: "none", "visible" (tokens whose whole pixel patch is
            visible), "outside_edit" (tokens whose patch does not touch the edit region),
            "first_frames" (every token of the first `given_frames` frames).
        generates: what the sampler produces.
        training: how the default model learned the task: "pretrained", "finetuned", "zero_shot".
        inputs: the keys `run_task` needs (the `TaskDataset` item keys, batched with `collate`).
        target: the key of the ground truth the output is compared with.
        pair: the task of the other modality with the same mechanism (for the notebooks' MODALITY).
    """

    name: str
    title: str
    modality: str
    condition: str
    fixed: str
    generates: str
    training: str
    inputs: tuple[str, ...]
    target: str
    pair: str

    def __post_init__(self) -> None:
        checks = (
            ("modality", self.modality, ("image", "video")),
            ("condition", self.condition, CONDITIONS),
            ("fixed", self.fixed, FIXED),
            ("training", self.training, TRAINING),
        )
        for field, value, valid in checks:
            if value not in valid:
                raise ValueError(f"{field} {value!r} is not one of {', '.join(valid)}")

    @property
    def zero_shot(self) -> bool:
        return self.training == "zero_shot"

    @property
    def video(self) -> bool:
        return self.modality == "video"


_ROWS = (
    # name, title, modality, condition, fixed, generates, training, inputs, target, pair
    ("t2i", "text-to-image", "image", "text", "none", "the whole image", "finetuned",
     ("caption",), "pixels", "t2v"),
    ("s2i", "sketch-to-image", "image", "sketch", "none", "the whole image", "finetuned",
     ("sketch",), "pixels", "s2v"),
    ("i2i", "image completion", "image", "none", "visible", "the hidden region", "zero_shot",
     ("pixels", "visible"), "pixels", "v2v"),
    ("ti2i", "text-guided image manipulation", "image", "new_caption", "outside_edit",
     "the edit region", "zero_shot", ("pixels", "new_caption", "edit_region"), "target", "tv2v"),
    ("t2v", "text-to-video", "video", "text", "none", "the whole video", "finetuned",
     ("caption",), "pixels", "t2i"),
    ("s2v", "sketch-to-video", "video", "sketch", "none", "the whole video", "finetuned",
     ("sketch",), "pixels", "s2i"),
    ("v2v", "video prediction", "video", "none", "first_frames", "the later frames", "finetuned",
     ("pixels", "given_frames"), "pixels", "i2i"),
    ("tv2v", "text-guided video manipulation", "video", "new_caption", "first_frames",
     "the later frames, following the new caption", "zero_shot",
     ("pixels", "new_caption", "given_frames"), "target", "ti2i"),
)  # fmt: skip
TASK_SPECS: dict[str, TaskSpec] = {row[0]: TaskSpec(*row) for row in _ROWS}

# the notebooks' pairs: notebook -> (image task, video task)
NOTEBOOK_PAIRS = {
    "06_text_to_visual": ("t2i", "t2v"),
    "07_sketch_to_visual": ("s2i", "s2v"),
    "08_completion_and_prediction": ("i2i", "v2v"),
    "09_text_guided_manipulation": ("ti2i", "tv2v"),
}


def get_task(name: str) -> TaskSpec:
    """The `TaskSpec` of `name`; an unknown name lists the valid ones."""
    if isinstance(name, TaskSpec):
        return name
    if name not in TASK_SPECS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_SPECS)}")
    return TASK_SPECS[name]


def given_frames(task: str | TaskSpec, tasks_cfg: TaskConfig) -> int:
    """Leading frames given as fixed tokens: `tasks.given_frames` for V2V (two by default: one
    frame shows no motion), `tasks.edit_given_frames` for TV2V (the new caption steers the rest)."""
    spec = get_task(task)
    if spec.fixed != "first_frames":
        raise ValueError(f"task {spec.name!r} has no given frames; V2V and TV2V do")
    return tasks_cfg.edit_given_frames if spec.name == "tv2v" else tasks_cfg.given_frames


def task_for(image_task: str, modality: str) -> TaskSpec:
    """The task of `modality` ("image" | "video") in the pair of `image_task` (e.g. t2i -> t2v)."""
    spec = get_task(image_task)
    if modality not in ("image", "video"):
        raise ValueError(f"MODALITY must be 'image' or 'video', got {modality!r}")
    return spec if spec.modality == modality else get_task(spec.pair)
