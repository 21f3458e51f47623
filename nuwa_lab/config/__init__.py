"""Configuration: one frozen dataclass per component, composed into one `Config`, with presets.

Sizes are first-class (nanoGPT's habit): a preset names a whole, consistent set of sizes.

| preset | where | budget |
|---|---|---|
| smoke | CI and tests | every notebook in seconds; numbers meaningless, code paths all real |
| tiny  | a laptop CPU (the default) | the whole pipeline within 45 min on 2 cores |
| base  | a workstation or one GPU | hours on CPU, minutes on a GPU |
| paper | documented only | the paper's sizes (1280 wide, 12+24 layers, 21x21 tokens, 10 frames) |

    cfg = make_config("tiny", **{"model.dim": 128, "train.steps": 500})
    cfg = make_config("smoke", model__dim=32)  # "__" works where a dot cannot be typed
    cfg = make_config("tiny", **parse_overrides("pretrain.pool=24576 train.steps=3000"))

An unknown preset or key raises a ValueError listing the valid ones. Each component reads only its
own section (`cfg.world`, `cfg.tokenizer`, ...); `cfg.device` and `cfg.seed` are shared.

Every value is checked by `make_config` (`check_config`): its type comes from the field's annotation
(an int is fine where a float is expected, a bool is not an int, floats must be finite) and its
range from the `RULES` table at the end of each section; rules between fields (`model.dim`
divisible by `model.heads`, ...) are in `CROSS_RULES`. The error names the key, the value and what
is allowed:

    ValueError: model.dim = 0: must be a positive int
"""

from nuwa_lab.config.build import (
    CROSS_RULES,
    as_dict,
    check_config,
    config_hash,
    make_config,
    parse_overrides,
    shorter_schedules,
)
from nuwa_lab.config.choices import (
    ATTENTION_PATTERNS,
    BORDERS,
    CAUSAL_RULES,
    CODEBOOK_INITS,
    COLOURS,
    DEVICE,
    DIRECTIONS,
    ENCODER_NORMS,
    PRETRAIN_TASKS,
    REC_LOSSES,
    REGIONS,
    SHAPES,
    SIZES,
    TASKS,
    TOKENIZER_KINDS,
)
from nuwa_lab.config.rules import Rule, has_type
from nuwa_lab.config.sections import (
    Config,
    ModelConfig,
    ProbeConfig,
    TextConfig,
    TokenizerConfig,
    TrainConfig,
    WorldConfig,
)
from nuwa_lab.config.task_sections import PretrainConfig, SampleConfig, TaskConfig

# `cfg.device` becomes a torch.device in the device policy; re-exported to sit beside make_config
from nuwa_lab.device import resolve_device as resolve_device
from nuwa_lab.presets import PRESETS

__all__ = [
    "ATTENTION_PATTERNS", "BORDERS", "CAUSAL_RULES", "CODEBOOK_INITS", "COLOURS", "CROSS_RULES",
    "DEVICE", "DIRECTIONS", "ENCODER_NORMS", "PRESETS", "PRETRAIN_TASKS", "REC_LOSSES", "REGIONS",
    "SHAPES", "SIZES", "TASKS", "TOKENIZER_KINDS", "Config", "ModelConfig", "PretrainConfig",
    "ProbeConfig", "Rule", "SampleConfig", "TaskConfig", "TextConfig", "TokenizerConfig",
    "TrainConfig", "WorldConfig", "as_dict", "check_config", "config_hash", "has_type",
    "make_config", "parse_overrides", "resolve_device", "shorter_schedules",
]  # fmt: skip
