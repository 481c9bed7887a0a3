"""Disentanglement against each objective's weight across a sweep: the test split's MIG of each
job's best checkpoint, every seed's point, and per (objective, weight) the mean and the range.

Objectives weighted alike share a panel (β-VAE and β-TCVAE against β); FactorVAE's γ, the
DIP-VAEs' λ_od and the capacity target C each get their own, so no axis mixes two weights.
"""

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI machines
import matplotlib.pyplot as plt
from matplotlib.ticker import NullLocator

from betavae.evaluation.mig_keys import MIG
from betavae.lifecycle.records import Job
from betavae.sweeps.objectives import OBJECTIVES, objective_of, weight_of

MIG_BETA_PNG = "mig_beta.png"
_STYLES = {
    "beta": ("o", "tab:blue"),
    "beta_tc": ("s", "tab:orange"),
    "factor_vae": ("D", "tab:red"),
    "dip_vae_i": ("^", "tab:purple"),
    "dip_vae_ii": ("v", "tab:brown"),
    "capacity": ("P", "tab:green"),
}
# Objectives in one panel are set a little apart along the (log) weight axis, so that points at
# the same weight do not hide each other.
_SPREAD = 0.06

# weight symbol -> objective -> weight -> the jobs there (one per seed)
Panels = dict[str, dict[str, dict[float, list[Job]]]]


def mig_panels(jobs: list[Job]) -> Panels:
    """The jobs that measured MIG, by the kind of weight their objective has (a panel each), by
    objective, by weight: what the plot draws."""
    panels: Panels = {}
    for objective, about in OBJECTIVES.items():
        measured = [job for job in jobs if objective_of(job) == objective and _mig(job) is not None]
        by_weight: dict[float, list[Job]] = defaultdict(list)
        for job in sorted(measured, key=weight_of):
            by_weight[weight_of(job)].append(job)
        if by_weight:
            panels.setdefault(about.weight, {})[objective] = dict(by_weight)
    return panels


def plot_mig_against_weight(jobs: list[Job], path: Path) -> None:
    """A panel per kind of weight: a point per job and, per objective, a line through the mean
    over the jobs at each weight (its seeds) with their range as a bar; a weight run once is
    labelled with its job number instead."""
    panels = mig_panels(jobs)
    count = max(1, len(panels))
    figure, axes = plt.subplots(
        1, count, figsize=(4.6 * count + 1, 4.8), sharey=True, squeeze=False
    )
    for axis, (weight, objectives) in zip(axes[0], panels.items(), strict=False):
        weights = sorted({w for by_weight in objectives.values() for w in by_weight})
        logarithmic = weights[0] > 0
        if logarithmic:
            axis.set_xscale("log", base=2)
        for place, (objective, by_weight) in enumerate(objectives.items()):
            shift = 2 ** (_SPREAD * (place - (len(objectives) - 1) / 2)) if logarithmic else 1
            _draw(axis, objective, by_weight, shift)
        # A tick at each weight run, as typed; a weight alone gets a range around it.
        axis.set_xticks(weights, [f"{w:g}" for w in weights])
        axis.xaxis.set_minor_locator(NullLocator())
        if len(weights) == 1:
            axis.set_xlim(*((weights[0] / 2, weights[0] * 2) if logarithmic else (-1, 1)))
        else:
            axis.margins(x=0.15)
        keys = sorted({OBJECTIVES[objective].weight_key for objective in objectives})
        axis.set_xlabel(f"{weight} ({', '.join(keys)})")
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylim(bottom=0)
    axes[0][0].set_ylabel("MIG on the test split (best checkpoint)")
    shown = sum(len(seeds) for o in panels.values() for w in o.values() for seeds in w.values())
    figure.suptitle(
        f"MIG of {shown} of {len(jobs)} jobs against each objective's weight "
        "(line: mean over seeds; bar: their range)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _mig(job: Job) -> float | None:
    return None if job.metrics is None else job.metrics.get(MIG)


def _draw(axis: plt.Axes, objective: str, by_weight: dict[float, list[Job]], shift: float) -> None:
    marker, color = _STYLES[objective]
    x = [weight * shift for weight in by_weight]
    values = [[job.metrics[MIG] for job in seeds] for seeds in by_weight.values()]
    means = [sum(v) / len(v) for v in values]
    below = [mean - min(v) for mean, v in zip(means, values, strict=True)]
    above = [max(v) - mean for mean, v in zip(means, values, strict=True)]
    name = OBJECTIVES[objective].name
    axis.errorbar(x, means, yerr=[below, above], color=color, marker=marker, capsize=3, label=name)
    for position, seeds, jobs in zip(x, values, by_weight.values(), strict=True):
        axis.scatter([position] * len(seeds), seeds, color=color, marker=marker, alpha=0.45, s=22)
        if len(jobs) == 1:
            label = f"#{jobs[0].number}"
            axis.annotate(label, (position, seeds[0]), textcoords="offset points", xytext=(4, 4))
