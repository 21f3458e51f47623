"""The command line: `python -m nuwa_lab COMMAND ...` (`--help` lists the commands).

Each command lives beside the code it drives, in a module with `add_arguments(parser)` and
`run(args) -> int`; this file only maps names to those modules, imported when the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import torch.distributed as dist

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "world": ("nuwa_lab.lab.world_cli", "the Shapes World: preview samples, measure the rate"),
    "bench": ("nuwa_lab.lab.bench", "speed benchmarks, as ratios measured in one process"),
    "probe": ("nuwa_lab.lab.probe_cli", "train / load the probes and print their accuracies"),
    "plan": ("nuwa_lab.lab.plan", "parameters, FLOPs, memory and GPU step time of a preset"),
    "train": (
        "nuwa_lab.lab.train_cli",
        "train the tokenizer and the pretrained model on your own data folder",
    ),
    "recipe": (
        "nuwa_lab.lab.recipe_cli",
        "train an artifact, an ablation arm, a mixture or the whole pipeline (torchrun-ready)",
    ),
    "sweep": (
        "nuwa_lab.lab.experiment.cli",
        "run a sweep file: notebooks x parameter grid, papermill",
    ),
    "lab": (
        "nuwa_lab.lab.job",
        "the main job: every notebook in order, then experiments/reports/<preset>/",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nuwa_lab",
        description="nuwa_lab: NÜWA rebuilt small enough for a laptop CPU.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def leave() -> None:
    """The end of a finished command under torchrun: every rank waits for the others, then leaves
    the process group (`nuwa_lab.train.distributed.setup` joined it).

    Left to the exit-time clean-up (`nuwa_lab.train.distributed.shutdown`, kept for runs that end
    in an error, where a barrier could wait for a rank that is gone), a rank that exits while
    another still talks to it can be aborted by gloo's threads after its work is done ("terminate
    called without an active exception", SIGABRT), and torchrun then reports the run as failed.
    With one process nothing happens. It lives here, not in `nuwa_lab.train`, because every
    artifact's key hashes the code of that package: ending a command is not training."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    code = main()
    leave()  # under torchrun: every rank finished, then the process group is closed
    sys.exit(code)
