"""The names the code knows: every choice a config string may take, checked by make_config.

Kept here, at the bottom layer, so that make_config can check them before anything runs. The
attention patterns, causal rules and borders are defined here only (nuwa_lab.attention imports
them); tests/unit/test_bad_inputs.py checks that each other list equals the registry of the
module named beside it.
"""

from __future__ import annotations

import re

ATTENTION_PATTERNS = ("full", "axial", "block", "nearby")  # nuwa_lab.attention.PATTERNS
CAUSAL_RULES = ("raster", "quadrant")  # nuwa_lab.attention.CAUSAL_RULES
BORDERS = ("truncate", "shift")  # nuwa_lab.attention.BORDERS
TOKENIZER_KINDS = ("vqgan", "vqvae")  # the tokenizers whose codes the model predicts
ENCODER_NORMS = ("layer", "group")  # nuwa_lab.tokenizer.nets.NORMS
CODEBOOK_INITS = ("kmeans++", "random")  # nuwa_lab.tokenizer.quantizer.INITS
REC_LOSSES = ("l1", "l2", "l1+l2")  # nuwa_lab.tokenizer.losses.REC_LOSSES
TASKS = ("t2i", "s2i", "i2i", "ti2i", "t2v", "s2v", "v2v", "tv2v")  # nuwa_lab.world.TASKS
PRETRAIN_TASKS = ("t2i", "v2v", "t2v")  # nuwa_lab.recipes.pretrain.PRETRAIN_TASKS
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")  # world.render.SHAPE_NAMES
COLOURS = (  # nuwa_lab.world.render.PALETTE
    "red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white", "purple", "grey",
)  # fmt: skip
SIZES = ("small", "large")  # nuwa_lab.world.captions.SIZE_WORDS
DIRECTIONS = ("left", "right", "up", "down")  # nuwa_lab.world.motion.DIRECTION_VECTORS
REGIONS = 9  # a scene's 3x3 regions, one object each at most (nuwa_lab.world.sample.REGIONS)
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
