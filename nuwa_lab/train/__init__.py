"""Training: one loop for every model and what a long run needs around it (NÜWA §4.1, laptop scale).

    from nuwa_lab.train import train, SimpleTrainable
    run = train(SimpleTrainable(model, batch_fn, loss_fn, cfg.train), cfg.train, run_dir="runs/x")

| module | what |
|---|---|
| `loop` | `train`: warm-up + cosine schedule, clipping, NaN guard, checkpoints, exact resume |
| `trainable` | the `Trainable` protocol the loop trains, `SimpleTrainable`, `make_adamw`, seeds |
| `checkpoint` | checkpoints written atomically, read back with a clear error |
| `distributed` | data parallelism under `torchrun` (gloo on CPU, NCCL on GPU) |
| `files` | atomic writes (temporary file, fsync, rename) for everything the lab stores |

This layer knows nothing of the artifact cache or of what is trained: `nuwa_lab.recipes` does.
"""

from nuwa_lab.train.checkpoint import CheckpointError
from nuwa_lab.train.distributed import rank_slice
from nuwa_lab.train.loop import NonFiniteLossError, TrainResult, train
from nuwa_lab.train.trainable import SimpleTrainable, Trainable, make_adamw, step_generator

__all__ = [
    "CheckpointError",
    "NonFiniteLossError",
    "SimpleTrainable",
    "TrainResult",
    "Trainable",
    "make_adamw",
    "rank_slice",
    "step_generator",
    "train",
]
