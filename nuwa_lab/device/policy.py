"""The device policy: every choice that depends on the hardware, made in one place.

Each decision is a pure function of what is available (`Available`: a GPU or not, its name, bf16,
whether FlexAttention compiles for it), so a test can hand it any machine. The rest of the library
asks these functions instead of deciding on its own, and `announce` prints the choices once.

| decision | function | CPU | CUDA |
|---|---|---|---|
| `DEVICE="auto"` | `pick_device` | `cpu` | `cuda:LOCAL_RANK` (`cuda:0` without torchrun) |
| attention, full | `attention_backend` | SDPA | SDPA |
| attention, sparse | `attention_backend` | the CPU rule below | compiled flex, or the CPU rule |
| training precision | `autocast_dtype` | fp32 | bf16 autocast (fp32 master weights) |
| pinned host memory | `pin_memory` | off | on |
| process group (torchrun) | `process_group_backend` | gloo | nccl |

The attention choices, one per call of `nuwa_lab.attention.attend` with `backend="auto"`:
- "efficient": the pattern's own path (`attention.api.EFFICIENT_PATHS`); for "full" that is one
  `scaled_dot_product_attention` call (SDPA), which on CUDA runs the fused flash or
  memory-efficient kernel.
- "masked": the dense oracle's mask handed to SDPA (`attention.dense.masked_sdpa_attend`). It does
  all n·m products, so it only pays on small problems: at most `AUTO_MASKED_PAIRS[pattern]`
  (query, key) pairs. Measured on 2 CPU cores, forward + backward, 4 heads of width 32: a causal
  (4, 8, 8) video grid with nearby extents (1, 3, 3) at batch 10, 10.2 ms masked against 13.1 ms
  efficient (non-causal, batch 16: 16.4 against 35.3 ms); at (8, 16, 16) the efficient path is
  3.5x faster. A training step of the tiny S2V model: nearby 0.46 s masked against 0.63 s; block
  0.52 against 0.30 (its path is a reshape, no gather), so block goes masked only on tiny grids.
- "flex": `torch.compile(flex_attention)` with a block mask built once per (pattern, grid) and
  cached (`attention.flex`). On CUDA it is a fused kernel that skips the 128 × 128 blocks the
  pattern masks entirely, and it has a backward pass. It is picked only when it compiles here
  (a GPU, torch.compile and Triton: `compiled_flex_usable`), for heads of width >= 16 (Inductor
  refuses narrower ones on CUDA) and for the whole grid at once: an incremental decoding step
  (`q_positions`) would need a new block mask for every token, so it takes the CPU rule.

The CPU rule ("masked" up to `AUTO_MASKED_PAIRS`, else "efficient") also holds on CUDA below those
sizes: such a problem fits in a few flex blocks, and one SDPA call with a small mask needs no
compile. The thresholds were measured on a CPU; no GPU has timed them. Every choice gives the same
numbers to float tolerance (tests/unit/test_attention_paths.py).

`torch` is imported inside the functions that probe it, so that `nuwa_lab.config`, which
re-exports `resolve_device`, stays importable without loading torch.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# per pattern, the largest number of (query, key) pairs that "auto" hands to SDPA as one masked
# call: up to a 64-token image for every sparse pattern, a (4, 8, 8) video grid for nearby
AUTO_MASKED_PAIRS = {"axial": 64 * 64, "block": 64 * 64, "nearby": 256 * 256}
FLEX_MIN_HEAD_WIDTH = 16  # Inductor's smallest head width for FlexAttention on CUDA


@dataclass(frozen=True)
class Available:
    """What this process can use: every device decision is a function of these facts."""

    cuda: bool = False  # torch.cuda.is_available()
    gpu_name: str = ""  # torch.cuda.get_device_name() of this process's GPU
    bf16: bool = False  # the GPU computes in bfloat16 (torch.cuda.is_bf16_supported())
    compiled_flex: bool = False  # FlexAttention compiles for the GPU (`compiled_flex_usable`)
    local_rank: int = 0  # LOCAL_RANK under torchrun: this process's GPU
    threads: int = 1  # torch.get_num_threads(): the CPU's share of this process


def local_rank() -> int:
    """LOCAL_RANK as torchrun sets it (0 in a plain process)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))


def flex_status() -> str:
    """ "" when FlexAttention can be imported here, else the reason it cannot."""
    import torch  # here, not at the top: see the module docstring

    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the torch build
        return f"torch {torch.__version__} has no FlexAttention ({error})"
    return ""


def compiled_flex_usable() -> bool:
    """Whether `torch.compile(flex_attention)` can build a CUDA kernel in this process: a GPU,
    FlexAttention, TorchDynamo for this Python, and Triton with a backend for the GPU."""
    import torch  # here, not at the top: see the module docstring

    return torch.cuda.is_available() and _flex_compiles_for_the_gpu()


@functools.cache
def _flex_compiles_for_the_gpu() -> bool:
    if flex_status():
        return False
    try:
        import torch._dynamo
        from torch.utils._triton import has_triton  # asks each GPU whether Triton supports it

        return bool(torch._dynamo.is_dynamo_supported() and has_triton())
    except Exception:  # noqa: BLE001 - any failure to probe means: do not compile
        return False


def available() -> Available:
    """Probe this process: the GPU facts only when there is a GPU (on a CPU it costs nothing)."""
    import torch  # here, not at the top: see the module docstring

    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        return Available(local_rank=local_rank(), threads=threads)
    rank = local_rank()
    index = rank if rank < torch.cuda.device_count() else 0
    return Available(
        cuda=True,
        gpu_name=torch.cuda.get_device_name(index),
        bf16=torch.cuda.is_bf16_supported(),
        compiled_flex=compiled_flex_usable(),
        local_rank=rank,
        threads=threads,
    )


# ---- the decisions (pure) ------------------------------------------------------------------------


def pick_device(requested: str, avail: Available) -> str:
    """The device a request names: "auto" is the GPU when there is one (under torchrun, the
    process's own, `cuda:LOCAL_RANK`), else the CPU; anything else is kept as asked.

    A CUDA request without a GPU is refused here, with the fix, rather than at the first tensor."""
    if requested == "auto":
        return f"cuda:{avail.local_rank}" if avail.cuda else "cpu"
    if requested.startswith("cuda") and not avail.cuda:
        raise ValueError(
            f"device {requested!r} asked for, but torch.cuda.is_available() is False here "
            "(no GPU, no driver, or a CPU-only torch build); use DEVICE='auto' or 'cpu'"
        )
    return requested


def attention_backend(
    pattern: str,
    *,
    device_type: str,
    n_pairs: int,
    head_width: int,
    decoding: bool = False,
    compiled_flex: bool | None = None,
) -> str:
    """The path `backend="auto"` takes: "masked", "efficient" or "flex" (see the module docstring).

    n_pairs: queries × keys of the call; decoding: the call holds only some queries (`q_positions`).
    compiled_flex: whether FlexAttention compiles here; None asks `compiled_flex_usable`, and
    only when the answer depends on it (never on the CPU).
    """
    if n_pairs <= AUTO_MASKED_PAIRS.get(pattern, 0):
        return "masked"
    if pattern == "full" or device_type != "cuda":
        return "efficient"
    if decoding or head_width < FLEX_MIN_HEAD_WIDTH:
        return "efficient"
    if compiled_flex is None:
        compiled_flex = compiled_flex_usable()
    return "flex" if compiled_flex else "efficient"


def autocast_dtype(device_type: str, *, amp: bool, bf16: bool) -> torch.dtype | None:
    """The dtype of training's autocast: bfloat16 on a GPU that has it when `train.amp` is on
    (matmuls and attention in bf16; parameters, gradients and optimizer state stay fp32: the
    fp32 master weights), None (no autocast, fp32 throughout) otherwise.

    bf16 has fp32's exponent range, so no loss scaling is needed; a GPU without bf16 trains in
    fp32 rather than fp16 with a gradient scaler. The CPU stays in fp32, the precision every CPU
    result of the lab was measured in (bf16 is fast on a CPU only with AMX or AVX512-BF16)."""
    import torch  # here, not at the top: see the module docstring

    return torch.bfloat16 if amp and device_type == "cuda" and bf16 else None


def pin_memory(device_type: str) -> bool:
    """Copy batches to a GPU from page-locked (pinned) host memory: the copy then runs
    asynchronously (`non_blocking=True`) while the host queues the next kernels. A CPU has no copy
    to make."""
    return device_type == "cuda"


def process_group_backend(device_type: str) -> str:
    """The torch.distributed backend under torchrun: NCCL between GPUs, gloo between CPUs."""
    return "nccl" if device_type == "cuda" else "gloo"


# ---- applying and reporting them -----------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` picks CUDA when present, else the CPU (`pick_device`); prints the policy once."""
    import torch  # here, not at the top: see the module docstring

    avail = available()
    chosen = torch.device(pick_device(str(device), avail))
    announce(chosen, avail)
    return chosen


def summary(device: torch.device | str, avail: Available) -> str:
    """One line: the device and what the policy picks on it (attention for a large grid)."""
    device = str(device)
    kind = device.split(":")[0]
    if kind == "cuda":
        where = f"{device} ({avail.gpu_name or 'GPU'})"
    else:
        where = f"{device} ({avail.threads} thread{'s' if avail.threads != 1 else ''})"
    picks = ["full=sdpa"]
    for pattern in AUTO_MASKED_PAIRS:
        choice = attention_backend(
            pattern,
            device_type=kind,
            n_pairs=2**40,
            head_width=64,
            compiled_flex=avail.compiled_flex,
        )
        picks.append(f"{pattern}={'flex (compiled)' if choice == 'flex' else choice}")
    small = "/".join(f"{n:,}" for n in AUTO_MASKED_PAIRS.values())
    rule = f"up to {small} query-key pairs: sdpa with the mask"
    if any("flex" in pick for pick in picks):
        rule += f"; decoding or heads narrower than {FLEX_MIN_HEAD_WIDTH}: efficient"
    bf16 = autocast_dtype(kind, amp=True, bf16=avail.bf16) is not None
    return (
        f"device: {where}, attention: {', '.join(picks)} ({rule}), training precision: "
        f"{'bf16 autocast, fp32 weights' if bf16 else 'fp32'}, "
        f"pinned memory: {'on' if pin_memory(kind) else 'off'}"
    )


@functools.cache
def print_once(line: str) -> None:
    """Print `line` the first time it is asked for in this process (`print_once.cache_clear()`
    forgets)."""
    print(line, flush=True)


def announce(device: torch.device | str, avail: Available | None = None) -> None:
    """Print the policy's `summary` for `device` once per process, on the first rank only."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    print_once(summary(device, available() if avail is None else avail))
