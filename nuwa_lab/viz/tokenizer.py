"""Figures for the tokenizer notebook: vector quantisation in 2D, code frequencies, error maps.

Every function returns a matplotlib Figure and never calls `plt.show()` (it works the same under
papermill and in JupyterLab). Images are (b, 3, h, w) in [0, 1]; token indices any integer shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def plot_quantization_2d(points: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor):
    """Points (n, 2) coloured by their code, the codes (k, 2) as crosses, each code's cell shaded.

    The cells are the Voronoi regions of the codes: every point in a cell is replaced by its code.
    """
    import matplotlib.pyplot as plt

    points, codebook, indices = points.detach().cpu(), codebook.detach().cpu(), indices.cpu()
    lo = torch.minimum(points.min(0).values, codebook.min(0).values) - 1
    hi = torch.maximum(points.max(0).values, codebook.max(0).values) + 1
    gx, gy = torch.meshgrid(
        torch.linspace(float(lo[0]), float(hi[0]), 200),
        torch.linspace(float(lo[1]), float(hi[1]), 200),
        indexing="xy",
    )
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)  # (200 * 200, 2)
    cells = torch.cdist(grid, codebook).argmin(1).reshape(200, 200)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    k = codebook.shape[0]
    extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    ax.imshow(
        cells.numpy(), origin="lower", extent=extent, cmap="tab20", alpha=0.25, vmax=max(k, 20)
    )
    ax.scatter(points[:, 0], points[:, 1], c=indices.numpy(), cmap="tab20", s=6, vmax=max(k, 20))
    ax.scatter(codebook[:, 0], codebook[:, 1], c="black", marker="x", s=60, label="codes $e_k$")
    ax.set(
        title="vector quantisation: each $z_e$ -> its nearest code", xlabel="$z_1$", ylabel="$z_2$"
    )
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def plot_code_frequencies(indices: Mapping[str, torch.Tensor], codebook_size: int):
    """Codes sorted by how often they are used, one line per tokenizer (log scale).

    A flat curve reaching the right edge is a well-used codebook; a curve that drops to zero early
    is a collapsed one.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, idx in indices.items():
        counts = torch.bincount(idx.flatten().cpu().long(), minlength=codebook_size).double()
        freq = (counts / counts.sum()).sort(descending=True).values
        used = int((counts > 0).sum())
        ax.plot(range(1, codebook_size + 1), freq.numpy(), label=f"{name} ({used} codes used)")
    ax.set_yscale("log")
    ax.set(xlabel="code rank", ylabel="fraction of tokens", title="how the codebook is used")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_loss_curves(histories: Mapping[str, Mapping[str, list[float]]], key: str = "rec"):
    """Training curves of `key` (e.g. "rec", the reconstruction loss) per tokenizer."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, history in histories.items():
        if key in history:
            ax.plot(history["step"], history[key], label=name, lw=0.8)
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=key, title=f"training: {key}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
