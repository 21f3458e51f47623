"""Registers the artifact kind "nuwa" (the multi-task pretrained model, `nuwa_lab.pretrain`).

`nuwa_lab.artifacts.get_or_train("nuwa", cfg)` imports `nuwa_lab.model`, which imports this module;
the training code itself is imported only when an artifact has to be trained or rebuilt.
"""

from __future__ import annotations

from typing import Any

from nuwa_lab.artifacts import register_artifact
from nuwa_lab.tokenizer.trainer import CODE as TOKENIZER_CODE

VERSION = "2"  # the code below is hashed into it too (nuwa_lab.artifacts.code_version)
# the code that decides the pretrained weights: the model, its attention, pretraining, the tokens
CODE = ("nuwa_lab.model", "nuwa_lab.attention", "nuwa_lab.pretrain", *TOKENIZER_CODE)
# what the pretrained model depends on (the artifact's hash): data, tokenizers, model, loop, seed
SECTIONS = ("world", "text", "tokenizer", "model", "train", "pretrain", "seed")


def _train(cfg: Any, *, workdir, progress: bool = True):
    from nuwa_lab.pretrain import train_artifact

    return train_artifact(cfg, workdir=workdir, progress=progress)


def _build(cfg: Any):
    from nuwa_lab.pretrain import build_model

    return build_model(cfg)


def register() -> None:
    register_artifact("nuwa", _train, SECTIONS, build_fn=_build, version=VERSION, code=CODE)
