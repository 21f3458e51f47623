"""What the NÜWA encoder reads: a `Condition` (NÜWA §3.2, the "adaptive encoder").

One model serves every task, so the encoder input is data, not a code path. A condition is one of
four kinds, each a token grid in the 3D layout of the paper:

| kind           | tokens (natural shape) | grid (t, h, w) | from                           |
|----------------|------------------------|----------------|--------------------------------|
| "text"         | (b, L) caption ids     | (1, 1, L)      | `TextTokenizer.encode_batch`   |
| "image_sketch" | (b, h, w) sketch codes | (1, h, w)      | `VQGANSeg.encode` (class map)  |
| "video_sketch" | (b, t, h, w) codes     | (t, h, w)      | `VQGANSeg.encode` (class video)|
| "none"         | (ignored placeholder)  | (1, 1, 1)      | `Condition.none(b)`            |

"none" is the constant "no condition" of unconditional tasks (V2V prediction, I2I completion): the
model embeds it with one learned vector, so it costs one encoder token.

Text padding: id 0 is `<pad>` (the tokenizer's convention). Padded positions are masked as keys in
the encoder's self-attention and the decoder's cross-attention (`key_padding`), so a caption's
output does not depend on how much padding follows it.

Axis letters: b batch, t h w grid, n = t*h*w tokens in raster order, L caption length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("text", "image_sketch", "video_sketch", "none")
PAD_ID = 0  # the text tokenizer's <pad>


@dataclass
class Condition:
    """A batch of encoder inputs of one kind.

    Attributes:
        kind: one of `KINDS`.
        tokens: long tensor (b, *grid) -- (b, 1, 1, L) for text, (b, 1, h, w) for an image sketch,
            (b, t, h, w) for a video sketch, (b, 1, 1, 1) for "none". The constructors below accept
            the natural shapes ((b, L), (b, h, w), ...) and reshape.
        grid: (t, h, w), the 3D layout of the tokens.
    """

    kind: str
    tokens: Tensor
    grid: tuple[int, int, int]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown condition kind {self.kind!r}; valid kinds: {', '.join(KINDS)}"
            )
        if not isinstance(self.tokens, Tensor) or self.tokens.dtype != torch.long:
            got = getattr(self.tokens, "dtype", type(self.tokens).__name__)
            raise ValueError(
                f"condition tokens must be a long tensor, got {got}; pass token ids (tokens.long())"
            )
        self.grid = tuple(int(g) for g in self.grid)
        if (
            len(self.grid) != 3
            or self.tokens.dim() != 4
            or tuple(self.tokens.shape[1:]) != self.grid
        ):
            raise ValueError(
                f"condition tokens have shape {tuple(self.tokens.shape)} but grid is {self.grid}; "
                "tokens must be (b, t, h, w) = (b, *grid); use Condition.text / .image_sketch / "
                ".video_sketch / .none to build one from the natural shape"
            )
        if self.kind == "text" and self.grid[:2] != (1, 1):
            raise ValueError(f"a text condition has grid (1, 1, L), got {self.grid}")
        if self.kind == "image_sketch" and self.grid[0] != 1:
            raise ValueError(f"an image sketch condition has grid (1, h, w), got {self.grid}")
        if self.kind == "none" and self.grid != (1, 1, 1):
            raise ValueError(f"the 'none' condition has grid (1, 1, 1), got {self.grid}")

    # -- constructors from the natural shapes ---------------------------------------------------

    @classmethod
    def text(cls, ids: Tensor) -> Condition:
        """Caption ids (b, L) (or (L,) for one caption) from `TextTokenizer.encode_batch`."""
        ids = _as_long(ids)
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2:
            raise ValueError(f"text ids must be (b, L), got shape {tuple(ids.shape)}")
        return cls("text", ids[:, None, None, :], (1, 1, ids.shape[1]))

    @classmethod
    def image_sketch(cls, tokens: Tensor) -> Condition:
        """Sketch codes (b, h, w) of one image sketch per sample."""
        tokens = _as_long(tokens)
        if tokens.dim() != 3:
            raise ValueError(
                f"image sketch tokens must be (b, h, w), got shape {tuple(tokens.shape)}"
            )
        return cls("image_sketch", tokens[:, None], (1, *tokens.shape[1:]))

    @classmethod
    def video_sketch(cls, tokens: Tensor) -> Condition:
        """Sketch codes (b, t, h, w) of one sketch video per sample."""
        tokens = _as_long(tokens)
        if tokens.dim() != 4:
            raise ValueError(
                f"video sketch tokens must be (b, t, h, w), got shape {tuple(tokens.shape)}"
            )
        return cls("video_sketch", tokens, tuple(tokens.shape[1:]))

    @classmethod
    def none(cls, batch: int, device: torch.device | str | None = None) -> Condition:
        """The constant "no condition" for `batch` samples."""
        return cls("none", torch.zeros(batch, 1, 1, 1, dtype=torch.long, device=device), (1, 1, 1))

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]

    @property
    def is_visual(self) -> bool:
        """Sketch conditions are visual grids; text and "none" are attended in full."""
        return self.kind in ("image_sketch", "video_sketch")

    def key_padding(self) -> Tensor | None:
        """(b, n) bool, True where a key is real; None when nothing is padded."""
        if self.kind != "text":
            return None
        keep = self.tokens.flatten(1) != PAD_ID
        return None if bool(keep.all()) else keep

    def to(self, device: torch.device | str) -> Condition:
        return Condition(self.kind, self.tokens.to(device), self.grid)

    def repeat_interleave(self, repeats: int) -> Condition:
        """Each sample repeated `repeats` times in a row (for drawing several candidates)."""
        return Condition(self.kind, self.tokens.repeat_interleave(repeats, dim=0), self.grid)

    def __getitem__(self, index) -> Condition:
        tokens = self.tokens[index]
        if tokens.dim() == 3:
            tokens = tokens[None]
        return Condition(self.kind, tokens, self.grid)


def _as_long(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if x.is_floating_point():
        raise ValueError(f"token ids must be integers, got dtype {x.dtype}")
    return x.long()
