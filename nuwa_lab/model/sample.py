r"""One sampler for every NÜWA task: raster order, KV cache, top-k / top-p, fixed tokens.

NÜWA generates a token grid autoregressively (§3.3):

$$ y_n \sim p_\theta(y_n \mid y_{<n}, C)^{1/\tau}, \qquad n = 0, 1, \dots, N - 1 $$

restricted to the k most likely codes (top-k) or to the smallest set holding probability mass p
(top-p, nucleus). The eight tasks differ only in the condition C and in which positions are *fixed*:
given rather than sampled (teacher-forced), e.g. the first frame for video prediction or everything
outside the edit region for manipulation. Fixed tokens come back unchanged and, being the decoder's
input at the next position, influence every later token.

Determinism: one uniform $u_{b,n}$ per sample and position is drawn up front from the generator and
the code is chosen by inverse CDF, $y_n = \min\{i : F(i) > u_{b,n}\}$. So cached and uncached
decoding, and any `batch_size` split, consume randomness identically and give the same tokens (up to
float ties at a CDF boundary, which have probability ~1e-7 per token).

Axis letters: b batch, t h w grid, n tokens in raster order, K codebook size.

| symbol                 | code                                            |
|------------------------|-------------------------------------------------|
| $C$                    | `condition` (`nuwa_lab.model.Condition`)        |
| $\tau$                 | `temperature` (0 = greedy)                      |
| top-k, top-p           | `top_k` (0 = off), `top_p` (1.0 = off)          |
| $u_{b,n}$              | uniforms from `generator`                       |
| fixed positions        | `fixed` bool (b, *grid), values `fixed_tokens`  |
| re-ranking (CLIP)      | `candidates`, `score_fn` (the probe, here)      |
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from nuwa_lab.attention.coords import as_int
from nuwa_lab.model.condition import Condition
from nuwa_lab.model.nuwa import Nuwa, grid_of


def filter_logits(logits: Tensor, *, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits (..., K) with everything outside the top-k / top-p set set to -inf.

    top-k keeps the k largest logits (ties with the k-th are kept too); top-p keeps the smallest set
    of most likely codes whose probability reaches `top_p` (the most likely code always survives).
    """
    if top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got top_k={top_k}, top_p={top_p}")
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        remove_sorted = mass_before >= top_p
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def draw(
    logits: Tensor, u: Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> Tensor:
    """Codes (b,) drawn from logits (b, K) by inverse CDF at uniforms u (b,) in [0, 1)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    logits = filter_logits(logits.float(), top_k=top_k, top_p=top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = (logits / temperature).softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    index = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None].contiguous(), right=True)[:, 0]
    # never land on a filtered code past the last admissible one (u * F(K) rounding up)
    last = probs.shape[-1] - 1 - (probs > 0).flip(-1).int().argmax(dim=-1)
    return torch.minimum(index, last)


def rerank(tokens: Tensor, scores: Tensor, candidates: int) -> tuple[Tensor, Tensor]:
    """The best of each run of `candidates` consecutive samples: (tokens (b, ...), index (b,))."""
    if tokens.shape[0] % candidates or scores.shape != (tokens.shape[0],):
        raise ValueError(
            f"expected {candidates} candidates per condition and one score each; got tokens "
            f"{tuple(tokens.shape)}, scores {tuple(scores.shape)}"
        )
    best = scores.reshape(-1, candidates).argmax(dim=1)
    rows = torch.arange(best.shape[0], device=tokens.device) * candidates + best.to(tokens.device)
    return tokens[rows], best


@torch.no_grad()
def sample(
    model: Nuwa,
    condition: Condition,
    grid: tuple[int, ...],
    fixed: Tensor | None = None,
    fixed_tokens: Tensor | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | int | None = None,
    use_cache: bool = True,
    candidates: int = 1,
    score_fn: Callable[[Tensor], Tensor] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Sample target codes (b, *grid) for a batch of conditions; see the module docstring.

    Args:
        grid: (h, w) for images or (t, h, w) for videos; the output has shape (b, *grid).
        fixed: bool (b, *grid) or (*grid): positions given rather than sampled.
        fixed_tokens: long (b, *grid) or (*grid): the given codes (read only where `fixed`).
        generator: a seeded `torch.Generator` or an int seed (None: torch's global generator).
        use_cache: decode with the KV cache (per-token cost flat for local patterns) or by
            re-running the whole model for each position (the reference; same tokens, slower).
        candidates, score_fn: draw `candidates` samples per condition and keep the one `score_fn`
            ranks first (tokens (b * candidates, *grid) -> scores (b * candidates,), higher wins).
        batch_size: decode at most this many samples at once (same result as one batch).
    """
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p, batch_size=batch_size)
    if not _is_int(candidates) or candidates < 1 or (candidates > 1 and score_fn is None):
        raise ValueError(
            f"candidates={candidates!r}: need an int >= 1, and a score_fn to re-rank when > 1"
        )
    if generator is not None and not _is_int(generator):
        if not isinstance(generator, torch.Generator):
            raise ValueError(
                f"generator={generator!r}: must be None, an int seed or a torch.Generator"
            )
    shape = _check_grid(grid)
    grid3 = grid_of(shape)
    device = next(model.parameters()).device
    b = condition.batch
    fixed, fixed_tokens = _fixed(fixed, fixed_tokens, b, shape, model.codebook_size, device)
    condition = condition.to(device)
    if candidates > 1:
        condition = condition.repeat_interleave(candidates)
        fixed = fixed.repeat_interleave(candidates, dim=0)
        fixed_tokens = fixed_tokens.repeat_interleave(candidates, dim=0)
    total, n = condition.batch, grid3[0] * grid3[1] * grid3[2]
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand((total, n), generator=generator, device=gen_device).to(device)

    options = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    decode = _decode_cached if use_cache else _decode_uncached
    was_training = model.training
    model.eval()
    try:
        chunks = []
        step = batch_size or total
        for s in range(0, total, step):
            part = slice(s, s + step)
            chunks.append(
                decode(
                    model,
                    condition[part],
                    grid3,
                    fixed[part].reshape(-1, n),
                    fixed_tokens[part].reshape(-1, n),
                    u[part],
                    options,
                    progress,
                )
            )
    finally:
        model.train(was_training)
    tokens = torch.cat(chunks).reshape(total, *shape)
    if candidates > 1:
        scores = torch.as_tensor(score_fn(tokens), device=device).float()
        tokens, _ = rerank(tokens, scores, candidates)
    return tokens


def check_sampling(
    *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, batch_size: int | None = None
) -> None:
    """A ValueError naming the first sampling option out of range (`sample` calls it once)."""
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(
            f"temperature={temperature!r}: must be a finite number >= 0 "
            "(0 = greedy, 1 = the model's own distribution)"
        )
    if not _is_int(top_k) or top_k < 0:
        raise ValueError(f"top_k={top_k!r}: must be an int >= 0 (0 = off)")
    if not _is_real(top_p) or not 0 < top_p <= 1:  # nan fails the comparison too
        raise ValueError(f"top_p={top_p!r}: must be a number in (0, 1] (1 = off)")
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r}: must be None (all at once) or an int >= 1")


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_grid(grid: object) -> tuple[int, ...]:
    """`grid` as a tuple of 2 or 3 positive ints, or a ValueError naming it."""
    try:
        shape = tuple(as_int(g) for g in grid)  # type: ignore[union-attr]
    except TypeError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(
            f"grid={grid!r}: must be (h, w) for images or (t, h, w) for videos, positive ints"
        )
    return shape


def _fixed(fixed, fixed_tokens, b, shape, codebook_size, device) -> tuple[Tensor, Tensor]:
    """Validated (b, *shape) bool mask and long codes (zeros where nothing is fixed)."""
    if fixed is None:
        if fixed_tokens is not None:
            raise ValueError("fixed_tokens given without fixed; pass fixed=<bool grid> as well")
        return (
            torch.zeros((b, *shape), dtype=torch.bool, device=device),
            torch.zeros((b, *shape), dtype=torch.long, device=device),
        )
    if fixed_tokens is None:
        raise ValueError("fixed given without fixed_tokens; pass the codes of the fixed positions")
    fixed = torch.as_tensor(fixed, device=device)
    if fixed.dtype != torch.bool:
        raise ValueError(
            f"fixed must be a bool tensor (True = given), got dtype {fixed.dtype}; "
            "e.g. fixed = torch.zeros(grid, dtype=torch.bool)"
        )
    out = []
    for name, x in (
        ("fixed", fixed),
        ("fixed_tokens", torch.as_tensor(fixed_tokens, device=device)),
    ):
        if tuple(x.shape) == shape:
            x = x.expand(b, *shape)
        if tuple(x.shape) != (b, *shape):
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; expected {(b, *shape)} or {shape} (the grid)"
            )
        out.append(x)
    fixed, codes = out[0], out[1]
    if codes.dtype == torch.bool or codes.is_complex():
        raise ValueError(
            f"fixed_tokens must be integer codes in [0, {codebook_size}), got dtype "
            f"{codes.dtype} (are fixed and fixed_tokens swapped?)"
        )
    if codes.is_floating_point():  # whole numbers are fine; a fraction is not a code
        given = codes[fixed]
        whole = torch.isfinite(given) & (given == given.round())
        if not bool(whole.all()):
            bad = given[~whole][0].item()
            raise ValueError(
                f"fixed_tokens must be integer codes in [0, {codebook_size}) where fixed, got "
                f"{bad!r}; pass a long tensor"
            )
    codes = codes.long()
    bad = fixed & ((codes < 0) | (codes >= codebook_size))
    if bool(bad.any()):
        wrong = codes[bad]
        raise ValueError(
            f"fixed_tokens must lie in [0, {codebook_size}) (the codebook) where fixed, got "
            f"values from {int(wrong.min())} to {int(wrong.max())}"
        )
    return fixed.contiguous(), torch.where(fixed, codes, 0).contiguous()


def _choose(logits, fixed_col, fixed_col_tokens, u_col, options) -> Tensor:
    drawn = draw(logits, u_col, **options)
    return torch.where(fixed_col, fixed_col_tokens, drawn)


def _decode_cached(model: Nuwa, condition, grid, fixed, codes, u, options, progress) -> Tensor:
    """Raster decoding with the KV cache, on one CPU thread (see `one_cpu_thread`)."""
    with one_cpu_thread():
        return _decode_cached_steps(model, condition, grid, fixed, codes, u, options, progress)


@contextlib.contextmanager
def one_cpu_thread():
    """Intra-op CPU threads set to 1 for the block, restored after.

    A cached decoding step works on one token per sample (ops of ~1k elements), where a second
    thread saves nothing and every parallel region (linear, layer norm, softmax, GELU) waits for
    all threads: on a busy 2-core machine that is a scheduler time slice (~5 ms) per op, and
    measured 260 ms per token with 2 threads against 10-15 ms with 1 (`bench model`, tiny).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _decode_cached_steps(
    model: Nuwa, condition, grid, fixed, codes, u, options, progress
) -> Tensor:
    """Raster decoding with the KV cache; runs of all-fixed positions are fed in one step."""
    b, n = fixed.shape
    device = fixed.device
    tokens = codes.clone()
    bos = torch.full((b, 1), model.target_embedding.bos_id, dtype=torch.long, device=device)
    state = model.start(condition, grid)
    all_fixed = fixed.all(dim=0).tolist()
    bar = tqdm(total=n, desc="sampling", disable=not progress, leave=False)
    start = 0
    while start < n:
        end = start  # positions start..end-1 are fixed for every sample: no prediction needed
        while end < n and all_fixed[end]:
            end += 1
        last = min(end, n - 1)  # the step also predicts position `end` when there is one
        positions = torch.arange(start, last + 1, device=device)
        if start == 0:
            inputs = torch.cat([bos, tokens[:, :last]], dim=1)
        else:
            inputs = tokens[:, start - 1 : last]
        logits = model.step(state, inputs, positions, logits=end < n)
        if end < n:
            tokens[:, end] = _choose(
                logits[:, -1], fixed[:, end], codes[:, end], u[:, end], options
            )
        bar.update(last + 1 - start)
        start = last + 1
    bar.close()
    return tokens


def _decode_uncached(model: Nuwa, condition, grid, fixed, codes, u, options, progress) -> Tensor:
    """The reference: re-run the whole model for every position (positions after n are ignored)."""
    b, n = fixed.shape
    tokens = codes.clone()
    all_fixed = fixed.all(dim=0).tolist()
    for i in tqdm(range(n), desc="sampling (no cache)", disable=not progress, leave=False):
        if all_fixed[i]:
            continue
        logits, _ = model(condition, tokens.reshape(b, *grid))
        logits = logits.reshape(b, n, -1)
        tokens[:, i] = _choose(logits[:, i], fixed[:, i], codes[:, i], u[:, i], options)
    return tokens
