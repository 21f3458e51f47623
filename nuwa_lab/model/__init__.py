"""The NÜWA 3D encoder-decoder (NÜWA §3): conditions, embeddings, blocks, the model and its sizes.

    from nuwa_lab.model import Condition, Nuwa
    model = Nuwa.from_config(cfg)
    logits, loss = model(Condition.text(ids), target_tokens)

Sampling lives in `nuwa_lab.model.sample`, pretraining in `nuwa_lab.recipes.pretrain` (artifact
"nuwa"). Importing this package has no side effects.
"""

from nuwa_lab.model.condition import KINDS, Condition
from nuwa_lab.model.counting import count_parameters, forward_flops, paper_parameter_count
from nuwa_lab.model.nuwa import PATTERNS, DecodeState, Nuwa, grid_of
from nuwa_lab.model.sizes import model_sizes

__all__ = [
    "KINDS",
    "PATTERNS",
    "Condition",
    "DecodeState",
    "Nuwa",
    "count_parameters",
    "forward_flops",
    "grid_of",
    "model_sizes",
    "paper_parameter_count",
]
