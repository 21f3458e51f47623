"""NÜWA's eight tasks (NÜWA §4): the tasks as data, running them with one sampler, measuring them.

    from nuwa_lab.tasks import TASK_SPECS, run_task, evaluate_task
    from nuwa_lab.recipes import load_kit
    kit = load_kit(cfg, "i2i")
    out = run_task("i2i", model, inputs, tokenizers=kit.tokenizers)  # .pixels, .tokens, .fixed

| module | what |
|---|---|
| `spec` | `TaskSpec`, `TASK_SPECS`: condition, fixed tokens, what is generated, default model |
| `run` | `run_task`, `task_tensors`, `TaskOutput`; the pixel-region -> token-grid rule |
| `metrics` | per-task measurements (probe accuracy, lab-FID/FVD, pixel accuracy, PSNR, edits) |
| `evaluation` | `TaskKit`, `TaskEvaluation`, the sampling options |
| `evaluate` | `evaluate_task` on the test / held-out split |
| `rerank` | `edit_score_fn`: an edit's candidates ranked by the caption, then by the source kept |
| `folder_evaluate`, `folder_metrics` | the tasks on a data folder, measured with its own labels |
| `report` | `metrics_table`, `targets_table` (tiny), `headline_metrics`, `reranking_table` |

Fine-tuning on one task lives in `nuwa_lab.recipes.finetune` (`task_model(name, cfg)` picks the
model a task runs with by default). Importing this package has no side effects.
"""

from nuwa_lab.tasks.evaluate import (
    TaskEvaluation,
    TaskKit,
    asked_objects,
    evaluate_task,
    measure,
    probe_score_fn,
    task_items,
)
from nuwa_lab.tasks.folder_evaluate import (
    FOLDER_TASKS,
    evaluate_folder_task,
    folder_items,
    folder_reconstruction,
    why_not_measured,
)
from nuwa_lab.tasks.metrics import (
    PSNR_CAP_DB,
    completion_metrics,
    given_tokens_kept,
    manipulation_metrics,
    motion_matches,
    object_centroids,
    predicted_motion_accuracy,
    prediction_metrics,
    region_psnr,
    sketch_metrics,
    text_to_visual_metrics,
    turns_at_a_wall,
)
from nuwa_lab.tasks.report import (
    TARGETS,
    breakdown,
    completion_by_hidden_part,
    headline_metrics,
    logged_metrics,
    metrics_table,
    reranking_table,
    rows_table,
    targets_table,
)
from nuwa_lab.tasks.rerank import edit_score_fn
from nuwa_lab.tasks.run import (
    TaskOutput,
    TaskTensors,
    Tokenizers,
    check_inputs,
    has_visible_context,
    mask_code,
    run_task,
    task_tensors,
    tokens_inside,
)
from nuwa_lab.tasks.spec import (
    NOTEBOOK_PAIRS,
    TASK_SPECS,
    TaskSpec,
    get_task,
    given_frames,
    task_for,
)

__all__ = [
    "FOLDER_TASKS",
    "evaluate_folder_task",
    "folder_items",
    "folder_reconstruction",
    "why_not_measured",
    "PSNR_CAP_DB",
    "TARGETS",
    "breakdown",
    "completion_by_hidden_part",
    "headline_metrics",
    "metrics_table",
    "reranking_table",
    "rows_table",
    "targets_table",
    "NOTEBOOK_PAIRS",
    "TASK_SPECS",
    "TaskEvaluation",
    "TaskKit",
    "TaskOutput",
    "TaskSpec",
    "TaskTensors",
    "Tokenizers",
    "asked_objects",
    "check_inputs",
    "completion_metrics",
    "evaluate_task",
    "get_task",
    "given_frames",
    "given_tokens_kept",
    "has_visible_context",
    "logged_metrics",
    "manipulation_metrics",
    "mask_code",
    "measure",
    "motion_matches",
    "object_centroids",
    "predicted_motion_accuracy",
    "prediction_metrics",
    "probe_score_fn",
    "edit_score_fn",
    "region_psnr",
    "run_task",
    "sketch_metrics",
    "task_for",
    "task_items",
    "task_tensors",
    "text_to_visual_metrics",
    "tokens_inside",
    "turns_at_a_wall",
]
