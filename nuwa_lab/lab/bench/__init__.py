"""`python -m nuwa_lab bench TARGET [--json out.json]`: speed measured as ratios in one process.

Each target lives beside the code it measures, as a function `run(args) -> dict` that prints its
table and returns the numbers; this module only maps target names to those functions.
"""

from __future__ import annotations

import argparse
import importlib

from nuwa_lab.train.files import atomic_write_json

# target -> "module:function"
TARGETS: dict[str, str] = {
    "attention": "nuwa_lab.lab.bench.attention:run",
    "model": "nuwa_lab.lab.bench.model:run",
    "step": "nuwa_lab.lab.bench.model:run_step_profile",
    "cost": "nuwa_lab.lab.bench.costs:run_cost_curve",
    "tokenizer": "nuwa_lab.lab.bench.tokenizer:run",
    "peers": "nuwa_lab.lab.bench.peers:run",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to measure")
    parser.add_argument("--json", metavar="OUT", help="also write the measurements to a JSON file")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")


def run(args: argparse.Namespace) -> int:
    if args.target not in TARGETS:
        valid = ", ".join(TARGETS)
        raise SystemExit(f"unknown bench target {args.target!r}; valid targets: {valid}")
    module, function = TARGETS[args.target].split(":")
    results = getattr(importlib.import_module(module), function)(args)
    if args.json:
        atomic_write_json(args.json, results)
        print(f"wrote {args.json}")
    return 0
