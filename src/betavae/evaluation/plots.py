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


def latent_scatter(
    mu: Tensor,
    labels: Tensor | None,
    label_name: str,
    class_names: list[str],
    path: Path,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write a scatter PNG of μ (N, D) to `path`, coloured by integer `labels` (if any) with a
    legend naming each class (`class_names[label]`, e.g. "0 square"); `metadata`: text chunks
    of the PNG."""
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
        colours = plt.get_cmap("tab10")
        for label in labels.unique().tolist():
            chosen = labels == label
            name = class_names[label] if label < len(class_names) else str(label)
            shown = str(label) if name == str(label) else f"{label} {name}"
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=4,
                alpha=0.6,
                color=colours(label % 10),
                label=shown,
            )
        ax.legend(title=label_name, loc="best", fontsize="small", markerscale=3)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"{len(points)} examples")
    figure.tight_layout()
    figure.savefig(path, metadata=metadata)
    plt.close(figure)
