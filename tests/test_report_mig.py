"""`betavae-report` on sweeps whose jobs measured MIG: the column and the MIG-against-β plot."""

import csv
import json
from pathlib import Path

import yaml

from betavae.apps.report import report

# (job directory, objective, β, test MIG); capacity runs carry a β they do not use.
JOBS = [
    ("0_model.beta=1", "beta", 1.0, 0.031),
    ("1_model.beta=4", "beta", 4.0, 0.212),
    ("2_model.objective=beta_tc", "beta_tc", 6.0, 0.305),
    ("3_model.objective=capacity", "capacity", 1.0, 0.254),
]


def _write_job(sweep: Path, name: str, objective: str, beta: float, mig: float | None) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    config = {
        "model": {"latent_dim": 10, "beta": beta, "objective": objective, "capacity_max": 12.0}
    }
    for path in (job / ".hydra/config.yaml", job / "config.yaml"):
        path.write_text(yaml.safe_dump(config))
    metrics = {f"{stage}/{m}": 50.0 for stage in ("val", "test") for m in ("elbo", "recon", "kl")}
    if mig is not None:
        metrics |= {"test/mig": mig, "test/mig_gap/pos_x": 2 * mig}
    (job / "metrics.json").write_text(json.dumps(metrics))


def test_report_shows_each_jobs_test_mig_and_plots_it_against_beta(tmp_path):
    for job in JOBS:
        _write_job(tmp_path, *job)

    printed = report(tmp_path)

    with (tmp_path / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [float(row["test_mig"]) for row in rows] == [mig for *_, mig in JOBS]
    assert [row["model.objective"] for row in rows] == [objective for _, objective, *_ in JOBS]
    (row_of_job_1,) = (line for line in printed.splitlines() if line.startswith("| 1_"))
    assert "| 0.212 " in row_of_job_1
    assert "mig_beta.png" in printed
    assert "![MIG against β](mig_beta.png)" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "mig_beta.png").read_bytes().startswith(b"\x89PNG")


def test_a_sweep_on_data_without_factors_has_no_mig_column_or_plot(tmp_path):
    _write_job(tmp_path, "0_model.beta=1", "beta", 1.0, None)

    printed = report(tmp_path)

    assert "test_mig" not in (tmp_path / "summary.csv").read_text()
    assert "mig_beta.png" not in printed
    assert not (tmp_path / "mig_beta.png").exists()
