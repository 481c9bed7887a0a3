"""A 2-D picture of the latent space: μ itself when 2-D, else its first two principal components."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt
from torch import Tensor


def principal_components(points: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """(projections (N, count), explained variance ratios (count,)) of the centred points."""
    centred = points.double() - points.double().mean(0)
    _, singular, basis = centred.svd()
    variances = singular.pow(2)
    return centred @ basis[:, :count], variances[:count] / variances.sum().clamp_min(1e-300)


def latent_scatter(mu: Tensor, labels: Tensor | None, label_name: str, path: Path) -> None:
    """Write a scatter PNG of μ (N, D) coloured by integer `labels` (if any) to `path`."""
    if mu.shape[1] == 2:
        points, axes = mu, ("z[0]", "z[1]")
    elif mu.shape[1] == 1:
        points, axes = mu.repeat(1, 2), ("z[0]", "z[0]")
    else:
        points, ratios = principal_components(mu, 2)
        axes = tuple(f"PC{i + 1} of μ ({ratio:.0%} of variance)" for i, ratio in enumerate(ratios))
    figure, ax = plt.subplots(figsize=(6, 5), dpi=100)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.6)
        ax.legend(*scatter.legend_elements(), title=label_name, loc="best", fontsize="small")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"{len(points)} examples")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
