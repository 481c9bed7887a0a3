"""`betavae-report <sweep dir>`: one table and one rate-distortion plot for a whole sweep."""

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from betavae.apps.cli import USAGE_ERROR, exit_on_user_error
from betavae.lifecycle.layout import FINISHED
from betavae.lifecycle.records import planned_jobs, read_sweep
from betavae.sweeps.jobs import has_mig
from betavae.sweeps.seeds import SEEDS_CSV, seed_cells, seed_rows, settings_over_seeds
from betavae.sweeps.summary import (
    SUMMARY_CSV,
    SUMMARY_MD,
    markdown_table,
    summary_rows,
    write_csv,
)
from betavae.user_paths import user_path

APP_NAME = "betavae-report"
OVER_SEEDS = (
    "Over seeds: each setting's jobs that differ only by seed, each test metric as mean ± sd "
    "(min–max) over the finished ones."
)


def report(sweep_dir: Path) -> str:
    """Write the summary files into `sweep_dir`; return what to print."""
    # matplotlib takes a second to import: not for `--help` or a mistake.
    from betavae.sweeps.mig_beta import MIG_BETA_PNG, plot_mig_against_weight
    from betavae.sweeps.rate_distortion import RATE_DISTORTION_PNG, plot_rate_distortion

    jobs = read_sweep(sweep_dir)
    header, rows = summary_rows(jobs, sweep_dir)
    table = markdown_table(header, rows)
    write_csv(sweep_dir / SUMMARY_CSV, header, rows)
    tables = [table]
    written = [SUMMARY_CSV, SUMMARY_MD]
    settings = settings_over_seeds(jobs)
    if settings:
        write_csv(sweep_dir / SEEDS_CSV, *seed_rows(jobs, settings))
        tables.append(f"{OVER_SEEDS}\n\n{markdown_table(*seed_cells(jobs, settings))}")
        written.insert(1, SEEDS_CSV)
    plots = [("rate and distortion", RATE_DISTORTION_PNG)]
    plot_rate_distortion(jobs, sweep_dir / RATE_DISTORTION_PNG)
    if has_mig(jobs):
        plots.append(("MIG against each objective's weight", MIG_BETA_PNG))
        plot_mig_against_weight(jobs, sweep_dir / MIG_BETA_PNG)
    pictures = "\n\n".join(f"![{title}]({name})" for title, name in plots)
    tables_md = "\n\n".join(tables)
    (sweep_dir / SUMMARY_MD).write_text(
        f"# Sweep {sweep_dir.name}\n\nLosses in nats per example: val at the last epoch, test "
        f"of the best checkpoint.\n\n{tables_md}\n\n{pictures}\n"
    )
    finished = sum(job.status == FINISHED for job in jobs)
    planned = max(planned_jobs(sweep_dir) or 0, len(jobs))
    not_started = f" ({planned - len(jobs)} not started)" if planned > len(jobs) else ""
    files = ", ".join([*written, *(name for _, name in plots)])
    return (
        f"{tables_md}\n{finished} of {planned} jobs finished{not_started}. "
        f"Wrote {files} in {sweep_dir}"
    )


class _OneLineErrors(argparse.ArgumentParser):
    """argparse's usage mistakes as one line, like every other betavae command's."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def main() -> None:
    parser = _OneLineErrors(
        prog=APP_NAME,
        description="Summarise a sweep of betavae-train -m: one row per job (its swept values, "
        "the final validation and best-checkpoint test metrics in nats per example, the "
        "disentanglement metrics it measured, active units when betavae-eval has run on it, "
        "and its status: finished, diverged or unfinished); where settings were run with "
        "several seeds, one row per setting with each test metric's mean, sd, min and max "
        "over them; the rate-distortion plot of the finished jobs and, on data with "
        "generative factors, MIG against each objective's weight. Works on a sweep still "
        "running or stopped.",
        epilog="Outputs: summary.csv, summary.md, rate_distortion.png and where they apply "
        "summary_over_seeds.csv and mig_beta.png in the sweep directory; the tables are "
        "printed too. Example: betavae-report multirun/2026-11-21/12-31-02",
    )
    parser.add_argument(
        "sweep_dir", type=Path, help="the sweep directory, e.g. multirun/<date>/<time>"
    )
    args = parser.parse_args()
    with exit_on_user_error(APP_NAME):
        print(report(user_path(str(args.sweep_dir))))
