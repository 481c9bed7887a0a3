"""One row per job of a sweep, as summary.csv, as summary.md and as a table for the terminal."""

import csv
from pathlib import Path
from typing import Any

from betavae.evaluation.classifier_keys import TEST_ACCURACY
from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, test_key
from betavae.lifecycle.records import Job
from betavae.sweeps.jobs import active_units, few_label_probes, swept_keys

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
# Final-epoch validation and best-checkpoint test metrics, in nats per example.
METRIC_COLUMNS = {
    f"{stage}_{name}": f"{stage}/{name}"
    for stage in ("val", "test")
    for name in ("elbo", "recon", "kl")
}
# On data with known factors: the best checkpoint's disentanglement metrics that the jobs
# measured (evaluation.test_metrics; by default the MIG of the test split alone).
DISENTANGLEMENT_COLUMNS = {f"test_{name}": test_key(name) for name in DISENTANGLEMENT_SCORES}
# M2's classifier on the test split.
ACCURACY_COLUMN = "test_accuracy"
NOT_KNOWN = "n/a"
# Few-label probes of `betavae-eval labels_per_class=N` (mean over label seeds), by column name
# less its `@N`: (probe, features).
FEW_LABEL_COLUMNS = {
    "linear_mu": ("linear_probe", "mu"),
    "linear_pixels": ("linear_probe", "pixels"),
    "knn_mu": ("knn", "mu"),
    "knn_pixels": ("knn", "pixels"),
}


def measured_columns(jobs: list[Job]) -> dict[str, str]:
    """The disentanglement columns of the metrics that some job measured, by metrics.json key."""
    return {
        column: key
        for column, key in DISENTANGLEMENT_COLUMNS.items()
        if any(key in (job.metrics or {}) for job in jobs)
    }


def summary_rows(jobs: list[Job], sweep_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and one row per job: swept values, metrics, active units, checkpoint, status."""
    swept = swept_keys(jobs)
    scores = measured_columns(jobs)
    accuracy = [ACCURACY_COLUMN] if any(_accuracy(job) is not None for job in jobs) else []
    probes = {job.directory: few_label_probes(job) for job in jobs}
    few_label = _few_label_columns(sorted({n for found in probes.values() for n in found}))
    header = [
        "job",
        *swept,
        *METRIC_COLUMNS,
        *scores,
        *accuracy,
        *few_label,
        "active_units",
        "best_checkpoint",
        "status",
    ]
    rows = []
    for job in jobs:
        metrics = job.metrics or {}
        best = metrics.get("best_checkpoint")
        rows.append(
            {
                "job": job.directory.name,
                **{key: job.config.get(key) for key in swept},
                **{column: metrics.get(key) for column, key in METRIC_COLUMNS.items()},
                **{column: metrics.get(key) for column, key in scores.items()},
                **{column: _accuracy(job) for column in accuracy},
                **{column: _few_label_value(probes[job.directory], column) for column in few_label},
                "active_units": active_units(job),
                "best_checkpoint": _relative(Path(best), sweep_dir) if best else None,
                "status": job.status,
            }
        )
    return header, rows


def _accuracy(job: Job) -> float | None:
    return (job.metrics or {}).get(TEST_ACCURACY)


def _few_label_columns(counts: list[int]) -> list[str]:
    return [f"{name}@{n}" for n in counts for name in FEW_LABEL_COLUMNS]


def _few_label_value(found: dict[int, dict[str, Any]], column: str) -> float | None:
    name, n = column.split("@")
    probe, features = FEW_LABEL_COLUMNS[name]
    return found.get(int(n), {}).get(f"few_label_{features}_{probe}_accuracy_mean")


def write_csv(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Full precision; unknown values are empty cells, as spreadsheets and pandas expect."""
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(header: list[str], rows: list[dict[str, Any]]) -> str:
    """A Markdown table with padded columns, so it also reads well as plain text."""
    cells = [header, *([shown(key, row[key]) for key in header] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def shown(column: str, value: Any) -> str:
    """Losses to 0.01 nats, disentanglement metrics and accuracies to 0.001; swept values as
    typed (β 0.5, not 0.50)."""
    if value is None:
        return NOT_KNOWN
    if isinstance(value, float):
        if column in DISENTANGLEMENT_COLUMNS or column == ACCURACY_COLUMN or "@" in column:
            return f"{value:.3f}"
        return f"{value:.2f}" if column in METRIC_COLUMNS else f"{value:g}"
    return str(value)


def _relative(path: Path, root: Path) -> str:
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
