r"""Parameter and FLOP counts of `Nuwa`, computed from the config alone (nothing is allocated).

So the paper's 1280-wide, 12 + 24-layer model can be sized on a laptop, and the bench can express
the training throughput in model FLOP/s.

Parameters, with width d, MLP ratio r, codebook K, caption vocabulary V, sketch codebook S,
positional tables (T, H, W) and caption length L:

| part                  | count                                                         |
|-----------------------|---------------------------------------------------------------|
| condition embedding   | $(V + S + 1 + 4 + T + H + \max(W, L))\,d$                      |
| target embedding      | $(K + 1 + 8 + T + H + W)\,d$                                   |
| encoder layer         | $4d^2$ (attention) $+ 2rd^2$ (MLP) $+ 4d$ (2 LN; no biases)    |
| decoder layer         | $2 \cdot 4d^2$ (self + cross) $+ 2rd^2$ (MLP) $+ 6d$ (3 LN)    |
| final norms, head     | $4d + Kd$                                                     |

FLOPs of one forward pass count matmuls only, 2 per multiply-add: projections $2 n d_{in} d_{out}$,
and attention $4 d$ per attended (query, key) pair (scores and weighted sum), with the pairs counted
from the pattern's dense mask, i.e. the work the pattern *needs*, not what an implementation spends.
A training step costs about 3x the forward.
"""

from __future__ import annotations

from nuwa_lab.attention import AttentionPattern
from nuwa_lab.config import Config, ModelConfig, make_config
from nuwa_lab.model.sizes import model_sizes


def count_parameters(
    cfg: ModelConfig,
    *,
    text_vocab: int,
    codebook_size: int,
    sketch_codebook_size: int,
    max_grid: tuple[int, int, int] = (16, 32, 32),
    text_length: int = 64,
) -> dict[str, int]:
    """Parameters of `Nuwa(cfg, ...)` by part, and "total"; equals `Nuwa(...).num_parameters()`."""
    d, r = cfg.dim, cfg.mlp_ratio
    t, h, w = max_grid
    attn = 4 * d * d  # no biases in the blocks
    mlp = 2 * r * d * d
    parts = {
        "condition_embedding": (
            text_vocab + sketch_codebook_size + 1 + 4 + t + h + max(w, text_length)
        )
        * d,
        "target_embedding": (codebook_size + 1 + 8 + t + h + w) * d,
        "encoder": cfg.enc_layers * (attn + mlp + 4 * d) + 2 * d,
        "decoder": cfg.dec_layers * (2 * attn + mlp + 6 * d) + 2 * d,
        "head": codebook_size * d,
    }
    parts["total"] = sum(parts.values())
    return parts


def paper_parameter_count(text_vocab: int = 49_408) -> dict[str, int]:
    """The `paper` preset's parameter count (1280 wide, 20 heads, 12 + 24 layers, 21x21x10 tokens).

    `text_vocab` defaults to a CLIP-sized BPE vocabulary (49,408); the paper's count (~870M) is
    dominated by the transformer layers, so the vocabulary moves it by only ~60M at most.
    """

    cfg = make_config("paper")
    return count_parameters(cfg.model, **model_sizes(cfg, text_vocab=text_vocab))


def attention_pairs(spec, q_grid, kv_grid) -> int:
    """(query, key) pairs a pattern attends, from its dense mask."""
    return int(spec.mask(tuple(q_grid), tuple(kv_grid)).sum())


def forward_flops(
    cfg: ModelConfig,
    *,
    condition_kind: str,
    condition_grid: tuple[int, int, int],
    target_grid: tuple[int, int, int],
    codebook_size: int,
    batch: int = 1,
) -> int:
    """Matmul FLOPs of `Nuwa.forward` for one batch (see the module docstring)."""

    c = cfg
    d, r = c.dim, c.mlp_ratio
    nc = condition_grid[0] * condition_grid[1] * condition_grid[2]
    n = target_grid[0] * target_grid[1] * target_grid[2]
    visual = condition_kind in ("image_sketch", "video_sketch")
    common = dict(extent=c.extent, block=c.block, causal_rule=c.causal_rule, border=c.border)
    enc = AttentionPattern(pattern=c.attention if visual else "full", **common)
    dec = AttentionPattern(pattern=c.attention, causal=True, **common)
    cross = AttentionPattern(pattern=c.cross_attention if visual else "full", **common)

    mlp = lambda tokens: 2 * tokens * d * r * d * 2  # noqa: E731
    encoder = (
        2 * nc * d * 4 * d + mlp(nc) + 4 * d * attention_pairs(enc, condition_grid, condition_grid)
    )
    decoder = (
        2 * n * d * 4 * d  # self q, k, v, out
        + 4 * d * attention_pairs(dec, target_grid, target_grid)
        + 2 * n * d * 2 * d  # cross q, out
        + 2 * nc * d * 2 * d  # cross k, v of the encoder output
        + 4 * d * attention_pairs(cross, target_grid, condition_grid)
        + mlp(n)
    )
    head = 2 * n * d * codebook_size
    return batch * (c.enc_layers * encoder + c.dec_layers * decoder + head)


def training_flops(cfg: Config | ModelConfig, **kwargs) -> int:
    """About 3x the forward FLOPs (forward + backward)."""
    model_cfg = cfg.model if isinstance(cfg, Config) else cfg
    return 3 * forward_flops(model_cfg, **kwargs)
