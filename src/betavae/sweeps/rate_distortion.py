"""The rate-distortion plane of a sweep: where each model trades KL against reconstruction."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI machines
import matplotlib.pyplot as plt

from betavae.lifecycle.layout import FINISHED
from betavae.lifecycle.records import Job

RATE_DISTORTION_PNG = "rate_distortion.png"


def plot_rate_distortion(jobs: list[Job], path: Path) -> None:
    """Test KL (rate) against test reconstruction (distortion), one labelled point per job.

    Both come from each job's best checkpoint; unfinished and diverged jobs have no point. Lines of
    equal ELBO (recon + KL) are drawn faintly: points further down-left are better models.
    """
    finished = [job for job in jobs if job.status == FINISHED]
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for job in finished:
        rate, distortion = job.metrics["test/kl"], job.metrics["test/recon"]
        axes.scatter(rate, distortion, color="tab:blue")
        label = f"z={job.config['model.latent_dim']}, β={job.config['model.beta']:g}"
        axes.annotate(label, (rate, distortion), textcoords="offset points", xytext=(4, 4))
    if finished:
        _equal_elbo_lines(axes, finished)
    axes.set_xlabel("rate: test KL (nats per example)")
    axes.set_ylabel("distortion: test reconstruction (nats per example)")
    axes.set_title(f"Rate and distortion of {len(finished)} of {len(jobs)} jobs")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _equal_elbo_lines(axes: plt.Axes, jobs: list[Job]) -> None:
    x_limits, y_limits = axes.get_xlim(), axes.get_ylim()
    for job in jobs:
        elbo = job.metrics["test/elbo"]
        axes.plot(x_limits, [elbo - x for x in x_limits], color="grey", alpha=0.2, lw=0.8)
    axes.set_xlim(x_limits)
    axes.set_ylim(y_limits)
