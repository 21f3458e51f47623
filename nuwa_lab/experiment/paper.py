"""The paper's own numbers that the report prints beside ours (NÜWA, arXiv 2111.12417).

They were measured on MSCOCO / MSR-VTT with CLIP and Inception networks; ours on the Shapes World
with the lab's probe. They are printed side by side for orientation only, always under the label
`NOT_COMPARABLE`: what can be compared is the ordering of the settings, never the values.

Only numbers quoted in the project's issues are listed here (issue #6: the multi-task ablation;
issue #4: VQ-GAN-Seg). A notebook can quote more of the paper itself by logging `paper_comparison`,
a list of row dicts (e.g. `{"setting": "nearby", "measure": "FID-vid", "paper": ..., "ours": ...}`),
which the report renders as a table under the same label.
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_COMPARABLE = "Shapes World results, not comparable to the paper's datasets"


@dataclass(frozen=True)
class SweepReference:
    """The paper's value of one measure for each setting of a sweep key."""

    sweep: str  # sweep name, e.g. "multitask_ablation"
    key: str  # the sweep's grid key whose values name the paper's settings
    measure: str  # what the paper measured, with its data set
    values: dict[str, float]  # setting (as in the sweep file) -> the paper's value
    source: str  # where in the paper


@dataclass(frozen=True)
class NotebookReference:
    """One number of the paper that a notebook's own measurement corresponds to."""

    notebook: str  # the two-digit prefix, "02"
    measure: str
    paper: str  # the value as printed in the paper, with its unit
    source: str
    metric: str | None = None  # our corresponding metric in the notebook's metrics.json


SWEEP_REFERENCES: tuple[SweepReference, ...] = (
    SweepReference(
        sweep="multitask_ablation",
        key="TASK_MIX",
        measure="CLIPSIM of T2V samples, MSR-VTT (higher is better)",
        values={"t2v": 0.2314, "t2v+t2i": 0.2379, "t2v+t2i+v2v": 0.2439},
        source="NÜWA's multi-task pretraining ablation",
    ),
)

NOTEBOOK_REFERENCES: tuple[NotebookReference, ...] = (
    NotebookReference(
        notebook="02",
        measure="VQ-GAN-Seg pixel accuracy of reconstructed sketches, MSCOCO",
        paper="96.82%",
        source="NÜWA §4 (VQ-GAN-Seg)",
        metric="seg_pixel_accuracy",
    ),
)
