r"""Vector quantisation with a straight-through estimator (NÜWA §3.1; van den Oord et al. 2017).

Each latent vector $z_e$ of the encoder's grid is replaced by its nearest code of a learned
codebook $\{e_k\}_{k=1}^{K}$: $k^* = \arg\min_k \|z_e - e_k\|_2$, $z_q = e_{k^*}$. The argmin has
no gradient, so the forward pass uses $z_q$ while the backward pass copies the decoder's gradient
onto $z_e$ (the straight-through estimator): $z_q^{\mathrm{ST}} = z_e + \mathrm{sg}[z_q - z_e]$.
The loss

$$L_{VQ} = \|\mathrm{sg}[z_e] - e\|_2^2 + \beta \|z_e - \mathrm{sg}[e]\|_2^2$$

pulls codes towards encoder outputs (codebook term) and commits the encoder to its codes
(commitment term, weighted by $\beta$). With `ema=True` the codebook term is replaced by
exponential moving averages of the assigned vectors (van den Oord et al. 2017, appendix;
Razavi et al. 2019): $N_k \leftarrow \gamma N_k + (1-\gamma) n_k$,
$m_k \leftarrow \gamma m_k + (1-\gamma)\sum_{i:k_i=k} z_i$, $e_k = m_k / \tilde N_k$
(Laplace-smoothed $N_k$).

Keeping the codebook alive:
- data-dependent initialisation: on the first training batch the codes are seeded from encoder
  outputs by k-means++ (`init="kmeans++"`, then a few Lloyd steps) or drawn at random from them
  (`init="random"`);
- dead-code restart: a code no vector was assigned to for `dead_code_steps` consecutive training
  steps is moved onto an encoder output of the current batch, drawn with probability proportional to
  its squared distance to its nearest code (k-means++ sampling), so restarts go where the codebook
  fits worst rather than onto the (frequent) background. A rare code used now and then is kept.
- usage (fraction of codes used) and perplexity $\exp(-\sum_k p_k \log p_k)$ of each batch are
  reported.

Under torch.distributed (data parallelism, each rank a shard of the global batch) the counts and
sums are all-reduced, and initialisation and restarts draw from the encoder outputs of every rank
gathered in rank order, which is the global batch's: every rank keeps the same codebook, equal to
one process's on the whole batch, and the logged usage and perplexity are the global batch's.
Random choices use a generator seeded by the step counter (a buffer), so a run resumed from a
checkpoint, on any number of processes, makes the same choices.

Axis letters: b batch, d code width, h w the token grid, n = b h w vectors, k codes.

| paper | code |
|---|---|
| $e_k$, $K$, $d_z$ | `codebook[k]`, `codebook_size`, `code_dim` |
| $\beta$ | `beta` |
| restart after $n$ idle steps | `dead_code_steps` |
| $\gamma$ | `ema_decay` |
| $N_k$, $m_k$ | `cluster_size`, `embed_sum` |
| $\mathrm{sg}[\cdot]$ | `.detach()` |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

INITS = ("kmeans++", "random")


@dataclass
class QuantizerOutput:
    """What `VectorQuantizer.forward` returns (all tensors; scalars are 0-d)."""

    z_q: torch.Tensor  # (b, d, h, w): quantised, with the straight-through gradient to z_e
    indices: torch.Tensor  # (b, h, w) int64
    loss: torch.Tensor  # codebook term (0 with EMA) + beta * commitment term
    commitment: torch.Tensor  # ||z_e - sg[e]||^2 (mean over elements), before beta
    codebook_loss: torch.Tensor  # ||sg[z_e] - e||^2 (0 with EMA)
    perplexity: torch.Tensor  # exp(entropy of this batch's code histogram)
    usage: torch.Tensor  # fraction of the codebook used in this batch
    restarted: int  # codes restarted by this call


def code_histogram_stats(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(usage, perplexity) of a histogram of code counts (k,): used fraction and exp(entropy)."""
    total = counts.sum().clamp_min(1)
    p = counts.float() / total
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return (counts > 0).float().mean(), entropy.exp()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _global_rows(flat: torch.Tensor) -> torch.Tensor:
    """(n, d) rows of this rank -> (R n, d) rows of every rank in rank order: the global batch's
    (ranks hold equal contiguous shards of it). Unchanged in one process."""
    if not _distributed():
        return flat
    parts = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, flat.contiguous())
    return torch.cat(parts)


class VectorQuantizer(nn.Module):
    r"""Nearest-code quantiser: $z_q = e_{k^*}$, $k^* = \arg\min_k \|z_e - e_k\|$, gradient
    straight through; $L_{VQ} = \|\mathrm{sg}[z_e] - e\|^2 + \beta\|z_e - \mathrm{sg}[e]\|^2$
    (the first term replaced by EMA updates when `ema`)."""

    def __init__(
        self,
        *,
        codebook_size: int,
        code_dim: int,
        beta: float = 0.25,
        ema: bool = True,
        ema_decay: float = 0.99,
        dead_code_steps: int = 20,
        init: str = "kmeans++",
        kmeans_iters: int = 5,
        eps: float = 1e-5,
    ):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay={ema_decay} must be in [0, 1), e.g. 0.99")
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.beta, self.ema, self.ema_decay = beta, ema, ema_decay
        self.dead_code_steps, self.init, self.kmeans_iters, self.eps = (
            dead_code_steps,
            init,
            kmeans_iters,
            eps,
        )
        codebook = torch.randn(codebook_size, code_dim) / code_dim**0.5
        # With EMA the codebook is updated by moving averages, not by the optimiser.
        self.codebook = nn.Parameter(codebook, requires_grad=not ema)
        self.register_buffer("initialised", torch.tensor(False))
        self.register_buffer("step", torch.tensor(0, dtype=torch.long))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.codebook_size}, code_dim={self.code_dim}, beta={self.beta}, "
            f"ema={self.ema}, init={self.init!r}"
        )

    # ---- lookup -------------------------------------------------------------------------------
    def distances(self, flat: torch.Tensor) -> torch.Tensor:
        """Squared distances (n, k): ||z||^2 - 2 z.e + ||e||^2."""
        e = self.codebook.detach()
        return (
            flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None, :]
        ).clamp_min(0)

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes: (b, d, h, w) -> (b, h, w), no state change."""
        b, d, h, w = self._check(z)
        flat = rearrange(z, "b d h w -> (b h w) d").float()
        return rearrange(self.distances(flat).argmin(1), "(b h w) -> b h w", b=b, h=h, w=w)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of a grid of indices: (b, h, w) -> (b, d, h, w)."""
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(
                f"indices span [{int(indices.min())}, {int(indices.max())}] but the codebook has "
                f"{self.codebook_size} codes; were they made by a tokenizer with another codebook?"
            )
        return rearrange(self.codebook[indices.long()], "b h w d -> b d h w")

    def _check(self, z: torch.Tensor) -> tuple[int, int, int, int]:
        if z.dim() != 4 or z.shape[1] != self.code_dim:
            raise ValueError(
                f"expected latents (b, {self.code_dim}, h, w), got {tuple(z.shape)}; "
                "is the encoder's code_dim the quantizer's?"
            )
        return tuple(z.shape)  # type: ignore[return-value]

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, d, h, w = self._check(z)
        flat = rearrange(z, "b d h w -> (b h w) d")
        if self.training and not bool(self.initialised):
            self._initialise(_global_rows(flat.detach().float()))
        dist2 = self.distances(flat.detach().float())
        idx = dist2.argmin(1)
        e = self.codebook[idx].to(flat.dtype)
        commitment = F.mse_loss(flat, e.detach())
        codebook_loss = flat.new_zeros(()) if self.ema else F.mse_loss(e, flat.detach())
        z_q = flat + (e - flat).detach()  # straight-through: forward e, backward identity

        counts = torch.bincount(idx, minlength=self.codebook_size).float()
        restarted = 0
        if self.training:
            if _distributed():  # the global batch's histogram, identical on every rank
                dist.all_reduce(counts)
            restarted = self._update(flat.detach().float(), idx, counts)
        usage, perplexity = code_histogram_stats(counts)
        return QuantizerOutput(
            z_q=rearrange(z_q, "(b h w) d -> b d h w", b=b, h=h, w=w),
            indices=rearrange(idx, "(b h w) -> b h w", b=b, h=h, w=w),
            loss=codebook_loss + self.beta * commitment,
            commitment=commitment,
            codebook_loss=codebook_loss,
            perplexity=perplexity,
            usage=usage,
            restarted=restarted,
        )

    # ---- state updates (training only) --------------------------------------------------------
    def _generator(self, salt: int) -> torch.Generator:
        gen = torch.Generator(device=self.codebook.device)
        gen.manual_seed(1_000_003 * int(self.step) + salt)
        return gen

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        """Seed the codebook from the first batch's encoder outputs (k-means++ or random)."""
        gen = self._generator(salt=1)
        if self.init == "random":
            replace = flat.shape[0] < self.codebook_size
            pick = torch.multinomial(
                torch.ones(flat.shape[0], device=flat.device),
                self.codebook_size,
                replacement=replace,
                generator=gen,
            )
            codes = flat[pick].clone()
        else:
            codes = _kmeans_plus_plus(flat, self.codebook_size, gen)
            for _ in range(self.kmeans_iters):  # a few Lloyd steps
                idx = torch.cdist(flat, codes).argmin(1)
                counts = torch.bincount(idx, minlength=self.codebook_size).float()
                sums = torch.zeros_like(codes).index_add_(0, idx, flat)
                used = counts > 0
                codes[used] = sums[used] / counts[used, None]
        # Duplicate seeds (fewer distinct vectors than codes) get a jitter so they can separate.
        codes = codes + 1e-3 * codes.std() * torch.randn(
            codes.shape, generator=gen, device=codes.device
        )
        if _distributed():
            dist.broadcast(codes, src=0)
        self.codebook.data.copy_(codes)
        self.embed_sum.copy_(codes)
        self.cluster_size.fill_(1.0)
        self.idle_steps.zero_()
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> int:
        """EMA codebook update, usage tracking and dead-code restart; returns codes restarted.

        `counts`: the code histogram of the global batch (already summed over ranks)."""
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, flat) if self.ema else None
        if _distributed() and sums is not None:  # global-batch sums, identical on every rank
            dist.all_reduce(sums)
        gamma = self.ema_decay
        if self.ema:
            self.cluster_size.mul_(gamma).add_(counts, alpha=1 - gamma)
            self.embed_sum.mul_(gamma).add_(sums, alpha=1 - gamma)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
            self.codebook.data.copy_(self.embed_sum / smoothed[:, None])
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        self.step.add_(1)
        return self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> int:
        if self.dead_code_steps <= 0:
            return 0
        dead = (self.idle_steps >= self.dead_code_steps).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        flat = _global_rows(flat)  # every rank (the same on all: idle_steps is global) draws alike
        # Sample replacements with probability proportional to the squared distance to the nearest
        # (live) code: restarts go where the codebook fits the data worst.
        d2 = self.distances(flat).min(1).values
        weights = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)
        replace = int((weights > 0).sum()) < dead.numel()
        pick = torch.multinomial(
            weights, dead.numel(), replacement=replace, generator=self._generator(2)
        )
        new = flat[pick].clone()
        if _distributed():
            dist.broadcast(new, src=0)
        self.codebook.data[dead] = new
        self.embed_sum[dead] = new
        self.cluster_size[dead] = 1.0
        self.idle_steps[dead] = 0  # a grace period before it can die again
        return int(dead.numel())


def _kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k seeds from x (n, d): each next seed drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=gen, device=x.device)
    seeds = [x[first[0]]]
    d2 = (x - seeds[0]).pow(2).sum(1)
    for _ in range(k - 1):
        total = float(d2.sum())
        probs = d2 / total if total > 0 else torch.full_like(d2, 1.0 / n)
        nxt = torch.multinomial(probs, 1, generator=gen)[0]
        seeds.append(x[nxt])
        d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(1))
    return torch.stack(seeds).clone()
