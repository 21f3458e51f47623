r"""The NÜWA 3D encoder-decoder (NÜWA §3.2).

An adaptive encoder reads the condition C (a caption (1, 1, L), a sketch (1, h, w) or (t, h, w),
or the constant `<none>`); a decoder predicts the target token grid Y ((1, h, w) for an image,
(t, h, w) for a video) in raster order, each token attending causally to the earlier ones and,
through cross-attention, to the encoder output. Training minimises

$$ \mathcal{L} = -\sum_{n} \log p_\theta(y_n \mid y_{<n}, C) $$

(averaged over tokens here). The attention patterns follow the paper's defaults: nearby (3DNA)
self-attention, nearby cross-attention rescaled onto visual conditions, full attention to text.

Axis letters: b batch, t h w grid, n tokens in raster order, d width, K codebook size.

| symbol                          | code                                           |
|---------------------------------|------------------------------------------------|
| $C$ (condition tokens)          | `Condition` (`nuwa_lab.model.condition`)       |
| $C^{(L)}$ (encoder output)      | `Nuwa.encode(condition)` (b, n_c, d)           |
| $Y$ (target codes)              | `target_tokens` (b, h, w) or (b, t, h, w)      |
| $p_\theta(y_n \mid y_{<n}, C)$  | `softmax(logits)`, logits (b, *grid, K)        |
| $\mathcal{L}$                   | `loss` (mean token cross-entropy, nats)        |
| $L^{enc}, L^{dec}$              | `cfg.enc_layers`, `cfg.dec_layers`             |

Sampling uses `start` (encode once, cross keys/values once, empty self-attention caches) and `step`
(decode a few positions with the cache); `nuwa_lab.model.sample` drives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from nuwa_lab.attention import PATTERNS, AttentionPattern
from nuwa_lab.config import Config, ModelConfig
from nuwa_lab.model.condition import Condition
from nuwa_lab.model.counting import forward_flops
from nuwa_lab.model.embedding import ConditionEmbedding, TargetEmbedding
from nuwa_lab.model.layers import DecoderBlock, EncoderBlock, LayerCache, new_cache
from nuwa_lab.model.sizes import model_sizes


@dataclass
class DecodeState:
    """What `Nuwa.step` needs besides the new tokens: computed once per batch of conditions."""

    grid: tuple[int, int, int]
    memory_grid: tuple[int, int, int]
    memory_padding: Tensor | None
    task: int
    cross_spec: AttentionPattern
    caches: list[LayerCache]


class Nuwa(nn.Module):
    r"""NÜWA: $p_\theta(Y \mid C) = \prod_n p_\theta(y_n \mid y_{<n}, \mathrm{Enc}(C))$.

    Args (keyword-only besides `cfg`):
        cfg: `ModelConfig` (width d, heads, layers, attention patterns, extents, blocks).
        text_vocab: caption vocabulary size (`TextTokenizer.vocab_size`).
        codebook_size: K, the visual VQ-GAN's codebook size (decoder vocabulary, plus `<bos>`).
        sketch_codebook_size: the VQ-GAN-Seg codebook size (sketch condition vocabulary).
        max_grid: the largest (t, h, w) token grid of conditions and targets (positional tables).
        text_length: the longest caption L (width table of the encoder).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        text_vocab: int,
        codebook_size: int,
        sketch_codebook_size: int,
        max_grid: tuple[int, int, int] = (16, 32, 32),
        text_length: int = 64,
    ) -> None:
        super().__init__()
        for name in ("attention", "cross_attention"):
            if getattr(cfg, name) not in PATTERNS:
                raise ValueError(
                    f"unknown model.{name} {getattr(cfg, name)!r}; valid: {', '.join(PATTERNS)}"
                )
        self.cfg = cfg
        self.codebook_size = codebook_size
        self.max_grid = tuple(int(g) for g in max_grid)
        self.text_length = text_length
        d = cfg.dim
        self.condition_embedding = ConditionEmbedding(
            dim=d,
            text_vocab=text_vocab,
            sketch_codebook_size=sketch_codebook_size,
            max_grid=self.max_grid,
            text_length=text_length,
        )
        self.target_embedding = TargetEmbedding(
            dim=d, codebook_size=codebook_size, max_grid=self.max_grid
        )
        block_args = dict(dim=d, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(**block_args) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(DecoderBlock(**block_args) for _ in range(cfg.dec_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, codebook_size, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(self._init)
        # GPT-2: residual output projections scaled by 1/sqrt(2 * depth)
        depth = 2 * (cfg.enc_layers + cfg.dec_layers)
        for name, p in self.named_parameters():
            if name.endswith(("out.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(depth))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, cfg: Config, *, text_vocab: int | None = None) -> Nuwa:
        """The model for a whole `Config`: vocabularies and grid sizes from its other sections."""
        return cls(cfg.model, **model_sizes(cfg, text_vocab=text_vocab))

    # -- attention patterns --------------------------------------------------------------------

    def _spec(self, pattern: str, *, causal: bool = False) -> AttentionPattern:
        c = self.cfg
        return AttentionPattern(
            pattern=pattern,
            causal=causal,
            extent=tuple(c.extent),
            block=tuple(c.block),
            causal_rule=c.causal_rule,
            border=c.border,
        )

    def encoder_spec(self, condition: Condition) -> AttentionPattern:
        """Visual conditions: cfg.attention; captions and `<none>`: full (padding masked)."""
        return self._spec(self.cfg.attention if condition.is_visual else "full")

    def decoder_spec(self) -> AttentionPattern:
        return self._spec(self.cfg.attention, causal=True)

    def cross_spec(self, condition: Condition) -> AttentionPattern:
        """Visual conditions: cfg.cross_attention, rescaled onto the condition grid; text: full."""
        return self._spec(self.cfg.cross_attention if condition.is_visual else "full")

    # -- forward ---------------------------------------------------------------------------------

    def encode(self, condition: Condition) -> Tensor:
        """The encoder output $C^{(L)}$, (b, n_c, d)."""
        return self._encode(condition, condition.key_padding())

    def _encode(self, condition: Condition, padding: Tensor | None) -> Tensor:
        if condition.kind == "text" and condition.grid[2] > self.text_length:
            raise ValueError(
                f"caption length {condition.grid[2]} exceeds the model's text_length "
                f"{self.text_length}; build the model with text_length >= {condition.grid[2]}"
            )
        x = self.drop(self.condition_embedding(condition))
        spec = self.encoder_spec(condition)
        for block in self.encoder:
            x = block(x, spec, grid=condition.grid, key_padding=padding)
        return self.encoder_norm(x)

    def forward(
        self, condition: Condition, target_tokens: Tensor, *, loss_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits (b, *target_shape, K) and the mean token cross-entropy (nats).

        `target_tokens` is (b, h, w) for images or (b, t, h, w) for videos; `loss_mask` (same shape,
        bool) restricts the loss to some positions (e.g. fine-tuning a completion task).
        """
        grid = self._check_target(condition, target_tokens)
        target = target_tokens.reshape(target_tokens.shape[0], -1)
        # read on the host once, before any kernel is queued (on a GPU, a read waits for them)
        padding = condition.key_padding()
        memory = self._encode(condition, padding)
        task = self.target_embedding.task_index(condition.kind, grid)
        x = self.drop(self.target_embedding(self.target_embedding.shift_right(target), grid, task))
        self_spec, cross_spec = self.decoder_spec(), self.cross_spec(condition)
        for block in self.decoder:
            kv = block.cross_attn.keys_values(memory)
            x = block(
                x,
                kv,
                self_spec,
                cross_spec,
                grid=grid,
                memory_grid=condition.grid,
                memory_padding=padding,
            )
        logits = self.head(self.decoder_norm(x))  # (b, n, K)
        if loss_mask is None:
            loss = F.cross_entropy(rearrange(logits, "b n k -> (b n) k"), target.flatten())
        else:
            per_token = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            mask = loss_mask.reshape(per_token.shape).to(per_token.dtype)
            loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
        return logits.reshape(*target_tokens.shape, -1), loss

    def _check_target(self, condition: Condition, target_tokens: Tensor) -> tuple[int, int, int]:
        if not isinstance(condition, Condition):
            raise TypeError(
                f"condition must be a nuwa_lab.model.Condition, got {type(condition).__name__}; "
                "build one with Condition.text(ids), .image_sketch, .video_sketch or .none(b)"
            )
        if target_tokens.dtype != torch.long or target_tokens.dim() not in (3, 4):
            raise ValueError(
                f"target_tokens must be long (b, h, w) or (b, t, h, w), got "
                f"{target_tokens.dtype} {tuple(target_tokens.shape)}"
            )
        if target_tokens.shape[0] != condition.batch:
            raise ValueError(
                f"target batch {target_tokens.shape[0]} != condition batch {condition.batch}; "
                "pass one condition per target"
            )
        grid = grid_of(target_tokens.shape[1:])
        k = self.codebook_size
        if target_tokens.numel() and (target_tokens.min() < 0 or target_tokens.max() >= k):
            raise ValueError(f"target codes must lie in [0, {k}); got values outside that range")
        return grid

    # -- incremental decoding (used by nuwa_lab.model.sample)
    # ------------------------------------------

    @torch.no_grad()
    def start(self, condition: Condition, grid: tuple[int, int, int]) -> DecodeState:
        """Encode the condition once; cross keys/values once per layer; empty self caches."""
        padding = condition.key_padding()
        memory = self._encode(condition, padding)
        n = grid[0] * grid[1] * grid[2]
        caches = [new_cache(b, memory, batch=condition.batch, length=n) for b in self.decoder]
        return DecodeState(
            grid=tuple(grid),
            memory_grid=condition.grid,
            memory_padding=padding,
            task=self.target_embedding.task_index(condition.kind, grid),
            cross_spec=self.cross_spec(condition),
            caches=caches,
        )

    @torch.no_grad()
    def step(
        self, state: DecodeState, inputs: Tensor, positions: Tensor, *, logits: bool = True
    ) -> Tensor | None:
        """Decode raster `positions` (m,) from their inputs (b, m) (previous codes, `<bos>` at 0).

        Fills the caches at `positions`; returns logits (b, m, K) (None when `logits=False`, e.g.
        for teacher-forced fixed tokens whose prediction is not needed).
        """
        x = self.target_embedding(inputs, state.grid, state.task, positions)
        self_spec = self.decoder_spec()
        for block, cache in zip(self.decoder, state.caches, strict=True):
            x = block(
                x,
                (cache.cross_k, cache.cross_v),
                self_spec,
                state.cross_spec,
                grid=state.grid,
                memory_grid=state.memory_grid,
                memory_padding=state.memory_padding,
                cache=cache,
                positions=positions,
            )
        return self.head(self.decoder_norm(x)) if logits else None

    # -- sizes -------------------------------------------------------------------------------------

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops(self, condition_kind: str, condition_grid, target_grid, *, batch: int = 1) -> int:
        """Matmul FLOPs of one forward pass (see `nuwa_lab.model.counting.forward_flops`)."""

        return forward_flops(
            self.cfg,
            condition_kind=condition_kind,
            condition_grid=condition_grid,
            target_grid=target_grid,
            codebook_size=self.codebook_size,
            batch=batch,
        )

    def attention_modules(self) -> dict[str, nn.Module]:
        """Name -> attention module (`.record = True` keeps its last weights in `.weights`)."""
        mods = {f"encoder.{i}.self": b.attn for i, b in enumerate(self.encoder)}
        for i, b in enumerate(self.decoder):
            mods[f"decoder.{i}.self"] = b.self_attn
            mods[f"decoder.{i}.cross"] = b.cross_attn
        return mods


def grid_of(shape) -> tuple[int, int, int]:
    """(t, h, w) of a token shape (h, w) or (t, h, w)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape
    raise ValueError(f"a token grid is (h, w) or (t, h, w), got {shape}")
