"""Disentanglement against β across a sweep: the test split's MIG of each job's best checkpoint."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI machines
import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter

from betavae.evaluation.mig_keys import MIG
from betavae.lifecycle.records import Job

MIG_BETA_PNG = "mig_beta.png"
_MARKERS = {"beta": ("o", "tab:blue", "β-VAE"), "beta_tc": ("s", "tab:orange", "β-TCVAE")}


def plot_mig_against_beta(jobs: list[Job], path: Path) -> None:
    """One point per finished job at (β, MIG), by objective, labelled with its job number.

    The capacity objective has no β: each such job is a dashed horizontal line at its MIG,
    so it can still be compared with the β-weighted ones.
    """
    measured = [job for job in jobs if job.metrics is not None and MIG in job.metrics]
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for objective, (marker, color, name) in _MARKERS.items():
        points = [job for job in measured if _objective(job) == objective]
        if not points:
            continue
        betas = [job.config["model.beta"] for job in points]
        migs = [job.metrics[MIG] for job in points]
        axes.scatter(betas, migs, marker=marker, color=color, label=name)
        for job, beta, mig in zip(points, betas, migs, strict=True):
            axes.annotate(f"#{job.number}", (beta, mig), textcoords="offset points", xytext=(4, 4))
    for job in (job for job in measured if _objective(job) == "capacity"):
        label = f"capacity C={job.config['model.capacity_max']:g} (#{job.number})"
        axes.axhline(job.metrics[MIG], color="tab:green", ls="--", lw=1, label=label)
    betas = [job.config["model.beta"] for job in measured if _objective(job) != "capacity"]
    if betas and min(betas) > 0:
        axes.set_xscale("log", base=2)
        axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.margins(x=0.15)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("β")
    axes.set_ylabel("MIG on the test split (best checkpoint)")
    axes.set_title(f"Disentanglement of {len(measured)} of {len(jobs)} jobs")
    axes.grid(alpha=0.3)
    if measured:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _objective(job: Job) -> str:
    # Runs from before the objective could be chosen were all β-VAEs.
    return job.config.get("model.objective", "beta")
