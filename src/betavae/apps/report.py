"""`betavae-report <sweep dir>`: one table and one rate-distortion plot for a whole sweep."""

import argparse
from pathlib import Path

from betavae.apps.cli import exit_on_user_error
from betavae.sweeps.jobs import read_sweep
from betavae.sweeps.mig_beta import MIG_BETA_PNG, has_mig, plot_mig_against_beta
from betavae.sweeps.rate_distortion import RATE_DISTORTION_PNG, plot_rate_distortion
from betavae.sweeps.summary import (
    SUMMARY_CSV,
    SUMMARY_MD,
    markdown_table,
    summary_rows,
    write_csv,
)

APP_NAME = "betavae-report"


def report(sweep_dir: Path) -> str:
    """Write the summary files into `sweep_dir`; return what to print."""
    jobs = read_sweep(sweep_dir)
    header, rows = summary_rows(jobs, sweep_dir)
    table = markdown_table(header, rows)
    write_csv(sweep_dir / SUMMARY_CSV, header, rows)
    plots = [("rate and distortion", RATE_DISTORTION_PNG)]
    plot_rate_distortion(jobs, sweep_dir / RATE_DISTORTION_PNG)
    if has_mig(jobs):
        plots.append(("MIG against β", MIG_BETA_PNG))
        plot_mig_against_beta(jobs, sweep_dir / MIG_BETA_PNG)
    pictures = "\n\n".join(f"![{title}]({name})" for title, name in plots)
    (sweep_dir / SUMMARY_MD).write_text(
        f"# Sweep {sweep_dir.name}\n\nLosses in nats per example: val at the last epoch, test "
        f"of the best checkpoint.\n\n{table}\n\n{pictures}\n"
    )
    finished = sum(job.metrics is not None for job in jobs)
    written = ", ".join((SUMMARY_CSV, SUMMARY_MD, *(name for _, name in plots)))
    return f"{table}\n{finished} of {len(jobs)} jobs finished. Wrote {written} in {sweep_dir}"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog=APP_NAME,
        description="Summarise a betavae-train -m sweep: summary.csv, summary.md and "
        "rate_distortion.png in the sweep directory, and the table on the terminal.",
    )
    parser.add_argument(
        "sweep_dir", type=Path, help="the sweep directory, e.g. multirun/<date>/<time>"
    )
    args = parser.parse_args()
    with exit_on_user_error(APP_NAME):
        print(report(args.sweep_dir))
