"""The sizes a `Nuwa` is built with, derived from a whole `Config` (world, text and tokenizer).

    Nuwa(cfg.model, **model_sizes(cfg))

The model section says how wide and deep the transformer is; how many codes it predicts, how long a
caption is and how large the largest token grid is come from the other sections.
"""

from __future__ import annotations

from nuwa_lab.config import Config
from nuwa_lab.world.source import text_tokenizer


def model_sizes(cfg: Config, *, text_vocab: int | None = None) -> dict:
    """Constructor sizes of `Nuwa` derived from a whole `Config` (world, text and tokenizer)."""
    if text_vocab is None:
        text_vocab = text_tokenizer(cfg.world, cfg.text).vocab_size  # the grammar's or a folder's
    side = cfg.world.image_size // cfg.tokenizer.downsample
    return dict(
        text_vocab=text_vocab,
        codebook_size=cfg.tokenizer.codebook_size,
        sketch_codebook_size=cfg.tokenizer.seg_codebook_size,
        max_grid=(cfg.world.frames, side, side),
        text_length=cfg.text.max_length,
    )
